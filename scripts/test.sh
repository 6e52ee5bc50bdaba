#!/usr/bin/env bash
# The test command: installs what the tests need, runs the demo (scripts/demo.sh, in a
# scratch directory removed afterwards: it leaves nothing in the checkout), starts the real
# services it can (Slurm needs root; without root those tests skip with the reason, except
# when CI=true; a loopback sshd), runs ruff, mypy and lint-imports, and runs the whole suite. Extra arguments go to pytest.
# GITEXP_SKIP_DEMO=1 skips the demo (e.g. when running one test file).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/chromium-up.sh >/dev/null || { echo "test.sh: no headless Chromium (tests/test_report_browser.py will skip)" >&2; [ "${CI:-}" != true ] || exit 1; }
if [ "${GITEXP_SKIP_DEMO:-}" != 1 ]; then
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/gitexp-test-demo-XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  echo "test.sh: the demo, in $scratch"
  scripts/demo.sh "$scratch/demo" || { echo "test.sh: the demo failed" >&2; exit 1; }
  rm -rf "$scratch"
  trap - EXIT
fi
if [ "$(id -u)" = 0 ]; then
  if ! command -v man >/dev/null 2>&1 && [ "${CI:-}" = true ]; then
    # the man page test needs man(1) in CI (git exp --help is man git-exp)
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends man-db; } >&2 \
      || echo "test.sh: could not install man-db" >&2
  fi
  scripts/slurm-up.sh || { echo "test.sh: could not start Slurm" >&2; [ "${CI:-}" != true ] || exit 1; }
  scripts/sge-up.sh || { echo "test.sh: could not start Grid Engine" >&2; [ "${CI:-}" != true ] || exit 1; }
fi
scripts/sshd-up.sh || { echo "test.sh: could not start the test sshd (ssh tests will skip)" >&2; [ "${CI:-}" != true ] || exit 1; }
# The quality gate: lint and types (configured in pyproject.toml).
.venv/bin/ruff check gitexp tests bench || { echo "test.sh: ruff found problems" >&2; exit 1; }
.venv/bin/mypy || { echo "test.sh: mypy found problems" >&2; exit 1; }
# The import contracts in pyproject.toml: layers, no cycles, click only in the CLI.
.venv/bin/lint-imports --no-cache || { echo "test.sh: lint-imports found imports against the contracts" >&2; exit 1; }
# Test files or directories among the arguments replace `tests` (scripts/test.sh tests/test_run.py
# runs that file only); other arguments (-k, -x, ...) apply to the whole suite.
where=(tests)
for arg in "$@"; do
  case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && where=() ;; esac
done
exec .venv/bin/python -m pytest ${where[@]+"${where[@]}"} -q -p no:cacheprovider "$@"
