"""Alert delivery through apprise: the shell around :mod:`supervisor.core.alerting`.

`Alerter.submit` never blocks and never raises. An alert passes the gate (dedup,
recovery notices), is routed to the channels whose `min_severity` it meets, and waits
`group_wait` in its channel's batch; the batch then joins the channel's queue. One
background task per channel (its pump) delivers the queue in order.

Delivery: one `apprise.Apprise` per channel, `async_notify` inside
`asyncio.timeout(send_timeout)`. A delivery that fails (the result is not a success,
an exception, a timeout) is written to the spool, `SPOOL/<channel>/<sortable>.json`
(temp file, fsync, rename); while a channel has spooled messages, new ones are
spooled behind them, so order is kept. The pump retries the oldest with exponential
backoff (`backoff` doubling to `backoff_max`) and, once one goes through, drains the
rest in order, removing each file only after its delivery succeeded. At most
`spool_max` files per channel: the oldest are dropped and the next message sent on
that channel says how many. On start the spool left by an earlier run is retried.

Secrets: apprise URLs hold passwords and tokens. Logs name a channel and its masked
URL (`mask_url`: the scheme only); failure reasons are scrubbed of every part of the
URL; apprise's own logger, which prints URLs, is kept from reaching any handler.

Delivery is at least once: a send that times out cannot be stopped inside apprise's
worker thread, and if it completes after the timeout the spooled copy arrives again.
To keep that window small, each plugin's socket timeouts are capped at `send_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import time
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog

from supervisor.config.loader import mask_url
from supervisor.config.main import AlertsConfig
from supervisor.core.alerting import (
    Alert,
    AlertGate,
    Batcher,
    BatchState,
    GateState,
    Outgoing,
    Severity,
    route,
)

__all__ = ["Alerter", "Delivery", "Redactor"]

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


# --- secrets -----------------------------------------------------------------------------

_URL_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,31})://[^\s'\"<>]*")
_SPLIT_RE = re.compile(r"[/:@?&=#,;\s]+")


class Redactor:
    """Removes every part of one apprise URL (but its scheme) from a text.

    Host names count as secrets too (Slack's and Telegram's tokens sit where a host
    would); IP addresses, `localhost` and port numbers do not. Any URL in the text is
    reduced to its scheme, which also covers apprise's partly masked forms.
    """

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        head, _, query = rest.partition("?")
        values = [value for _key, value in parse_qsl(query)]  # keys are not secret
        tokens: set[str] = set(_SPLIT_RE.split(head))
        for value in values:
            tokens.add(value)
            tokens.update(_SPLIT_RE.split(value))
        port: str | None = None
        try:
            parts = urlsplit(url)
            tokens.update(
                value
                for value in (parts.username, parts.password, parts.hostname)
                if value is not None
            )
            tokens.update(parts.path.split("/"))
            tokens.add(parts.fragment)
            port = str(parts.port) if parts.port is not None else None
        except ValueError:
            pass  # the crude split above still covers it
        tokens |= {unquote(token) for token in tokens}
        self._tokens = sorted(
            (token for token in tokens if self._secret(token, scheme, port)),
            key=len,
            reverse=True,
        )

    @staticmethod
    def _secret(token: str, scheme: str, port: str | None) -> bool:
        if len(token) < 3 or token in (scheme, port, "localhost"):
            return False
        try:
            ipaddress.ip_address(token.strip("[]"))
        except ValueError:
            return True
        return False

    def __call__(self, text: str) -> str:
        text = _URL_RE.sub(lambda match: f"{match.group(1)}://****", text)
        for token in self._tokens:
            text = text.replace(token, "****")
        return text


# --- the spool ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    title: str
    body: str
    severity: Severity
    created: float  # wall clock

    def to_json(self) -> str:
        return json.dumps(
            {
                "title": self.title,
                "body": self.body,
                "severity": self.severity.label,
                "created": self.created,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Message:
        data = json.loads(text)
        return cls(
            title=str(data["title"]),
            body=str(data["body"]),
            severity=Severity.from_name(str(data["severity"])),
            created=float(data["created"]),
        )


class _Spool:
    """One channel's directory of messages waiting for delivery, oldest name first.

    Names are fixed-width nanosecond counters: wall-clock based, but never going
    backwards within a run or behind a file already there.
    """

    _DROPPED = ".dropped"

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._last = 0
        self._gone: set[Path] = set()
        self.dropped = 0
        """Messages dropped (spool full) since a message last went through."""

    def prepare(self) -> None:
        """Create the directory; remove half-written files; read the counters."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        files = self.files()
        if files:
            self._last = max(self._last, int(files[-1].stem))
        with contextlib.suppress(OSError, ValueError):
            self.dropped = int((self.directory / self._DROPPED).read_text().strip() or 0)

    def files(self) -> list[Path]:
        try:
            return sorted(
                path
                for path in self.directory.glob("*.json")
                if path.stem.isdigit() and path not in self._gone and path.is_file()
            )
        except OSError:
            return []

    def write(self, message: _Message) -> Path:
        """Write one message durably, then drop the oldest over the limit."""
        self._last = max(time.time_ns(), self._last + 1)
        path = self.directory / f"{self._last:020d}.json"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._atomic_write(path, message.to_json())
        files = self.files()
        excess = len(files) - self.limit
        if excess > 0:
            for old in files[:excess]:
                old.unlink(missing_ok=True)
            self.set_dropped(self.dropped + excess)
            log.warning(
                "alert spool full; dropped the oldest",
                channel=self.directory.name,
                dropped=excess,
                spool_max=self.limit,
            )
        return path

    def read(self, path: Path) -> _Message:
        return _Message.from_json(path.read_text(encoding="utf-8"))

    def remove(self, path: Path) -> None:
        """Remove a delivered message; one that cannot be removed is never listed again."""
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._gone.add(path)
            log.error(
                "cannot remove a delivered alert from the spool",
                channel=self.directory.name,
                path=str(path),
                error=exc.strerror,
            )

    def set_dropped(self, count: int) -> None:
        self.dropped = max(0, count)
        path = self.directory / self._DROPPED
        try:
            if self.dropped:
                self._atomic_write(path, f"{self.dropped}\n")
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot record dropped alerts", channel=self.directory.name, error=str(exc))

    def _atomic_write(self, path: Path, text: str) -> None:
        temp = path.with_name(f".{path.name}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- channels ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Channel:
    name: str
    url: str
    min_severity: Severity
    spool: _Spool
    redact: Redactor
    notifier: Any = None  # apprise.Apprise once loaded
    broken: str | None = None
    queue: deque[_Message] = field(default_factory=deque)
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


def _silence_apprise() -> None:
    """Keep apprise's records (which show URLs) from any handler but its own captures.

    apprise attaches capture handlers to its logger during a call, which is where
    failure reasons come from; the logger is therefore not disabled, only cut off.
    """
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    if not any(isinstance(handler, logging.NullHandler) for handler in apprise_log.handlers):
        apprise_log.addHandler(logging.NullHandler())  # no "last resort" printing either


class Alerter:
    """Routes, dedups, groups and delivers alerts; keeps what could not be sent."""

    def __init__(
        self,
        config: AlertsConfig,
        spool_dir: Path,
        hostname: str | None = None,
        *,
        group_wait: float = 3.0,
        send_timeout: float = 10.0,
        backoff: float = 5.0,
        backoff_max: float = 300.0,
        min_interval: float | None = None,
    ) -> None:
        self.config = config
        self.spool_dir = Path(spool_dir)
        self.hostname = hostname or socket.gethostname()
        self.send_timeout = send_timeout
        self.backoff = backoff
        self.backoff_max = max(backoff_max, backoff)
        self.min_interval = min_interval
        self._gate = AlertGate(config.repeat_interval)
        self._batcher = Batcher(self.hostname, group_wait)
        self._gate_state = GateState()
        self._batch_state = BatchState()
        self._channels = {
            name: _Channel(
                name=name,
                url=channel.url,
                min_severity=Severity.from_name(channel.min_severity),
                spool=_Spool(self.spool_dir / name, config.spool_max),
                redact=Redactor(channel.url),
            )
            for name, channel in config.channels.items()
        }
        self._min_severity = {name: ch.min_severity for name, ch in self._channels.items()}
        self._timer: asyncio.TimerHandle | None = None
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self._closed = False

    @property
    def channels(self) -> tuple[str, ...]:
        """Every configured channel's name (host-wide alerts go to all of them)."""
        return tuple(self._channels)

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load apprise and every channel now; deliver what an earlier run spooled."""
        if self._started:
            return
        self._started = True
        await self._load()
        for channel in self._channels.values():
            channel.task = asyncio.create_task(self._pump(channel), name=f"alerts:{channel.name}")

    # The timeout bounds a best-effort flush, not one awaited call: asyncio.timeout won't do.
    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Send the open batches (best effort within `timeout`); spool what is left."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._batch_state, out = self._batcher.flush_all(self._batch_state)
        self._enqueue(out)
        tasks = [ch.task for ch in self._channels.values() if ch.task is not None]
        for channel in self._channels.values():
            channel.wake.set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self._channels.values():
            if channel.queue:
                self._persist(channel)
            if channel.queue:
                log.error(
                    "alerts lost: neither delivered nor spooled",
                    channel=channel.name,
                    url=channel.masked,
                    count=len(channel.queue),
                )
        self._closed = True

    # --- intake --------------------------------------------------------------------------

    def submit(self, alert: Alert) -> None:
        """Take an alert; never blocks, never raises. Delivery happens in the background."""
        try:
            loop = asyncio.get_running_loop()
            now = loop.time()
            unknown = [name for name in alert.channels if name not in self._channels]
            if unknown:
                log.warning(
                    "alert names channels that are not configured",
                    unit=alert.unit,
                    alert_event=alert.event,
                    channels=unknown,
                )
            also_at = max(
                (
                    problem.alert.severity
                    for problem in self._gate.resolved_by(self._gate_state, alert)
                ),
                default=None,
            )
            self._gate_state, send = self._gate.submit(self._gate_state, alert, now)
            if not send:
                log.debug(
                    "alert suppressed", unit=alert.unit, alert_event=alert.event, title=alert.title
                )
            for item in send:
                self._batch(item, now, also_at)
            if self._closing:  # no more waiting: out now, or to the spool
                self._batch_state, out = self._batcher.flush_all(self._batch_state)
                self._enqueue(out)
                if self._closed:
                    for channel in self._channels.values():
                        self._persist(channel)
            else:
                self._on_timer()
        except Exception:
            log.exception("alert could not be queued", unit=alert.unit, alert_event=alert.event)

    def _batch(self, alert: Alert, now: float, also_at: Severity | None = None) -> None:
        routed = route(alert, self._min_severity, also_at=also_at)
        if routed.channels:
            self._batch_state, _ = self._batcher.add(self._batch_state, routed, now)
        log.debug(
            "alert queued",
            unit=alert.unit,
            alert_event=alert.event,
            title=alert.title,
            channels=list(routed.channels),
        )

    def _on_timer(self) -> None:
        """Send due reminders and due batches; arm the timer for the next deadline."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._gate_state, reminders = self._gate.tick(self._gate_state, now)
        for reminder in reminders:
            self._batch(reminder, now)
        self._batch_state, out = self._batcher.due(self._batch_state, now)
        self._enqueue(out)
        deadlines = [
            deadline
            for deadline in (
                self._gate.next_deadline(self._gate_state),
                self._batcher.next_deadline(self._batch_state),
            )
            if deadline is not None
        ]
        if deadlines:
            self._timer = loop.call_at(min(deadlines), self._timer_fired)

    def _timer_fired(self) -> None:
        try:
            self._on_timer()
        except Exception:
            log.exception("alert timer failed")

    def _enqueue(self, out: Iterable[Outgoing]) -> None:
        wall = time.time()
        for item in out:
            channel = self._channels[item.channel]
            channel.queue.append(_Message(item.title, item.body, item.severity, wall))
            channel.wake.set()

    # --- test ----------------------------------------------------------------------------

    async def test(self, channel: str | None = None) -> list[Delivery]:
        """Send a test message now to one channel or every channel (no gate, no spool)."""
        await self._load()
        if channel is not None and channel not in self._channels:
            known = ", ".join(sorted(self._channels)) or "none"
            return [Delivery(channel, False, f"no channel named {channel!r} (configured: {known})")]
        targets = (
            [self._channels[channel]] if channel is not None else list(self._channels.values())
        )
        title = f"host-supervisor test alert from {self.hostname}"
        body = (
            f"{self.hostname}: a test alert from host-supervisor. If you can read this, "
            "the channel works."
        )

        async def one(target: _Channel) -> Delivery:
            ok, detail = await self._send(
                target, title, f"{body}\nChannel: {target.name}", Severity.INFO
            )
            log.info(
                "test alert sent" if ok else "test alert not delivered",
                channel=target.name,
                url=target.masked,
                detail=detail,
            )
            return Delivery(target.name, ok, detail)

        return list(await asyncio.gather(*(one(target) for target in targets)))

    # --- delivery ------------------------------------------------------------------------

    async def _load(self) -> None:
        async with self._load_lock:
            if self._loaded:
                return
            await asyncio.to_thread(self._load_sync)
            self._loaded = True

    def _load_sync(self) -> None:
        """Import apprise and add every channel (its plugins load at the first add)."""
        for channel in self._channels.values():
            try:
                channel.spool.prepare()
            except OSError as exc:
                log.error(
                    "cannot use the alert spool; undelivered alerts will be lost",
                    channel=channel.name,
                    path=str(channel.spool.directory),
                    error=exc.strerror,
                )
        if not self._channels:
            return
        _silence_apprise()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise

            for channel in self._channels.values():
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
                channel.interval = self._take_over_pacing(notifier)
                channel.notifier = notifier
                log.info(
                    "alert channel ready",
                    channel=channel.name,
                    url=channel.masked,
                    min_severity=channel.min_severity.label,
                    spooled=len(channel.spool.files()),
                )

    def _take_over_pacing(self, notifier: Any) -> float:
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
                if isinstance(value, int | float) and value > self.send_timeout:
                    setattr(service, attribute, self.send_timeout)
        return rate if self.min_interval is None else self.min_interval

    async def _send(
        self, channel: _Channel, title: str, body: str, severity: Severity
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
        try:
            async with asyncio.timeout(self.send_timeout):
                result = await channel.notifier.async_notify(
                    body=body, title=title, notify_type=_NOTIFY_TYPE[severity]
                )
        except TimeoutError:
            return False, f"no answer within {self.send_timeout:g}s (timed out)"
        except Exception as exc:
            return False, self._clip(channel.redact(f"{type(exc).__name__}: {exc}"))
        if result:
            return True, "delivered"
        return False, self._clip(channel.redact(self._reason(result)))

    @staticmethod
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

    @staticmethod
    def _clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."

    async def _pump(self, channel: _Channel) -> None:
        """Deliver one channel's spool, then its queue, in order; back off on failure."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not await self._pump_once(channel, loop):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert delivery failed unexpectedly", channel=channel.name)
                self._failed(channel, loop, "internal error")
                self._persist(channel)

    async def _pump_once(self, channel: _Channel, loop: asyncio.AbstractEventLoop) -> bool:
        """One step of the pump; False when it should stop (closing, nothing it can do)."""
        channel.wake.clear()
        waiting = channel.notifier is None or (
            channel.retry_at is not None and loop.time() < channel.retry_at
        )
        if waiting:
            # Failing (or unusable): what arrives joins the spool behind what is there.
            self._persist(channel)
            if self._closing:
                return False
            if channel.notifier is None:
                await channel.wake.wait()
                return True
            assert channel.retry_at is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(channel.retry_at - loop.time()):
                    await channel.wake.wait()
            return True

        files = channel.spool.files()
        if files:
            path = files[0]
            try:
                message = channel.spool.read(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._quarantine(channel, path, exc)
                return True
            if await self._deliver(channel, message, loop):
                channel.spool.remove(path)
                if len(files) == 1:
                    log.info("alert spool delivered", channel=channel.name, url=channel.masked)
            else:
                self._persist(channel)
            return True

        if channel.queue:
            # Taken off the queue only once delivered: if close cancels the send, the
            # message is still there to be spooled.
            if await self._deliver(channel, channel.queue[0], loop):
                channel.queue.popleft()
            else:
                self._persist(channel)
            return True

        if self._closing:
            return False
        await channel.wake.wait()
        return True

    async def _deliver(
        self, channel: _Channel, message: _Message, loop: asyncio.AbstractEventLoop
    ) -> bool:
        dropped = channel.spool.dropped
        body = message.body
        if dropped:
            body = (
                f"{body.rstrip()}\n\n{dropped} older alerts were dropped: the spool for "
                f"channel {channel.name} was full."
            )
        ok, detail = await self._send(channel, message.title, body, message.severity)
        if ok:
            if dropped:
                channel.spool.set_dropped(channel.spool.dropped - dropped)
            if channel.failures:
                log.info(
                    "alert channel works again",
                    channel=channel.name,
                    url=channel.masked,
                    failures=channel.failures,
                )
            channel.failures = 0
            channel.delay = 0.0
            channel.retry_at = None
            log.info("alert delivered", channel=channel.name, title=message.title)
        else:
            self._failed(channel, loop, detail)
        return ok

    def _failed(self, channel: _Channel, loop: asyncio.AbstractEventLoop, detail: str) -> None:
        channel.failures += 1
        channel.delay = (
            self.backoff if channel.delay <= 0 else min(channel.delay * 2, self.backoff_max)
        )
        channel.retry_at = loop.time() + channel.delay
        (log.warning if channel.failures == 1 else log.info)(
            "alert not delivered; kept in the spool",
            channel=channel.name,
            url=channel.masked,
            reason=detail,
            retry_in=round(channel.delay, 3),
            failures=channel.failures,
        )

    def _persist(self, channel: _Channel) -> None:
        """Move the channel's queue to its spool, oldest first, as far as writes succeed."""
        while channel.queue:
            try:
                channel.spool.write(channel.queue[0])
            except OSError as exc:
                log.error(
                    "cannot spool an alert; keeping it in memory",
                    channel=channel.name,
                    path=str(channel.spool.directory),
                    error=exc.strerror,
                )
                return
            channel.queue.popleft()

    def _quarantine(self, channel: _Channel, path: Path, exc: Exception) -> None:
        target = path.with_suffix(".corrupt")
        log.error(
            "unreadable spooled alert set aside",
            channel=channel.name,
            path=str(target),
            error=f"{type(exc).__name__}: {exc}",
        )
        try:
            path.rename(target)
        except OSError:
            path.unlink(missing_ok=True)
