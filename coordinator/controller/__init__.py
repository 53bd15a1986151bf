"""The one migration actuator: a level-triggered controller (see controller.py)."""

from coordinator.controller.controller import (
    Clock,
    Controller,
    Observer,
    Planner,
    Refused,
    SystemClock,
    Tick,
)
from coordinator.controller.steps import CRASH_ENV, NOVA_CALLED, End, Ports

__all__ = [
    "CRASH_ENV",
    "NOVA_CALLED",
    "Clock",
    "Controller",
    "End",
    "Observer",
    "Planner",
    "Ports",
    "Refused",
    "SystemClock",
    "Tick",
]
