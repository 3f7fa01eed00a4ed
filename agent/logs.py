"""structlog setup: JSON lines for journald, console for a TTY, one redaction processor.

Nothing here runs on import; the CLI calls :func:`configure` once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values never reach a log line, a diagnostic dump or a captured fixture.
REDACTED_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "token",
        "secret",
        "key",
        "salt",
        "newsalt",
        "authorization",
        "sign",
        "aes_key",
        "private_key",
        "credentials",
    }
)
REDACTED = "**REDACTED**"


def redact(value: Any) -> Any:
    """Return ``value`` with every secret-named key masked, recursively."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if str(k).lower() in REDACTED_KEYS else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return redact(dict(event_dict))


def configure(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and stdlib logging once for the process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
