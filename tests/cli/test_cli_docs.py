"""The CLI, config and profile docs: every console example runs, every option and key is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import click
import pytest
from conftest import IPCluster

from ipcluster.cli.main import cli
from ipcluster.profiles.config import SECTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def console_blocks(name: str) -> list[list[str]]:
    text = (DOCS / name).read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, re.S)
    return [[line[2:] for line in block.splitlines() if line.startswith("$ ")] for block in blocks]


EXAMPLES = [
    (name, i, cmds)
    for name in ("cli.md", "config.md", "profiles.md")
    for i, cmds in enumerate(console_blocks(name))
]


@pytest.mark.parametrize(("doc", "index", "commands"), EXAMPLES, ids=[f"{d}-{i}" for d, i, _ in EXAMPLES])
def test_console_example_runs(ipc: IPCluster, doc: str, index: int, commands: list[str]) -> None:
    env = {**ipc.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ipc.env.get('PATH', '')}"}
    for command in commands:
        result = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{doc}: $ {command}\n{result.stdout}{result.stderr}"


def test_every_option_of_every_command_is_in_cli_md() -> None:
    text = (DOCS / "cli.md").read_text()

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            assert f"{prefix} {name}" in text, f"{prefix} {name}"
            if isinstance(command, click.Group):
                walk(command, f"{prefix} {name}")
                continue
            for param in command.params:
                for opt in getattr(param, "opts", []):
                    if opt.startswith("-") and opt not in ("-h", "--help"):
                        assert opt in text, f"{prefix} {name} {opt}"

    walk(cli, "ipcluster")


def test_every_config_key_is_in_config_md() -> None:
    text = (DOCS / "config.md").read_text()
    for section, cls in SECTIONS.items():
        assert f"### `[{section}]`" in text
        body = text.split(f"### `[{section}]`", 1)[1].split("### ", 1)[0]
        for spec in fields(cls):
            assert f"| `{spec.name}` |" in body, (section, spec.name)


def test_config_md_tables_match_the_schema() -> None:
    from ipcluster.profiles.templates import config_reference

    assert config_reference() in (DOCS / "config.md").read_text(), (
        "regenerate the tables: python -c 'from ipcluster.profiles.templates import config_reference; "
        "print(config_reference())'"
    )
