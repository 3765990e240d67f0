#!/usr/bin/env bash
# Create (or reuse) .venv, start a local cluster of 4 engines, estimate pi on it, print who did what, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
install_log=.venv/install.log
.venv/bin/python -m pip install -e . >"$install_log" 2>&1 || { cat "$install_log"; exit 1; }
export IPCLUSTER_DIR=${IPCLUSTER_DIR:-$(mktemp -d)}
trap '.venv/bin/ipcluster stop >/dev/null 2>&1 || true' EXIT
.venv/bin/ipcluster start -n 4 --daemonize
.venv/bin/python examples/pi.py
