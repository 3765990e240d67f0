"""Every option a user can type on ipcontroller and ipengine is documented, and --help lists it too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from ipcluster.controller import app as controller_app
from ipcluster.engine import app as engine_app

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _command(module: object) -> click.Command:
    found = [v for v in vars(module).values() if isinstance(v, click.Command)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("module", "doc", "program"),
    [(controller_app, "controller.md", "ipcontroller"), (engine_app, "engine.md", "ipengine")],
)
def test_every_option_is_documented_and_in_help(module: object, doc: str, program: str) -> None:
    command = _command(module)
    text = (DOCS / doc).read_text()
    help_text = subprocess.run(
        [
            sys.executable,
            "-m",
            f"ipcluster.{'controller' if program == 'ipcontroller' else 'engine'}",
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    options = [opt for param in command.params for opt in getattr(param, "opts", []) if opt.startswith("--")]
    assert options
    missing_doc = [opt for opt in options if opt not in text and opt != "--help"]
    missing_help = [opt for opt in options if opt not in help_text]
    assert not missing_doc, f"{doc} does not document {missing_doc}"
    assert not missing_help, f"{program} --help does not list {missing_help}"
