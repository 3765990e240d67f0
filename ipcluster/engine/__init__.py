"""The engine process: registration, heart, kernel (apply/execute, namespace, output), the ipengine app.

Started as ``python -m ipcluster.engine`` (or ``ipengine``); see docs/engine.md.
"""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run ipengine (imported lazily so ``import ipcluster.engine`` stays cheap)."""
    from .app import main as app_main

    app_main(argv)
