"""Every ```python example in docs/client.md runs, as its own program, against a real cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_has_examples():
    assert len(BLOCKS) >= 10


@pytest.fixture(scope="module")
def default_profile_env(cluster, tmp_path_factory):
    """An IPCLUSTER_DIR whose default profile is the test cluster's profile."""
    base = tmp_path_factory.mktemp("ipcluster-dir")
    (base / "profile_default").symlink_to(cluster.profile_dir)
    client = cluster.client()
    client.close()
    return {**os.environ, "IPCLUSTER_DIR": str(base)}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, default_profile_env, tmp_path):
    script = tmp_path / f"example_{index}.py"
    script.write_text(BLOCKS[index])
    proc = subprocess.run(
        [sys.executable, str(script)], env=default_profile_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"example {index} failed:\n{BLOCKS[index]}\n{proc.stdout}\n{proc.stderr}"
