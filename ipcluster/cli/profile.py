"""``ipcluster profile create | list | locate``."""

from __future__ import annotations

import json

import click

from ipcluster.profiles.dirs import ProfileDir, list_profiles
from ipcluster.profiles.manage import create_profile
from ipcluster.profiles.registry import list_records
from ipcluster.profiles.templates import TEMPLATES

from .common import translate_errors


@click.group(name="profile")
def profile_group() -> None:
    """Create, list and locate profiles (a directory with ipcluster.toml, security/ and log/)."""


@profile_group.command()
@click.argument("name")
@click.option("--template", type=click.Choice(list(TEMPLATES)), default=None,
              help="Config template [default: the template named like the profile, else local].")  # fmt: skip
@click.option("--force", is_flag=True, help="Rewrite ipcluster.toml of an existing profile.")
@click.option(
    "--profile-dir", type=click.Path(file_okay=False), default=None, help="Create the profile here instead."
)
@translate_errors
def create(name: str, template: str | None, force: bool, profile_dir: str | None) -> None:
    """Create profile NAME with a commented ipcluster.toml listing every option."""
    prof = create_profile(name, template, force, profile_dir)
    click.echo(f"created profile {name!r} at {prof.path}")


@profile_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@translate_errors
def list_cmd(as_json: bool) -> None:
    """List profiles: name, path and how many clusters are running in each."""
    from ipcluster.cluster import cluster_state

    rows = []
    for prof in list_profiles():
        running = sum(cluster_state(r) == "running" for r in list_records(prof))
        rows.append({"name": prof.name, "path": str(prof.path), "running_clusters": running})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no profiles yet (ipcluster profile create NAME, or ipcluster start creates 'default')")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['path']}  {r['running_clusters']} running")


@profile_group.command()
@click.argument("name", default="default")
@translate_errors
def locate(name: str) -> None:
    """Print the directory of profile NAME [default: default]."""
    click.echo(str(ProfileDir.find(name).path))
