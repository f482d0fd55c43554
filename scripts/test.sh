#!/usr/bin/env bash
# Set up (venv + kawa with its test extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test,aws]'
.venv/bin/python -m ruff check src tests bench scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
