#!/usr/bin/env bash
# Make .venv with gitexp (editable) and the test/demo extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import gitexp, numpy, pytest, aiosmtpd" 2>/dev/null \
   || [ setup.py -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
