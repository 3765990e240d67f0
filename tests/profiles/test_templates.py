"""Shipped templates and the commented config file a new profile gets."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from ipcluster.profiles.config import SECTIONS, load_config
from ipcluster.profiles.templates import TEMPLATES, render_config, template_for

EXPECTED = {"local", "mpi", "ssh", "slurm", "sge", "pbs", "lsf", "htcondor", "winhpc"}


def test_every_promised_template_ships() -> None:
    assert EXPECTED <= set(TEMPLATES)


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_rendered_file_loads_and_lists_every_option(tmp_path: Path, template: str) -> None:
    text = render_config("p", template)
    path = tmp_path / "ipcluster.toml"
    path.write_text(text)
    config = load_config(path, env={})
    assert config.cluster.launcher == ("local" if template == "local" else template)
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for spec in fields(cls):
            assert f"{spec.name} = " in text, (section, spec.name)
            assert spec.metadata["help"] in text


def test_defaults_are_commented_and_template_values_set() -> None:
    text = render_config("p", "slurm")
    assert "# ping = 1000" in text
    assert '\nlauncher = "slurm"' in text
    assert '\nip = "0.0.0.0"' in text  # engines on compute nodes must reach the controller


def test_profile_named_like_a_template_gets_it() -> None:
    assert template_for("mpi", None) == "mpi"
    assert template_for("mpi", "local") == "local"
    assert template_for("work", None) == "local"
