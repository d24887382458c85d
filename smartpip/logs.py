"""JSON logs: one object per line on stderr, for our code and for every library.

structlog renders; the standard library's loggers (hypercorn, quart, psycopg, ``supervisors``)
are routed through the same renderer so every line is JSON and carries the request ID bound
with :func:`bind_request_id`. Context lives in contextvars, so each trio task (each request)
sees its own.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["bind_request_id", "configure_logging", "get_logger"]

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "info") -> None:
    """Send every log record, ours and the libraries', to stderr as one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # hypercorn's own access log is replaced by ours (smartpip.middleware).
    logging.getLogger("hypercorn.access").disabled = True
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger that goes through the standard library's handlers."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_request_id(request_id: str) -> None:
    """Attach the request ID to every log line of the current task (and its children)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
