"""A structlog output to journald, with every bound key as a journal field.

``log.warning("unit failed", unit="nginx.service", action="restart")`` becomes::

    MESSAGE=unit failed unit=nginx.service action=restart
    PRIORITY=4
    SYSLOG_IDENTIFIER=host-supervisor
    UNIT=nginx.service
    ACTION=restart
    OBJECT_SYSTEMD_UNIT=nginx.service

``UNIT=`` is also what PID 1 puts on its messages about a unit, so
``journalctl UNIT=nginx.service`` shows systemd's and host-supervisor's lines together;
``OBJECT_SYSTEMD_UNIT=`` (trusted by journalctl when sent by root) adds ours to
``journalctl -u nginx.service``. Entries go to journald over its native protocol
(:mod:`supervisor.systemd.journal_send`, a few lines of the standard library), through a
socket made at the first message.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

IDENTIFIER = "host-supervisor"

#: structlog level -> syslog priority.
PRIORITIES: Mapping[str, int] = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}

#: Fields this output sets itself; a bound key of the same name gets an ``HS_`` prefix.
RESERVED = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"})

#: Keys that are not fields: structlog's own, or folded into MESSAGE.
_NOT_FIELDS = frozenset({"event", "level", "timestamp"})

#: Fields kept out of the MESSAGE= text: an id is for journalctl to match, not to read.
_NOT_IN_TEXT = frozenset({"message_id"})

_BAD_CHARS = re.compile(r"[^A-Z0-9_]")


def field_name(key: str) -> str:
    """A bound key as a journal field name: upper case, ``[A-Z0-9_]``, at most 64
    characters, no leading underscore (those are journald's trusted fields)."""
    name = _BAD_CHARS.sub("_", key.upper()).lstrip("_")
    if not name or name[0].isdigit():
        name = "F_" + name
    if name in RESERVED:
        name = "HS_" + name
    return name[:64]


def logfmt_value(value: object) -> str:
    """A value for a ``key=value`` tail: bare when that is unambiguous, else quoted."""
    text = value if isinstance(value, str) else str(value)
    if text and not any(c.isspace() or c in '"=\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def journal_fields(event_dict: Mapping[str, Any], identifier: str = IDENTIFIER) -> dict[str, str]:
    """The journal fields for one structlog event (a pure function)."""
    event = str(event_dict.get("event", ""))
    level = str(event_dict.get("level", "info")).lower()
    extra = {k: v for k, v in event_dict.items() if k not in _NOT_FIELDS}
    traceback = extra.pop("exception", None)
    stack = extra.pop("stack", None)
    tail = " ".join(
        f"{key}={logfmt_value(value)}" for key, value in extra.items() if key not in _NOT_IN_TEXT
    )
    message = f"{event} {tail}" if tail else event
    for block in (traceback, stack):
        if block:
            message += "\n" + str(block).rstrip()
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(PRIORITIES.get(level, 6)),
        "SYSLOG_IDENTIFIER": identifier,
    }
    for key, value in extra.items():
        fields[field_name(key)] = value if isinstance(value, str) else str(value)
    if traceback:
        fields["TRACEBACK"] = str(traceback)
    if "unit" in extra:
        fields.setdefault("OBJECT_SYSTEMD_UNIT", str(extra["unit"]))
    return fields


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    its ``device:inode``), i.e. our stderr already goes to the journal."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return False


def render_journal_fields(logger: object, method: str, event_dict: Any) -> dict[str, str]:
    """Last structlog processor: the event as journal fields, for :class:`JournalLogger`."""
    return journal_fields(event_dict)


Sender = Callable[..., Any]


def _default_sender() -> Sender:
    from supervisor.systemd.journal_send import JournalSender

    return JournalSender()


class JournalLogger:
    """A structlog logger whose every method sends its fields to journald.

    When the journal cannot be written, the message goes to stderr instead of being lost.
    """

    def __init__(self, send: Sender | None = None) -> None:
        self._send = send

    def msg(self, **fields: str) -> None:
        if self._send is None:
            self._send = _default_sender()
        try:
            self._send(**fields)
        except Exception as exc:
            print(f"{fields.get('MESSAGE', '')} (journal: {exc})", file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = fatal = exception = msg


class JournalLoggerFactory:
    """structlog ``logger_factory`` for :class:`JournalLogger` (one shared instance)."""

    def __init__(self, send: Sender | None = None) -> None:
        self._logger = JournalLogger(send)

    def __call__(self, *args: Any) -> JournalLogger:
        return self._logger
