"""The benchmark suite's smoke run: tiny sizes, our system and the baselines only (no peer venvs).

Keeps bench/ from rotting: every workload must still produce figures and the report must be written.
The full run is never part of the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"


@pytest.mark.timeout(180)
def test_quick_run_writes_report_with_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--systems",
            "ipcluster,baseline",
            "--out",
            str(out),
            "--plots",
            "no",
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    raw = json.loads((out / "results.json").read_text())
    failed = {
        f"{key}/{system}": r.get("error")
        for key, by_system in raw["results"].items()
        for system, runs in by_system.items()
        for r in runs
        if not r.get("ok") and not r.get("unsupported")
    }
    assert not failed, f"workloads failed: {failed}\n(logs in {out / 'logs'})"
    for key in ("startup@2", "roundtrip", "throughput", "data", "footprint", "failure", "simulate", "soak"):
        assert raw["results"][key]["ipcluster"][0]["ok"], key
    assert raw["results"]["data"]["ipcluster (blake3)"][0]["ok"]
    report = (out / "results.md").read_text()
    assert "## Targets" in report and "round trip, direct ≤ 4× raw zmq" in report
    assert "| ipcluster | direct (DirectView / pinned submit) |" in report
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cores"] and machine["versions"]["ipcluster"]["python"]


def test_unknown_system_is_refused_with_the_choices(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--systems", "ipcluster,spark", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown system or workload spark" in proc.stderr and "ipyparallel" in proc.stderr
