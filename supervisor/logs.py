"""Logging set-up: structlog to the journal with fields, or ``key=value`` lines on stderr.

Every module logs with ``structlog.get_logger(...)`` and binds what the line is about
(``unit=``, ``check=``, ``action=``). Every value is masked on its way out (passwords
and tokens in URLs, secret-looking ``key=value``: :mod:`supervisor.secrets`). Under
systemd those keys become journal fields (see :mod:`supervisor.systemd.journal`);
elsewhere a line looks like::

    timestamp=2026-01-05T10:00:00.123456Z level=warning event="unit failed" unit=web.service
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from supervisor.secrets import looks_secret, mask, mask_data
from supervisor.systemd.journal import (
    JournalLoggerFactory,
    render_journal_fields,
    stderr_is_journal,
)

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


_PLAIN = (int, float, bool, type(None))


def mask_secrets(logger: object, method: str, event_dict: Any) -> Any:
    """structlog processor: every string in the event masked (`supervisor.secrets.mask`),
    the event itself included; a field with a secret-looking name shows ``****``; any
    other value is masked as the text it will be rendered as."""
    masked: dict[str, Any] = {}
    for key, value in event_dict.items():
        if isinstance(value, _PLAIN):
            masked[key] = value
        elif isinstance(value, str | list | tuple | dict):
            masked[key] = mask_data(value, "" if key == "event" else key)
        else:
            text = str(value)
            masked[key] = mask(text) if not looks_secret(key) else "****"
    return masked


def configure_logging(level: str = "info", journal: bool | None = None) -> None:
    """Configure structlog for the whole process.

    ``journal=None`` picks the journal when stderr is the journal stream systemd gave us
    (``$JOURNAL_STREAM`` matches fd 2), else ``key=value`` lines on stderr.
    """
    try:
        threshold = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; use one of {', '.join(sorted(LEVELS))}"
        ) from None
    if journal is None:
        journal = stderr_is_journal()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_secrets,  # after the traceback is text: it may quote a URL too
    ]
    if journal:
        processors = [*shared, render_journal_fields]
        factory: Any = JournalLoggerFactory()
    else:
        processors = [
            *shared,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.LogfmtRenderer(
                key_order=["timestamp", "level", "event"], bool_as_flag=False
            ),
        ]
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
