"""The README's quick start and the demo program run as a new user runs them, output included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def user_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "IPCLUSTER_DIR": str(tmp_path / "ipcluster"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def readme_console_session() -> list[tuple[str, list[str]]]:
    """The first console block of the README: each command with the output lines shown under it."""
    block = re.search(r"```console\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no console example"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("  #")[0].strip(), []))
        elif steps and line.strip():
            steps[-1][1].append(line.strip())
    return steps


def run(command: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_readme_quick_start_prints_what_it_shows(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    steps = readme_console_session()
    assert steps[0][0].startswith("ipcluster start") and steps[-1][0].startswith("ipcluster stop")
    try:
        for command, expected in steps:
            result = run(command, env)
            assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
            for line in expected:
                assert line in result.stdout, f"$ {command}: expected {line!r} in\n{result.stdout}"
    finally:
        run("ipcluster stop --all", env)


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory):
    env = user_env(tmp_path_factory.mktemp("readme"))
    started = run("ipcluster start -n 2 --daemonize", env)
    assert started.returncode == 0, started.stdout + started.stderr
    yield env
    run("ipcluster stop --all", env)


def test_readme_python_example_runs(running_cluster: dict[str, str], tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for i, code in enumerate(blocks):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code)
        result = run(f"{sys.executable} {script}", running_cluster)
        assert result.returncode == 0, f"README python block {i}:\n{result.stdout}{result.stderr}"
    assert "[6, 6]" in result.stdout and "328350" in result.stdout


def test_demo_program_estimates_pi_and_shows_each_engines_share(running_cluster: dict[str, str]) -> None:
    result = run(f"{sys.executable} examples/pi.py --tasks 8 --samples 2000", running_cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    estimate = float(re.search(r"pi ~= ([0-9.]+)", result.stdout).group(1))
    assert 2.9 < estimate < 3.4
    shares = re.findall(r"engine (\d+):\s+(\d+) tasks", result.stdout)
    assert sum(int(n) for _, n in shares) == 8
