"""The Alerter: the shell around :mod:`supervisor.core.alerting` that takes alerts,
gates, routes and batches them, and runs one pump per channel that delivers its spool
and queue in order, backing off on failure (see the package docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from supervisor.alerts.apprise_channel import Channel, Delivery, load_notifiers, send
from supervisor.alerts.digest import digest
from supervisor.alerts.inbox import Inbox
from supervisor.alerts.spool import Spool, SpooledMessage, unlink_all
from supervisor.config.main import AlertsConfig
from supervisor.core.alerting import (
    Alert,
    AlertGate,
    Batcher,
    BatchState,
    GateState,
    Outgoing,
    Severity,
    render,
    route,
)
from supervisor.secrets import Redactor, mask, remember

__all__ = ["OUTCOMES", "Alerter"]

OUTCOMES = ("sent", "failed", "spooled", "dropped")
"""What became of alert messages, as `Alerter.delivery_counts` counts them: delivered;
a delivery attempt failed; written to the spool for later; dropped (spool full, or
neither delivered nor spooled at stop)."""

log = structlog.get_logger("host-supervisor")


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
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-inbox")
        self._channels: dict[str, Channel] = {}
        for name, channel in config.channels.items():
            spool = Spool(self.spool_dir / name, config.spool_max)
            self._channels[name] = Channel(
                name=name,
                url=channel.url,
                min_severity=Severity.from_name(channel.min_severity),
                spool=spool,
                redact=Redactor(channel.url),
                inbox=Inbox(spool, self._writer),
            )
        for channel in config.channels.values():
            remember(channel.url)  # masked in every output, wherever it might show
        self._min_severity = {name: ch.min_severity for name, ch in self._channels.items()}
        self._counts: dict[str, dict[str, int]] = {
            name: dict.fromkeys(OUTCOMES, 0) for name in self._channels
        }
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

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Messages by channel and outcome (see `OUTCOMES`) since the daemon started."""
        counts = {name: dict(by_outcome) for name, by_outcome in self._counts.items()}
        for name, channel in self._channels.items():
            counts[name]["dropped"] += channel.spool.dropped_total
        return counts

    def _count(self, channel: Channel, outcome: str, n: int = 1) -> None:
        self._counts[channel.name][outcome] += n

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
                self._count(channel, "dropped", len(channel.queue))
                log.error(
                    "alerts lost: neither delivered nor spooled",
                    channel=channel.name,
                    url=channel.masked,
                    count=len(channel.queue),
                )
        await asyncio.to_thread(self._writer.shutdown)
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
            title, body, severity = render([routed], self.hostname)
            kept = SpooledMessage(mask(title), mask(body), severity, routed.time)
            for name in dict.fromkeys(routed.channels):
                channel = self._channels[name]
                channel.pending.append(channel.inbox.add(kept))
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
            message = SpooledMessage(
                mask(item.title), mask(item.body), item.severity, wall, tuple(channel.pending)
            )
            channel.pending.clear()
            channel.queue.append(message)  # masked before it is spooled or sent
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

        async def one(target: Channel) -> Delivery:
            ok, detail = await send(
                target,
                title,
                f"{body}\nChannel: {target.name}",
                Severity.INFO,
                self.send_timeout,
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
        """Prepare every channel's spool; import apprise and add every channel."""
        for channel in self._channels.values():
            try:
                channel.spool.prepare()
                channel.inbox.recover()
            except OSError as exc:
                log.error(
                    "cannot use the alert spool; undelivered alerts will be lost",
                    channel=channel.name,
                    path=str(channel.spool.directory),
                    error=exc.strerror,
                )
        load_notifiers(self._channels.values(), self.send_timeout, self.min_interval)

    async def _pump(self, channel: Channel) -> None:
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

    async def _pump_once(self, channel: Channel, loop: asyncio.AbstractEventLoop) -> bool:
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
        if len(files) > 1:
            await self._deliver_backlog(channel, files, loop)
            return True
        if files:
            path = files[0]
            try:
                message = channel.spool.read(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                channel.spool.quarantine(path, exc)
                return True
            if await self._deliver(channel, message, loop):
                channel.spool.remove(path)
                channel.inbox.release(message.covers)
                if len(files) == 1:
                    log.info("alert spool delivered", channel=channel.name, url=channel.masked)
            else:
                self._persist(channel)
            return True

        if channel.queue:
            # Taken off the queue only once delivered: if close cancels the send, the
            # message is still there to be spooled.
            if await self._deliver(channel, channel.queue[0], loop):
                channel.inbox.release(channel.queue.popleft().covers)
            else:
                self._persist(channel)
            return True

        if self._closing:
            return False
        await channel.wake.wait()
        return True

    async def _deliver_backlog(
        self, channel: Channel, files: list[Path], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Send a spooled backlog as one digest; remove its files only once it went.

        A digest that fails leaves every file in place, to be tried again (never lost);
        its files are removed before anything else is sent (never twice, barring a send
        that timed out here but completed inside apprise, as for any message).
        """
        read = await asyncio.to_thread(channel.spool.read_all, files)
        messages: list[SpooledMessage] = []
        paths: list[Path] = []
        for path, found in read:
            if isinstance(found, SpooledMessage):
                messages.append(found)
                paths.append(path)
            else:
                channel.spool.quarantine(path, found)
        if not messages:
            return
        if len(messages) == 1:
            message = messages[0]
        else:
            message = digest(messages, self.hostname, channel.name)
        if not await self._deliver(channel, message, loop):
            self._persist(channel)
            return
        for path, exc in await asyncio.to_thread(unlink_all, paths):
            channel.spool.forget(path, exc)
        channel.inbox.release(name for found in messages for name in found.covers)
        log.info(
            "alert spool delivered",
            channel=channel.name,
            url=channel.masked,
            alerts=len(messages),
            messages=1,
        )

    async def _deliver(
        self, channel: Channel, message: SpooledMessage, loop: asyncio.AbstractEventLoop
    ) -> bool:
        dropped = channel.spool.dropped
        body = message.body
        if dropped:
            body = (
                f"{body.rstrip()}\n\n{dropped} older alerts were dropped: the spool for "
                f"channel {channel.name} was full."
            )
        ok, detail = await send(channel, message.title, body, message.severity, self.send_timeout)
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
            self._count(channel, "sent")
            log.info("alert delivered", channel=channel.name, title=message.title)
        else:
            self._count(channel, "failed")
            self._failed(channel, loop, detail)
        return ok

    def _failed(self, channel: Channel, loop: asyncio.AbstractEventLoop, detail: str) -> None:
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

    def _persist(self, channel: Channel) -> None:
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
            self._count(channel, "spooled")
            channel.inbox.release(channel.queue.popleft().covers)
