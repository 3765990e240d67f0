"""Run one system's share of one repetition and print the figures as JSON.

Executed by the system's own interpreter (a peer's venv python, or ours), so it imports only the stdlib,
``common`` and the one adapter it needs. Usage (the harness does this): ``python worker.py '<spec json>'``
with spec ``{"system", "options", "engines", "tasks": [{"workload", "params"}]}``. Tasks named
``startup`` / ``simulate`` run on their own; the others share one cluster of ``engines`` engines.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from systems import ADAPTERS  # noqa: E402
from systems.base import Unsupported  # noqa: E402

STANDALONE = {"startup", "simulate", "soak"}
MARK = "BENCHJSON "


def load_adapter(system: str, options: dict):
    module_name, cls_name = ADAPTERS[system].split(":")
    return getattr(importlib.import_module(module_name), cls_name)(**options)


def run_task(adapter, task: dict) -> dict:
    try:
        t0 = time.perf_counter()
        metrics = getattr(adapter, task["workload"])(**task.get("params", {}))
        return {"ok": True, "metrics": metrics, "wall_s": time.perf_counter() - t0}
    except Unsupported:
        return {"ok": False, "unsupported": True}
    except Exception as exc:  # a failed figure is reported, not fatal for the run
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def main() -> int:
    spec = json.loads(sys.argv[1])
    adapter = load_adapter(spec["system"], spec.get("options", {}))
    results: dict[str, dict] = {}
    tasks = spec["tasks"]
    for task in [t for t in tasks if t["workload"] in STANDALONE]:
        results[task["key"]] = run_task(adapter, task)
    session = [t for t in tasks if t["workload"] not in STANDALONE]
    if session:
        try:
            adapter.open(spec.get("engines", 2))
        except Exception as exc:
            err = {
                "ok": False,
                "error": f"open: {type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
            for task in session:
                results[task["key"]] = err
            session = []
        try:
            for task in session:
                results[task["key"]] = run_task(adapter, task)
        finally:
            if session:
                adapter.close()
    sys.stdout.write(MARK + json.dumps(results) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
