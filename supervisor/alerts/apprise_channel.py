"""Delivery through apprise: one `apprise.Apprise` per channel, loaded once, paced by
us rather than by its plugins, each send bounded by `send_timeout`, and every failure
reason scrubbed of the URL's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from supervisor.alerts.inbox import Inbox
from supervisor.alerts.spool import Spool, SpooledMessage
from supervisor.core.alerting import Severity
from supervisor.secrets import Redactor, mask, mask_url
from supervisor.text import one_line

__all__ = [
    "Channel",
    "Delivery",
    "load_notifiers",
    "send",
    "silence_apprise",
    "take_over_pacing",
]

log = structlog.get_logger("host-supervisor")

_NOTIFY_TYPE = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "failure"}
_REASON_MAX = 300


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending to one channel; `detail` never holds the URL's secrets."""

    channel: str
    ok: bool
    detail: str
    """"delivered", or why not."""


@dataclass(eq=False)
class Channel:
    """One configured channel: its apprise notifier, queue, spool, pacing and backoff."""

    name: str
    url: str
    min_severity: Severity
    spool: Spool
    redact: Redactor
    inbox: Inbox
    notifier: Any = None  # apprise.Apprise once loaded
    broken: str | None = None
    queue: deque[SpooledMessage] = field(default_factory=deque)
    pending: list[str] = field(default_factory=list)
    """Inbox names of the alerts in the channel's open batch."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    interval: float = 0.0  # least time between two sends
    next_send_at: float = 0.0
    pace: asyncio.Lock = field(default_factory=asyncio.Lock)
    delay: float = 0.0
    retry_at: float | None = None
    failures: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def masked(self) -> str:
        return mask_url(self.url)


def silence_apprise() -> None:
    """Keep apprise's records (which show URLs) from any handler but its own captures.

    apprise attaches capture handlers to its logger during a call, which is where
    failure reasons come from; the logger is therefore not disabled, only cut off.
    """
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    if not any(isinstance(handler, logging.NullHandler) for handler in apprise_log.handlers):
        apprise_log.addHandler(logging.NullHandler())  # no "last resort" printing either


def load_notifiers(
    channels: Iterable[Channel], send_timeout: float, min_interval: float | None
) -> None:
    """Import apprise and add every channel (its plugins load at the first add)."""
    channels = list(channels)
    if not channels:
        return
    silence_apprise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        for channel in channels:
            notifier = apprise.Apprise()
            try:
                accepted = notifier.add(channel.url)
            except Exception as exc:
                accepted = False
                log.debug("apprise raised on add", error=channel.redact(str(exc)))
            if not accepted:
                channel.broken = (
                    f"apprise cannot use the URL {channel.masked}; check it with "
                    "'host-supervisor validate'"
                )
                log.error(
                    "alert channel unusable: apprise refused its URL; alerts for it are "
                    "kept in the spool",
                    channel=channel.name,
                    url=channel.masked,
                )
                continue
            channel.interval = take_over_pacing(notifier, send_timeout, min_interval)
            channel.notifier = notifier
            log.info(
                "alert channel ready",
                channel=channel.name,
                url=channel.masked,
                min_severity=channel.min_severity.label,
                spooled=len(channel.spool.files()),
            )


def take_over_pacing(notifier: Any, send_timeout: float, min_interval: float | None) -> float:
    """Adjust the channel's plugins; return the least time between two sends.

    apprise plugins pace themselves (`request_rate_per_sec`: 5.5 s for email, 1.2 s
    for Slack) by sleeping inside the send, where it would count against
    `send_timeout` and turn a healthy channel's second message into a timeout (and
    a duplicate). The pump waits instead, before the send; the plugin's own wait is
    set to zero. Each plugin's socket timeouts (`cto`, `rto`) are capped at
    `send_timeout`, so a send given up on does not linger in its worker thread.
    """
    rate = 0.0
    for service in notifier:
        value = getattr(service, "request_rate_per_sec", None)
        if isinstance(value, int | float) and value > 0:
            rate = max(rate, float(value))
            service.request_rate_per_sec = 0
        for attribute in ("socket_connect_timeout", "socket_read_timeout"):
            value = getattr(service, attribute, None)
            if isinstance(value, int | float) and value > send_timeout:
                setattr(service, attribute, send_timeout)
    return rate if min_interval is None else min_interval


async def send(
    channel: Channel, title: str, body: str, severity: Severity, send_timeout: float
) -> tuple[bool, str]:
    """Deliver one message; (True, "delivered") or (False, why not, scrubbed)."""
    if channel.notifier is None:
        return False, channel.broken or "the channel is not loaded"
    loop = asyncio.get_running_loop()
    async with channel.pace:
        wait = channel.next_send_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        channel.next_send_at = loop.time() + channel.interval
    import apprise  # imported already: the channel's notifier is loaded

    try:
        async with asyncio.timeout(send_timeout):
            # Plain text: without a format apprise takes the body for HTML, so a mail
            # lost its line breaks and anything between < and >.
            result = await channel.notifier.async_notify(
                body=mask(body),
                title=mask(title),
                notify_type=_NOTIFY_TYPE[severity],
                body_format=apprise.NotifyFormat.TEXT,
            )
    except TimeoutError:
        return False, f"no answer within {send_timeout:g}s (timed out)"
    except Exception as exc:
        return False, one_line(channel.redact(f"{type(exc).__name__}: {exc}"), _REASON_MAX)
    if result:
        return True, "delivered"
    return False, one_line(channel.redact(_reason(result)), _REASON_MAX)


def _reason(result: Any) -> str:
    status = getattr(getattr(result, "status", None), "name", None)
    messages: list[str] = []
    logs = getattr(result, "logs", None)
    if callable(logs):
        with contextlib.suppress(Exception):
            messages = [
                str(entry.message)
                for entry in logs()
                if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")
            ]
    if status is not None and messages:
        return f"{status.lower()}: {messages[-1]}"
    if messages:
        return messages[-1]
    return f"apprise reported {status.lower()}" if status else "apprise reported a failure"
