"""The coordinator's log lines: key=value, sorted, one event per line; an event
logged with an exception (`log.exception`, `exc_info=True`) is followed by its
traceback, as Python prints it, instead of the literal `exc_info=True`."""

from __future__ import annotations

from typing import Any

import structlog

_KEY_VALUE = structlog.processors.KeyValueRenderer(sort_keys=True)


def _render(logger: Any, method: str, event: Any) -> str:
    traceback = event.pop("exception", "")
    line = _KEY_VALUE(logger, method, event)
    return f"{line}\n{traceback.rstrip()}" if traceback else line


def configure_logging() -> None:
    processors = structlog.processors
    structlog.configure(
        processors=[
            processors.add_log_level,
            processors.TimeStamper(fmt="iso"),
            processors.format_exc_info,  # exc_info -> the "exception" key, a traceback
            _render,
        ]
    )
