"""Fakes for every port of the daemon, for whole-host scenarios without systemd.

Each fake writes what the daemon did through it to a shared `Timeline` (jobs,
alerts, history, sd_notify), so a scenario's summary is what the world saw. They
run on the event loop only (no threads, no sockets), so that a virtual-time loop
(`supervisor.testing.virtual_time`) replays them exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.checks.result import CheckResult, Pending, ProbeContext, Status
from supervisor.config import Check, Policy
from supervisor.core.alerting import Alert
from supervisor.errors import BusError
from supervisor.repairs import Outcome, Repairs, Result
from supervisor.store import HistoryEntry, StoreUnavailable
from supervisor.systemd.manager import OnChange, UnitSnapshot

JOB_TIME = 0.1  # virtual seconds a fake systemd job takes
RESULT_AFTER = 0.001  # virtual seconds between a job's state change and its result
CRASH_AFTER = 1.0  # a unit that "crashes" after a start fails this long after it


class Timeline:
    """What the daemon did, line by line, each stamped with the clock's time."""

    def __init__(self, clock: Callable[[], float], origin: float) -> None:
        self.clock = clock
        self.origin = origin
        self.lines: list[tuple[float, str]] = []

    def add(self, text: str) -> None:
        self.lines.append((round(self.clock() - self.origin, 3), text))

    def render(self) -> list[str]:
        """Lines in time order; those of the same millisecond sorted, so that the
        order of tasks run in one instant does not make a difference."""
        ordered = sorted(self.lines, key=lambda line: (line[0], line[1]))
        return [f"{at:>9.3f}  {text}" for at, text in ordered]


@dataclass
class FakeUnit:
    """A unit as fake systemd keeps it; `after_start` says what a start leads to:
    active (stays up), crash (up, then failed after CRASH_AFTER), failed (the job
    fails and so does the unit)."""

    name: str
    load_state: str = "loaded"
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = "success"
    main_pid: int = 0
    n_restarts: int = 0
    can_reload: bool = False
    restart: str = "no"
    after_start: str = "active"
    depends_on: tuple[str, ...] = ()  # what its Requires=, BindsTo=, PartOf=, After= name

    def snapshot(self) -> UnitSnapshot:
        return UnitSnapshot(
            name=self.name,
            load_state=self.load_state,
            active_state=self.active_state,
            sub_state=self.sub_state,
            result=self.result,
            main_pid=self.main_pid,
            n_restarts=self.n_restarts,
            can_reload=self.can_reload,
            restart=self.restart,
        )


