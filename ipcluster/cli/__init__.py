"""The command-line interface: ``ipcluster`` (and ``python -m ipcluster``)."""

from .main import cli, main

__all__ = ["cli", "main"]
