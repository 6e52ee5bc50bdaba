#!/usr/bin/env bash
# The demo: a small real training sweep recorded by gitexp on this machine.
# Copies examples/mlp (a NumPy MLP on a generated spiral dataset) into a fresh git
# repository, runs a 4 x 2 sweep over learning rate and depth, two at a time, and ends
# with `git exp log`. Pass a directory to reuse it: scripts/demo.sh /tmp/demo
# (scripts/test.sh runs it too, in a scratch directory it removes afterwards).
#
# Nothing here may fail by chance: every pipe's reader takes all of its input, except
# `head`, and gitexp ends quietly with exit 0 when its reader goes away early.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/bootstrap.sh"
export PATH="$here/.venv/bin:$PATH"
demo=${1:-$(mktemp -d "${TMPDIR:-/tmp}/gitexp-demo-XXXXXX")}
mkdir -p "$demo" && cd "$demo"
if [ ! -d .git ]; then
  git init -q -b main
  cp "$here"/examples/mlp/*.py "$here"/examples/mlp/config.yaml .
  git add -A
  git -c user.name=demo -c user.email=demo@localhost commit -q -m "MLP example"
fi
echo "== demo repository: $demo"
echo "== git exp run config.yaml --sweep lr=0.001,0.01,0.1,0.5 --sweep layers=1,2 --jobs 2"
git exp run config.yaml --sweep lr=0.001,0.01,0.1,0.5 --sweep layers=1,2 --jobs 2 2>&1 | grep '^gitexp'
echo
echo "== git exp log --metric val_err --sort val_err"
git exp log --metric val_err --sort val_err
best=$(git exp log --sort val_err -n 1 --format csv | tail -n 1 | cut -d, -f1)
echo
echo "== git exp show ${best:0:10}   (the best run)"
git exp show "${best:0:10}" | sed -n '1,8p;/^metrics:/,/^$/p'
echo "== git exp metrics ${best:0:10} | head -n 4   (its whole curve, one row per epoch)"
git exp metrics "${best:0:10}" | head -n 4
echo
echo "== to use git exp yourself, put gitexp's virtualenv on your PATH first:"
echo "     source $here/.venv/bin/activate      # or: export PATH=\"$here/.venv/bin:\$PATH\""
echo "   then try, in $demo: git exp log, git exp -h, git exp --help (the manual)"
