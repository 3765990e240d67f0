"""The interpreters the systems run under: ours for ipcluster and the baselines, a venv per peer.

Peers get their own virtual environments (``bench/.venvs/<name>``, made with ``python -m venv`` and pip
from PyPI on first use) so their dependencies never meet ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"

PEER_PACKAGES = {
    "ipyparallel": ["ipyparallel", "numpy"],
    "dask": ["distributed", "numpy"],
    "plot": ["matplotlib", "py-spy"],
}
VERSION_MODULES = {
    "ipcluster": ["ipcluster", "zmq", "numpy", "cloudpickle", "orjson", "blake3"],
    "baseline": ["zmq", "numpy"],
    "ipyparallel": ["ipyparallel", "zmq", "numpy", "cloudpickle", "jupyter_client", "tornado"],
    "dask": ["distributed", "dask", "numpy", "cloudpickle", "tornado", "msgpack"],
}


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure_venv(name: str, log=print) -> Path:
    """The venv's python, creating the venv and installing the latest packages from PyPI when missing."""
    py = venv_python(name)
    marker = VENVS / name / ".bench-ready"
    if py.exists() and marker.exists():
        return py
    log(f"creating {VENVS / name} (pip install {' '.join(PEER_PACKAGES[name])}) ...")
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], check=True)
    marker.write_text("ok\n")
    return py


def python_for(system: str, log=print) -> str:
    if system in ("ipcluster", "baseline"):
        return sys.executable
    return str(ensure_venv(system, log))


def versions(python: str, modules: list[str]) -> dict[str, str]:
    """``__version__`` of each module as seen by that interpreter (``missing`` when absent)."""
    code = (
        "import importlib, importlib.metadata as md, json, sys\n"
        "dists = {'zmq': 'pyzmq'}\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        out[m] = md.version(dists.get(m, m))\n"
        "    except Exception:\n"
        "        try:\n"
        "            out[m] = str(getattr(importlib.import_module(m), '__version__', '?'))\n"
        "        except Exception:\n"
        "            out[m] = 'missing'\n"
        "print(json.dumps(out))\n"
    )
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
        return json.loads(res.stdout.strip().splitlines()[-1])
    except Exception as exc:  # report, never fail the run on it
        return {"error": str(exc)}
