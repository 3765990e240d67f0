#!/usr/bin/env bash
# Create (or reuse) .venv, install ipcluster with its test extras, and run the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh tests/wire -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
install_log=.venv/install.log
.venv/bin/python -m pip install -e ".[test]" >"$install_log" 2>&1 || { cat "$install_log"; exit 1; }
exec .venv/bin/python -m pytest "$@"
