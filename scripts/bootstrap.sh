#!/usr/bin/env bash
# Make .venv with gitexp (editable) and the test/demo extras, and install the man page
# git-exp(1) beside it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import gitexp, numpy, pytest, aiosmtpd, plotext, matplotlib, importlinter" 2>/dev/null \
   || [ setup.py -nt .venv/.installed ] || [ gitexp/__init__.py -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
# PyTorch (the CPU build) for the gitexp.log_norms tests: large, so installed once; the check
# looks for the package without importing it (importing torch takes seconds).
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 \
    || echo "bootstrap.sh: could not install torch (the PyTorch tests skip, or fail when CI=true)" >&2
fi
# `git exp --help` is `git help exp`, which runs `man git-exp`; man looks in .venv/share/man
# for .venv/bin on the PATH. An editable install skips setup.py's data_files, so write the
# page there from the commands themselves (always current, written atomically).
.venv/bin/python -m gitexp.manpage --install .venv >/dev/null
