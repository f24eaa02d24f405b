"""Probing: one scheduler for every scheduled check of every unit.

One timer, one wake-up per tick. The scheduler keeps the checks in a heap by the time
each is next due and sleeps until the first; when it wakes it starts every check due
within `checks.batch_window` of now (a few ms: a check may start that much early,
never late), and sleeps again. No task or timer is made per check run for a port
check to an address literal: it is a non-blocking connect whose completion is a
callback (`Prober.start`), and whose timeout the scheduler enforces from its own
wake-ups. Other probes (HTTP, commands, process, disk, memory) run as one task each
and time themselves out as before. Either way a probe that hangs holds only its own
check: the next run of a check is scheduled when its run ends, so runs of one check
never overlap, and the others are not waited for.

Results go to the reducer in a batch: all that end in one turn of the loop are fed as
one `ProbesDone` (or a lone `ProbeDone`), and then each check is put back in the heap
at the time `core.health.next_run` says (fixed-rate, or sooner while a failure is
being confirmed, see `confirm_interval`). `unit:` checks are not probed here: they are
judged on every signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import math
import time
import zlib
from collections.abc import Callable

import structlog

from supervisor.checks.result import CheckResult, Pending, ProbeContext, Status
from supervisor.config import Check, MemoryProbe
from supervisor.core.actions import Event, ProbeDone, ProbesDone
from supervisor.core.health import CheckHealth, next_run
from supervisor.core.host import scheduled_checks
from supervisor.core.state import HostState
from supervisor.core.unit import UnitState
from supervisor.daemon.metrics import Metrics
from supervisor.daemon.ports import Probes, UnitManager
from supervisor.errors import BusError

log = structlog.get_logger("host-supervisor")

JITTER_MAX = 1.0  # each check's first run is spread over up to this many seconds
BATCH_WINDOW = 0.005  # the default of `checks.batch_window`


def jitter(unit: str, check: Check) -> float:
    """Where in its first interval a check first runs: spread, and the same every run."""
    spread = zlib.crc32(f"{unit}/{check.name}".encode()) / 2**32
    return spread * min(check.interval, JITTER_MAX)


class _Starting:
    """Marks a callback probe being started: its result may come before `start` returns."""

    def expire(self) -> None:
        return None

    def cancel(self) -> None:
        return None


_STARTING = _Starting()


class _Entry:
    """One scheduled check of one unit, and its run in flight if any."""

    __slots__ = ("alive", "check", "due", "index", "late_by", "pending", "task", "unit")

    def __init__(self, unit: str, index: int, check: Check, due: float) -> None:
        self.unit = unit
        self.index = index
        self.check = check
        self.due = due  # loop time of its next run (or of the run in flight)
        self.alive = True  # False once its unit's checks are stopped
        self.late_by = 0.0
        self.pending: Pending | None = None  # a callback probe in flight
        self.task: asyncio.Task[None] | None = None  # a coroutine probe in flight


class Probing:
    def __init__(
        self,
        state: Callable[[], HostState],
        feed: Callable[[Event], object],
        probes: Probes,
        manager: UnitManager,
        metrics: Metrics,
        window: float | None = None,
    ) -> None:
        self._state = state
        self._feed = feed
        self._probes = probes
        self._manager = manager
        self._metrics = metrics
        self._window = window
        self._entries: dict[str, list[_Entry]] = {}
        self._order = itertools.count()  # ties in the heaps: first come, first served
        self._due: list[tuple[float, int, _Entry]] = []
        self._deadlines: list[tuple[float, int, _Entry, Pending]] = []
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = math.inf
        self._done: list[tuple[_Entry, CheckResult]] = []
        self._flushing = False
        self._woke = 0.0  # time.monotonic() at the current wake-up

    @property
    def window(self) -> float:
        if self._window is not None:
            return self._window
        return self._state().loaded.main.checks.batch_window

    # -- units ---------------------------------------------------------------------------

    def start(self, unit: str) -> None:
        self.stop(unit)
        state = self._state().units[unit]
        now = asyncio.get_running_loop().time()
        entries = self._entries[unit] = []
        for index in scheduled_checks(state):
            check = state.policy.checks[index]
            entry = _Entry(unit, index, check, now + jitter(unit, check))
            entries.append(entry)
            self._push(entry)
        self._arm()

    def stop(self, unit: str) -> None:
        for entry in self._entries.pop(unit, []):
            entry.alive = False  # left in the heaps; skipped when reached
            if entry.pending is not None:
                entry.pending.cancel()
                entry.pending = None
            if entry.task is not None:
                entry.task.cancel()
                entry.task = None

    def stop_all(self) -> None:
        for unit in list(self._entries):
            self.stop(unit)
        if self._wake is not None:
            self._wake.cancel()
            self._wake, self._wake_at = None, math.inf

    # -- the scheduler ---------------------------------------------------------------------

    def _push(self, entry: _Entry) -> None:
        heapq.heappush(self._due, (entry.due, next(self._order), entry))

    def _arm(self) -> None:
        """Wake at the first due check or deadline, unless already waking by then."""
        due = self._due[0][0] if self._due else math.inf
        deadline = self._deadlines[0][0] if self._deadlines else math.inf
        at = min(due, deadline)
        if at >= self._wake_at:
            return
        if self._wake is not None:
            self._wake.cancel()
        if at == math.inf:
            self._wake, self._wake_at = None, math.inf
            return
        self._wake = asyncio.get_running_loop().call_at(at, self._tick)
        self._wake_at = at

    def _tick(self) -> None:
        self._wake, self._wake_at = None, math.inf
        loop = asyncio.get_running_loop()
        try:
            now = loop.time()
            self._woke = time.monotonic()
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                _, _, entry, pending = heapq.heappop(deadlines)
                if entry.pending is pending:
                    pending.expire()  # reports the timeout through _delivered
            horizon = now + self.window
            due = self._due
            states = self._state().units
            while due and due[0][0] <= horizon:
                _, _, entry = heapq.heappop(due)
                if entry.alive:
                    self._run(entry, now, states.get(entry.unit))
        finally:
            self._arm()

    def _run(self, entry: _Entry, now: float, state: UnitState | None) -> None:
        if state is None or not state.running:
            # Not running now: no probe, the schedule goes on.
            entry.due = next_run(entry.check, _NO_HEALTH, entry.due, now)
            self._push(entry)
            return
        # How late against its schedule: the wake-up's lateness, plus the time this
        # wake-up spent starting the checks before it (the loop's clock stands still).
        entry.late_by = max(0.0, now - entry.due + time.monotonic() - self._woke)
        check, context = entry.check, state.context
        entry.pending = _STARTING
        try:
            pending = self._probes.start(check, context, lambda r: self._delivered(entry, r))
        except Exception as exc:  # a broken probe is an UNKNOWN result, not a dead scheduler
            self._delivered(entry, _unknown(exc))
            return
        if pending is None:
            entry.pending = None
            entry.task = asyncio.create_task(self._run_task(entry, context))
        elif entry.pending is _STARTING:  # not ended as it started: time it out
            entry.pending = pending
            at = now + check.timeout
            heapq.heappush(self._deadlines, (at, next(self._order), entry, pending))

    async def _run_task(self, entry: _Entry, context: ProbeContext) -> None:
        try:
            result = await self._probes.run(entry.check, await self._context(context, entry))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Probes.run never raises; a fake or a bug might
            result = _unknown(exc)
        entry.task = None
        self._delivered(entry, result)

    async def _context(self, context: ProbeContext, entry: _Entry) -> ProbeContext:
        check = entry.check
        if isinstance(check.probe, MemoryProbe) and check.probe.max_rss is not None:
            # MemoryCurrent is not signalled: read it for each run of a memory check.
            with contextlib.suppress(BusError):
                memory = await self._manager.memory_current(context.unit)
                context = dataclasses.replace(context, memory_current=memory)
        return context

    # -- results, in batches ---------------------------------------------------------------

    def _delivered(self, entry: _Entry, result: CheckResult) -> None:
        entry.pending = None
        if not entry.alive:
            return
        self._metrics.ran(
            result.status.value, entry.late_by, entry.unit, entry.check.name, result.duration
        )
        self._done.append((entry, result))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        batch, self._done = self._done, []
        try:
            if len(batch) == 1:
                entry, result = batch[0]
                self._feed(ProbeDone(entry.unit, entry.index, result))
            else:
                self._feed(ProbesDone(tuple(ProbeDone(e.unit, e.index, r) for e, r in batch)))
        finally:
            now = asyncio.get_running_loop().time()
            units = self._state().units
            for entry, _ in batch:
                if not entry.alive:
                    continue
                state = units.get(entry.unit)
                health = _NO_HEALTH
                if state is not None and entry.index < len(state.checks):
                    health = state.checks[entry.index]
                entry.due = next_run(entry.check, health, entry.due, now)
                self._push(entry)
            self._arm()


def _unknown(exc: BaseException) -> CheckResult:
    text = str(exc)
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return CheckResult(Status.UNKNOWN, f"probe failed: {reason}", 0.0)


_NO_HEALTH = CheckHealth()  # a check not recorded (yet): its regular schedule
