"""The controller process: hub, heart monitor, relays, task scheduler and task DB (docs/controller.md)."""

from .config import ControllerConfig
from .controller import Controller, run

__all__ = ["Controller", "ControllerConfig", "run"]
