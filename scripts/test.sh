#!/usr/bin/env bash
# The test command: installs what the tests need, starts the real services it can
# (Slurm needs root; without root those tests skip with the reason, except when CI=true),
# and runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ "$(id -u)" = 0 ]; then
  scripts/slurm-up.sh || { echo "test.sh: could not start Slurm" >&2; [ "${CI:-}" != true ] || exit 1; }
fi
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
