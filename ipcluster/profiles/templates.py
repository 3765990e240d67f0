"""Shipped profile templates and the commented ``ipcluster.toml`` written into a new profile.

A template is a handful of values over the defaults. The file it renders lists every option of the schema,
commented out with its default and meaning, and the template's own values set, so a user sees at once what
can be changed and what the template chose.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from .config import SECTIONS, default_of

_BATCH = {"controller": {"ip": "0.0.0.0"}}


def _batch(name: str, description: str, section: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"cluster": {"launcher": name}, **_BATCH}
    if section:
        values[f"launcher.{name}"] = section
    return {"description": description, "values": values}


TEMPLATES: dict[str, dict[str, Any]] = {
    "local": {"description": "controller and engines as processes on this machine", "values": {}},
    "mpi": {
        "description": "engines started together by mpiexec (engines can use mpi4py)",
        "values": {"cluster": {"launcher": "mpi"}},
    },
    "ssh": {
        "description": "controller here, engines on other hosts over SSH",
        "values": {"cluster": {"launcher": "ssh"}, "controller": {"ip": "0.0.0.0"}},
    },
    "slurm": _batch("slurm", "engines as a Slurm job (sbatch); set queue and account below"),
    "sge": _batch("sge", "engines as a Grid Engine job (qsub); set queue and pe below"),
    "pbs": _batch("pbs", "engines as a PBS/Torque job (qsub); set queue and account below"),
    "lsf": _batch("lsf", "engines as an LSF job (bsub); set queue and account below"),
    "htcondor": _batch("htcondor", "engines as an HTCondor job (condor_submit)"),
    "winhpc": _batch("winhpc", "engines as a Windows HPC Server job (job submit); set scheduler below"),
}


def template_for(profile_name: str, template: str | None) -> str:
    """The template a new profile gets: the one asked for, else the one named like the profile, else local."""
    if template:
        return template
    return profile_name if profile_name in TEMPLATES else "local"


def render_config(profile_name: str, template: str = "local") -> str:
    """The text of a new ``ipcluster.toml``: every option, commented, with its default and meaning."""
    chosen = TEMPLATES[template]["values"]
    lines = [
        f"# ipcluster configuration for profile {profile_name!r} (template {template!r}:",
        f"# {TEMPLATES[template]['description']}).",
        "# Every option is listed with its default; remove the '#' in front of a line to change it.",
        "# Precedence: defaults < this file < IPCLUSTER_<SECTION>_<KEY> environment variables < command line",
        "# (e.g. IPCLUSTER_CLUSTER_N=8 or IPCLUSTER_LAUNCHER_SSH_PYTHON=python3.12).",
    ]
    for section, cls in SECTIONS.items():
        values = chosen.get(section, {})
        lines += ["", f"[{section}]"]
        for spec in fields(cls):
            meta = spec.metadata
            default = default_of(spec)
            about = meta["help"]
            if meta.get("choices"):
                about += f" ({' | '.join(meta['choices'])})"
            shown = "unset" if default is None else toml_value(default)
            lines.append(f"# {about}; default: {shown}")
            if spec.name in values:
                lines.append(f"{spec.name} = {toml_value(values[spec.name])}")
            elif default is None or (meta.get("example") and default in ("", [], {})):
                lines.append(f"# {spec.name} = {meta.get('example') or '...'}")
            else:
                lines.append(f"# {spec.name} = {toml_value(default)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


SECTION_INTROS = {
    "cluster": "What to start and how long to wait.",
    "controller": "Passed to `ipcontroller` (see [protocol.md](protocol.md) §10); only values that differ from "
    "the default are passed on its command line.",
    "engine": "Passed to every `ipengine`.",
    "launcher.local": "The `local` launcher: controller and engines as processes on this machine.",
    "launcher.ssh": "The `ssh` launcher: engines (and optionally the controller) on other hosts over SSH.",
    "launcher.mpi": "The `mpi` launcher: `mpiexec -n N python -m ipcluster.engine ...` as one process group.",
}


def config_reference() -> str:
    """The key tables of docs/config.md, generated from the schema (the docs test checks they match)."""
    from .config import _type_name

    out: list[str] = []
    for name, cls in SECTIONS.items():
        intro = SECTION_INTROS.get(
            name, "Batch launcher (coming next; the template is ready): the job's resources."
        )
        out += [f"### `[{name}]`", "", intro, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for spec in fields(cls):
            default = default_of(spec)
            shown = "unset" if default is None else f"`{toml_value(default)}`"
            meaning = spec.metadata["help"]
            if spec.metadata.get("choices"):
                meaning += "; one of " + ", ".join(f"`{c}`" for c in spec.metadata["choices"])
            if spec.metadata.get("example"):
                meaning += f"; e.g. `{spec.metadata['example']}`"
            meaning = meaning.replace("|", "\\|")
            out.append(f"| `{spec.name}` | {_type_name(spec)} | {shown} | {meaning} |")
        out.append("")
    return "\n".join(out)