class FakeSystemd:
    """systemd's manager, faked: units with states, jobs that take JOB_TIME."""

    def __init__(self, timeline: Timeline, units: dict[str, FakeUnit]) -> None:
        self.timeline = timeline
        self.units = units
        self.watched: set[str] = set()
        self.bus_down = False
        self._listener: OnChange = lambda snapshot: None
        self._reloaded: Callable[[], None] = lambda: None
        self._closed: asyncio.Event | None = None
        self._next_pid = 1000
        self._crashes: dict[str, asyncio.TimerHandle] = {}

    # -- what a scenario does to the world --------------------------------------

    def set_state(self, unit: str, active: str, sub: str, result: str = "success") -> None:
        fake = self.units.setdefault(unit, FakeUnit(unit))
        if fake.load_state == "not-found":
            fake.load_state = "loaded"
        fake.active_state, fake.sub_state, fake.result = active, sub, result
        if active in ("active", "reloading") and not fake.main_pid:
            fake.main_pid = self._pid()
        if active in ("inactive", "failed"):
            fake.main_pid = 0
        self._emit(unit)

    def reloaded(self) -> None:
        """systemd finished a daemon-reload (its Reloading(false) signal)."""
        self._reloaded()

    # -- the UnitManager port --------------------------------------------------

    def listen(self, on_change: OnChange) -> None:
        self._listener = on_change

    def listen_reloaded(self, on_reloaded: Callable[[], None]) -> None:
        self._reloaded = on_reloaded

    async def dependencies(self, unit: str) -> tuple[str, ...]:
        self._check_bus(unit)
        await asyncio.sleep(0)
        fake = self.units.get(unit)
        return fake.depends_on if fake is not None and unit in self.watched else ()

    async def connect(self) -> None:
        self._check_bus("connect")

    async def run(self) -> None:
        self._closed = asyncio.Event()
        await self._closed.wait()

    async def close(self) -> None:
        if self._closed is not None:
            self._closed.set()

    async def watch(self, unit: str) -> UnitSnapshot:
        self._check_bus(unit)
        self.watched.add(unit)
        await asyncio.sleep(0)  # a round trip on the bus: what is due may run meanwhile
        return self._snapshot(unit)

    def unwatch(self, unit: str) -> None:
        self.watched.discard(unit)

    async def snapshot(self, unit: str) -> UnitSnapshot:
        self._check_bus(unit)
        return self._snapshot(unit)

    async def memory_current(self, unit: str) -> int | None:
        return None

    async def start(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("start", unit)

    async def stop(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("stop", unit)

    async def restart(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("restart", unit)

    async def reload(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("reload", unit)

    async def daemon_reload(self) -> None:
        self.timeline.add("systemd daemon-reload")
        self._reloaded()

    async def reset_failed(self, unit: str) -> None:
        self._check_bus(unit)
        self.timeline.add(f"systemd reset-failed {unit}")
        fake = self.units.get(unit)
        if fake is not None and fake.active_state == "failed":
            fake.active_state, fake.sub_state, fake.result = "inactive", "dead", "success"
            self._emit(unit)

    # -- internals -------------------------------------------------------------

    def _check_bus(self, what: str) -> None:
        if self.bus_down:
            raise BusError(f"{what}: the system bus is gone (fake)")

    def _snapshot(self, unit: str) -> UnitSnapshot:
        fake = self.units.get(unit)
        if fake is None:
            return UnitSnapshot(unit, "not-found", "inactive", "dead", "", 0, 0, False)
        return fake.snapshot()

    def _pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def _emit(self, unit: str) -> None:
        if unit in self.watched:
            self._listener(self._snapshot(unit))

    async def _job(self, verb: str, unit: str) -> str:
        self._check_bus(unit)
        await asyncio.sleep(JOB_TIME)
        fake = self.units.get(unit)
        if fake is None or fake.load_state == "not-found":
            self.timeline.add(f"systemd {verb} {unit}: no such unit")
            raise BusError(f"{verb} {unit}: unit {unit} not found (fake)")
        if (timer := self._crashes.pop(unit, None)) is not None:
            timer.cancel()
        result = "done"
        if verb == "stop":
            fake.main_pid = 0
            fake.active_state, fake.sub_state, fake.result = "inactive", "dead", "success"
        elif verb == "reload":
            result = "done" if fake.active_state == "active" else "failed"
        elif fake.after_start == "failed":
            fake.main_pid = 0
            fake.active_state, fake.sub_state, fake.result = "failed", "failed", "exit-code"
            result = "failed"
        else:
            fake.main_pid = self._pid()
            fake.active_state, fake.sub_state, fake.result = "active", "running", "success"
            if fake.after_start == "crash":
                self._crashes[unit] = asyncio.get_running_loop().call_later(
                    CRASH_AFTER, self._crash, unit
                )
        self._emit(unit)
        # systemd signals the unit's new state, then JobRemoved: the job's result comes
        # a moment after the state change, as on a real bus.
        await asyncio.sleep(RESULT_AFTER)
        self.timeline.add(f"systemd {verb} {unit}: {result}")
        return result

    def _crash(self, unit: str) -> None:
        self._crashes.pop(unit, None)
        self.timeline.add(f"systemd {unit} crashed")
        self.set_state(unit, "failed", "failed", "exit-code")


class FakeRepairs(Repairs):
    """The real restart and reload (through the fake systemd); restore and snapshots
    without files: a restore succeeds or fails as the scenario says."""

    def __init__(self, systemd: FakeSystemd, timeline: Timeline) -> None:
        super().__init__(systemd, Path("/nonexistent"))  # type: ignore[arg-type]
        self.timeline = timeline
        self.origin = timeline.origin
        self.restore_ok = True
        self.proven_units: set[str] = set()  # units with a proven snapshot

    async def restore(self, policy: Policy, unit_failed: bool, now: float) -> Outcome:
        if policy.recovery.restore is None:
            return Outcome(Result.SKIPPED, f"{policy.unit}: no restore section in its policy")
        if not self.restore_ok:
            self.timeline.add(f"restore {policy.unit}: rolled back")
            return Outcome(Result.FAILED, "restore rolled back: validation failed (fake)")
        self.timeline.add(f"restore {policy.unit}: files written")
        restarted = await self.restart(policy.unit, unit_failed)
        return Outcome(restarted.result, f"restored (fake); restart {restarted.detail}")

    async def snapshot(
        self,
        policy: Policy,
        now: float,
        *,
        applied_at: float | None = None,
        healthy_since: float | None = None,
    ) -> Path | None:
        applied = "unknown" if applied_at is None else f"{applied_at - self.origin:g}"
        self.timeline.add(f"snapshot {policy.unit}: applied at {applied}")
        return None

    async def known_good(self, policy: Policy) -> str:
        return "no known-good snapshot (fake)"

    async def proven(self, policy: Policy) -> bool:
        return policy.unit in self.proven_units


class FakeProbes:
    """Every check answers what the scenario last said for it (OK until told)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], CheckResult] = {}

    def set(self, unit: str, check: str, status: Status, message: str) -> None:
        self.answers[(unit, check)] = CheckResult(status, message, 0.0)

    async def run(self, check: Check, context: ProbeContext) -> CheckResult:
        return self.answers.get((context.unit, check.name), CheckResult(Status.OK, "ok", 0.0))

    def start(
        self, check: Check, context: ProbeContext, done: Callable[[CheckResult], None]
    ) -> Pending | None:
        return None  # every fake answer runs as a coroutine

    async def close(self) -> None:
        return None


class FakeCommands:
    """`can_recover` programs: exit 0 unless the scenario says otherwise."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.ok: dict[str, bool] = {}

    async def run(self, argv: tuple[str, ...], unit: str, timeout: float) -> CheckResult:  # noqa: ASYNC109
        ok = self.ok.get(unit, True)
        self.timeline.add(f"command {' '.join(argv)} for {unit}: {'ok' if ok else 'critical'}")
        if ok:
            return CheckResult(Status.OK, "exit 0", 0.0)
        return CheckResult(Status.CRITICAL, "exit 2", 0.0)


class FakeAlerts:
    """Records each alert handed to the alert sink (before dedup and batching)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def submit(self, alert: Alert) -> None:
        unit = alert.unit or "host"
        self.timeline.add(
            f"alert {alert.severity.name.lower()} {unit} [{alert.event}] {alert.title}"
            + (" (problem)" if alert.problem else "")
        )

    async def test(self, channel: str | None) -> list[Any]:
        return []

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        return {}


@dataclass
class FakeStore:
    """The state store in memory. `unavailable` is a locked or full database: writes
    are kept queued (as the real writer thread keeps them) and `durable` says why
    they are not stored; when it is available again, the queue is written."""

    timeline: Timeline
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: list[HistoryEntry] = field(default_factory=list)
    unavailable: str = ""
    queued: list[Callable[[], None]] = field(default_factory=list)

    def _write(self, work: Callable[[], None]) -> None:
        if self.unavailable:
            self.queued.append(work)
        else:
            work()

    def available(self) -> None:
        self.unavailable = ""
        for work in self.queued:
            work()
        self.queued.clear()

    @property
    def healthy(self) -> bool:
        return not self.unavailable

    @property
    def last_error(self) -> str | None:
        return self.unavailable or None

    async def durable(self, timeout: float) -> None:  # noqa: ASYNC109
        if self.unavailable:
            raise StoreUnavailable(f"{self.unavailable}; not saved within {timeout:g} s")

    def load_units(self) -> dict[str, dict[str, Any]]:
        return {unit: dict(doc) for unit, doc in self.units.items()}

    def save_unit(self, unit: str, state: dict[str, Any]) -> None:
        self._write(lambda: self.units.__setitem__(unit, dict(state)))

    def delete_unit(self, unit: str) -> None:
        def delete() -> None:
            self.units.pop(unit, None)

        self._write(delete)

    def load_doc(self, key: str) -> dict[str, Any] | None:
        doc = self.docs.get(key)
        return dict(doc) if doc is not None else None

    def save_doc(self, key: str, doc: dict[str, Any]) -> None:
        self._write(lambda: self.docs.__setitem__(key, dict(doc)))

    def append(
        self,
        unit: str | None,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        time: float | None = None,
    ) -> None:
        self.timeline.add(f"history {unit or 'host'} {kind}: {message}")
        entry = HistoryEntry(len(self.entries) + 1, time or 0.0, unit, kind, message, data or {})
        self._write(lambda: self.entries.append(entry))

    async def history(
        self,
        *,
        unit: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]:
        rows = [
            e
            for e in self.entries
            if (unit is None or e.unit == unit)
            and (since is None or e.time >= since)
            and (kinds is None or e.kind in kinds)
        ]
        return rows[-limit:] if limit else []

    async def prune(self) -> int:
        return 0

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        return None


class FakeNotifier:
    """sd_notify, recorded: READY=1 and RELOADING=1 and STOPPING=1 (STATUS= is not:
    it is sent on a coalescing timer and says what the other lines already say)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.last_status = ""

    def ready(self, status: str) -> None:
        self.last_status = status
        self.timeline.add(f"sd_notify READY=1 STATUS={status}")

    def status(self, text: str) -> None:
        self.last_status = text

    def reloading(self) -> None:
        self.timeline.add("sd_notify RELOADING=1")

    def stopping(self) -> None:
        self.timeline.add("sd_notify STOPPING=1")

    async def watchdog_loop(self) -> None:
        return None


@dataclass
class FakeHost:
    disk: float = 10.0
    memory: float = 10.0

    def disk_used_percent(self, path: str) -> float:
        return self.disk

    def memory_used_percent(self) -> float:
        return self.memory


class FakeControl:
    """No socket: scenarios call the daemon's `Control` methods directly."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
