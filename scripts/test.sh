#!/usr/bin/env bash
# Create (or reuse) .venv, install ipcluster with its test extras, and run the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh tests/wire -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
exec .venv/bin/python -m pytest "$@"
