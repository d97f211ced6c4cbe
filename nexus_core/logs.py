"""structlog set-up: JSON lines off a terminal, readable lines on one; stdlib logs routed through it."""

from __future__ import annotations

import logging
import re
import sys

import structlog

from nexus_core.redact import MASK, is_secret_key, redact_address

_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


def _drop_secrets(_logger: object, _name: str, event: dict) -> dict:  # type: ignore[type-arg]
    for key, value in event.items():
        if is_secret_key(key):
            event[key] = MASK
        elif isinstance(value, str) and "://" in value:
            # A library's message can quote a URL whole (httpx: "HTTP Request: POST https://…?token=…").
            event[key] = _URL_IN_TEXT.sub(lambda m: redact_address(m.group(0)), value)
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger (Dramatiq, Alembic) to the same output."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    if as_json:
        renderer: object = structlog.processors.JSONRenderer()
        # Locals in tracebacks can hold secrets: never render them.
        tail = [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False))
        tail = []
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],  # type: ignore[list-item]
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Dramatiq logs every consumer heartbeat at debug and more at info than an operator needs.
    logging.getLogger("dramatiq").setLevel(max(root.level, logging.WARNING))
    # httpx logs every request at info: one line per webhook attempt that the run history already holds.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
