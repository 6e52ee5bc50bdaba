#!/usr/bin/env bash
# The demo: a small real training sweep recorded by gitexp on this machine.
# Copies examples/mlp into a fresh git repository, runs the NumPy MLP with four
# learning rates, and ends with `git exp log`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/bootstrap.sh"
export PATH="$here/.venv/bin:$PATH"
demo=${1:-$(mktemp -d /tmp/gitexp-demo-XXXXXX)}
mkdir -p "$demo" && cd "$demo"
if [ ! -d .git ]; then
  git init -q -b main
  cp "$here"/examples/mlp/*.py "$here"/examples/mlp/config.yaml .
  git add -A
  git -c user.name=demo -c user.email=demo@localhost commit -q -m "MLP example"
fi
echo "== demo repository: $demo"
for lr in 0.001 0.01 0.1 0.5; do
  echo "== git exp run config.yaml -p lr=$lr"
  git exp run config.yaml -p lr=$lr 2>&1 | tail -n 3
done
echo "== git exp log --metric val_err --sort val_err"
git exp log --metric val_err --sort val_err
best=$(git exp log --sort val_err -n 1 --format csv | tail -n 1 | cut -d, -f1)
echo "== git exp show ${best:0:10}"
git exp show "${best:0:10}" | head -n 30
