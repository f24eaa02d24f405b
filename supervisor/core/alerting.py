"""What to tell people, and when: dedup, reminders, recovery notices, grouping. Pure.

No I/O and no clock reads: every function takes `now` from the shell
(:mod:`supervisor.alerts`), which performs what these return. Two state machines, each
a pair of a frozen state and functions that return a new state and what to do:

`AlertGate` decides whether an alert is sent at all. The key is `(unit, event)`:

| alert                       | state                             | verdict                  |
| --------------------------- | --------------------------------- | ------------------------ |
| recovery (`resolves` set)   | one of its problems open and sent | send; close the problems |
| recovery                    | none open, or open but never sent | suppress; close them     |
| same key sent before        | within `repeat_interval`          | suppress; a problem is   |
|                             |                                   | kept open, as not sent   |
| otherwise                   |                                   | send; a problem opens    |

`tick` re-sends every open problem once per `repeat_interval` as a reminder ("still
unhealthy since 14:02; reminder"), including one that came back within the interval
after a recovery was sent: it is not lost, only held until the interval has passed.
`next_deadline` says when `tick` next has something to do.

`Batcher` groups, per channel, the alerts that arrive within `group_wait` of the first:
they go out as one message ("5 alerts on web01"); a lone alert goes out as itself.
`route` narrows an alert's channels to those whose `min_severity` it meets; it runs
between the gate and the batcher.

Incidents (a root unit's failure and its dependents', see `core.incidents`) reach
this module already grouped: the host reducer holds back a symptom's own alerts and
sends the incident as its root's `unhealthy` problem and `recovered` notice, so
dedup, reminders and routing treat an incident as that one key.

Messages are plain ASCII-friendly text; the body always starts with the host name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from supervisor.core.values import Severity

__all__ = [
    "Alert",
    "AlertGate",
    "Batch",
    "BatchState",
    "Batcher",
    "GateState",
    "OpenProblem",
    "Outgoing",
    "Severity",
    "format_clock",
    "render",
    "route",
]


@dataclass(frozen=True)
class Alert:
    """Something a person should hear about. The caller writes the words."""

    unit: str | None
    """The unit it is about; None for host-wide news (guard frozen, daemon started)."""
    event: str
    """A short word: unhealthy, action, result, recovered, exhausted, failover, ..."""
    severity: Severity
    title: str
    """One line, e.g. "web.service failed (signal)"."""
    body: str
    """What happened, what was tried, what happens next."""
    channels: tuple[str, ...]
    """Channel names it is routed to (the policy's `alerts:`; host-wide ones: all)."""
    time: float
    """Wall-clock time (seconds since the epoch) of what happened."""
    resolves: tuple[str, ...] = ()
    """For a recovery notice: the problem events of the same unit it ends."""
    problem: bool = False
    """True for a condition that stays true until resolved; open problems get reminders."""

    @property
    def key(self) -> tuple[str | None, str]:
        """What dedup compares: (unit, event)."""
        return (self.unit, self.event)


def format_clock(wall: float) -> str:
    """A wall-clock time as local HH:MM (the reminder's "since 14:02")."""
    return datetime.fromtimestamp(wall).astimezone().strftime("%H:%M")


def _format_time(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# --- the gate ----------------------------------------------------------------------------

Key = tuple[str | None, str]


@dataclass(frozen=True)
class OpenProblem:
    """A problem alert not yet resolved."""

    alert: Alert
    """The latest alert submitted for it (a reminder repeats this one)."""
    since: float
    """Wall-clock time this episode began: the first alert's `time`."""
    sent: bool
    """Whether a notice of this episode went out (only then is a recovery worth sending)."""
    due: float
    """When `tick` sends the next reminder (shell clock)."""


@dataclass(frozen=True)
class GateState:
    """What the gate remembers. Build new ones; never mutate the mappings."""

    sent_at: Mapping[Key, float] = field(default_factory=dict)
    """When each (unit, event) was last sent; entries older than repeat_interval go."""
    open: Mapping[Key, OpenProblem] = field(default_factory=dict)


class AlertGate:
    """Dedup within `repeat_interval`, reminders for open problems, honest recoveries."""

    def __init__(self, repeat_interval: float) -> None:
        if not repeat_interval > 0:
            raise ValueError(f"repeat_interval must be positive, got {repeat_interval!r}")
        self.repeat_interval = repeat_interval

    def submit(self, state: GateState, alert: Alert, now: float) -> tuple[GateState, list[Alert]]:
        """Take one alert; return the new state and the alerts to send now (0 or 1)."""
        sent_at = self._fresh(state.sent_at, now)
        open_ = dict(state.open)
        if alert.resolves:
            closing = [key for key in self._resolved_keys(alert) if key in open_]
            was_sent = any(open_[key].sent for key in closing)
            for key in closing:
                del open_[key]
            return GateState(sent_at, open_), [alert] if was_sent else []

        key = alert.key
        last = sent_at.get(key)
        recent = last is not None
        existing = open_.get(key)
        if recent:
            if alert.problem:
                assert last is not None
                if existing is not None:
                    open_[key] = replace(existing, alert=alert)
                else:
                    open_[key] = OpenProblem(
                        alert, alert.time, sent=False, due=last + self.repeat_interval
                    )
            return GateState(sent_at, open_), []

        sent_at[key] = now
        if alert.problem:
            since = existing.since if existing is not None else alert.time
            open_[key] = OpenProblem(alert, since, sent=True, due=now + self.repeat_interval)
        return GateState(sent_at, open_), [alert]

    def tick(self, state: GateState, now: float) -> tuple[GateState, list[Alert]]:
        """Reminders for every open problem whose interval has passed, oldest first."""
        due = sorted(
            ((key, problem) for key, problem in state.open.items() if problem.due <= now),
            key=lambda item: (item[1].due, item[1].since),
        )
        sent_at = self._fresh(state.sent_at, now)
        if not due:
            if len(sent_at) == len(state.sent_at):
                return state, []
            return GateState(sent_at, state.open), []
        open_ = dict(state.open)
        reminders: list[Alert] = []
        for key, problem in due:
            reminders.append(self.reminder(problem))
            open_[key] = replace(problem, sent=True, due=now + self.repeat_interval)
            sent_at[key] = now
        return GateState(sent_at, open_), reminders

    def next_deadline(self, state: GateState) -> float | None:
        """When `tick` next has a reminder to send; None while no problem is open."""
        return min((problem.due for problem in state.open.values()), default=None)

    def resolved_by(self, state: GateState, alert: Alert) -> tuple[OpenProblem, ...]:
        """The open, sent problems a recovery notice would close (to route it like them)."""
        return tuple(
            state.open[key]
            for key in self._resolved_keys(alert)
            if key in state.open and state.open[key].sent
        )

    @staticmethod
    def reminder(problem: OpenProblem) -> Alert:
        """The reminder for an open problem: its latest alert, saying since when."""
        alert = problem.alert
        note = f"still {alert.event} since {format_clock(problem.since)}; reminder"
        body = f"Still {alert.event} since {_format_time(problem.since)}.\n\n{alert.body}"
        return replace(alert, title=f"{alert.title} ({note})", body=body)

    def _fresh(self, sent_at: Mapping[Key, float], now: float) -> dict[Key, float]:
        return {key: at for key, at in sent_at.items() if now - at < self.repeat_interval}

    @staticmethod
    def _resolved_keys(alert: Alert) -> list[Key]:
        return [(alert.unit, event) for event in alert.resolves]


# --- routing -----------------------------------------------------------------------------


def route(
    alert: Alert,
    min_severity: Mapping[str, Severity],
    *,
    also_at: Severity | None = None,
) -> Alert:
    """The alert with only the channels whose `min_severity` it meets.

    `also_at`: a recovery notice also goes where the problems it closes went (their
    highest severity), so a warning-only channel that was told of a failure hears of
    the recovery too. Channels not in `min_severity` (not configured) are dropped.
    """
    levels = [alert.severity] if also_at is None else [alert.severity, also_at]
    kept = tuple(
        name
        for name in dict.fromkeys(alert.channels)
        if name in min_severity and any(level >= min_severity[name] for level in levels)
    )
    return alert if kept == alert.channels else replace(alert, channels=kept)


# --- grouping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Alerts waiting for one channel until `flush_at`."""

    flush_at: float
    alerts: tuple[Alert, ...]


@dataclass(frozen=True)
class BatchState:
    """Open batches by channel name. Build new ones; never mutate the mapping."""

    batches: Mapping[str, Batch] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """One message for one channel, ready for delivery."""

    channel: str
    title: str
    body: str
    severity: Severity


class Batcher:
    """Per channel, alerts within `group_wait` of the first go out as one message."""

    def __init__(self, hostname: str, group_wait: float = 3.0) -> None:
        if group_wait < 0:
            raise ValueError(f"group_wait must not be negative, got {group_wait!r}")
        self.hostname = hostname
        self.group_wait = group_wait

    def add(self, state: BatchState, alert: Alert, now: float) -> tuple[BatchState, float | None]:
        """Add the alert to the batch of each of its channels (opening one if needed).

        Returns the new state and the earliest time a batch is due (None: no channel).
        """
        batches = dict(state.batches)
        for channel in dict.fromkeys(alert.channels):
            batch = batches.get(channel)
            if batch is None:
                batches[channel] = Batch(now + self.group_wait, (alert,))
            else:
                batches[channel] = Batch(batch.flush_at, (*batch.alerts, alert))
        new = BatchState(batches)
        return new, self.next_deadline(new)

    def due(self, state: BatchState, now: float) -> tuple[BatchState, list[Outgoing]]:
        """Close every batch whose time has come; one message per closed batch."""
        ready = [name for name, batch in state.batches.items() if batch.flush_at <= now]
        if not ready:
            return state, []
        return self._close(state, ready)

    def flush_all(self, state: BatchState) -> tuple[BatchState, list[Outgoing]]:
        """Close every batch now (the daemon is stopping)."""
        return self._close(state, list(state.batches))

    def next_deadline(self, state: BatchState) -> float | None:
        """When the next batch is due; None when none is open."""
        return min((batch.flush_at for batch in state.batches.values()), default=None)

    def _close(self, state: BatchState, names: Iterable[str]) -> tuple[BatchState, list[Outgoing]]:
        batches = dict(state.batches)
        out: list[Outgoing] = []
        for name in sorted(names, key=lambda n: (batches[n].flush_at, n)):
            batch = batches.pop(name)
            title, body, severity = render(batch.alerts, self.hostname)
            out.append(Outgoing(name, title, body, severity))
        return BatchState(batches), out


def render(alerts: Iterable[Alert], hostname: str) -> tuple[str, str, Severity]:
    """Title, body and severity of the message for these alerts (one or many).

    The body starts with the host name. A group's severity is its highest.
    """
    items = list(alerts)
    if not items:
        raise ValueError("render needs at least one alert")
    if len(items) == 1:
        alert = items[0]
        head = f"{hostname}: {alert.severity.label}"
        if alert.unit is not None:
            head += f", {alert.unit}"
        head += f", {_format_time(alert.time)}"
        return alert.title, f"{head}\n{alert.title}\n\n{alert.body}", alert.severity
    severity = max(alert.severity for alert in items)
    first, last = min(a.time for a in items), max(a.time for a in items)
    lines = [
        f"{hostname}: {len(items)} alerts from {_format_time(first)} to {_format_time(last)}",
        "",
    ]
    for number, alert in enumerate(items, start=1):
        where = f" [{alert.unit}]" if alert.unit is not None else ""
        lines.append(f"{number}. {alert.severity.label.upper()}{where} {alert.title}")
        lines.extend(f"   {line}" if line else "" for line in alert.body.splitlines())
        lines.append("")
    return f"{len(items)} alerts on {hostname}", "\n".join(lines).rstrip() + "\n", severity
