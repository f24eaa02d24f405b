"""The shell: D-Bus signals in, decisions out, effects done, results fed back.

Everything that decides lives in `health`, `recovery`, `guard` and `flapping`;
this module only wires them to the world: it loads policies, watches units
through `systemd.manager`, runs the checks, performs the actions the machines ask
for, schedules their deadlines on the event loop, persists state and history in
the store before it acts, speaks sd_notify, and serves the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import signal
import socket
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from supervisor.alerts import Alerter, Delivery
from supervisor.api import ControlServer
from supervisor.checks import Prober
from supervisor.checks.command import CommandRunner
from supervisor.checks.result import CheckResult, ProbeContext
from supervisor.config import Check, LoadedConfig, MemoryProbe, UnitProbe, load_config
from supervisor.core import guard
from supervisor.core.alerting import Alert, Severity
from supervisor.core.failover import LadderExhausted, PrimaryHardFailure, PrimaryStable
from supervisor.core.flapping import FlapState
from supervisor.core.flapping import observe as observe_flap
from supervisor.core.guard import GuardNotice, GuardState, Verdict
from supervisor.core.health import Condition, UnitView, describe, unit_condition
from supervisor.core.recovery import (
    Action,
    ActionFinished,
    Event,
    Held,
    Notice,
    OperatorReset,
    Phase,
    RecoveryState,
    Report,
    Resume,
    RunRung,
    Skipped,
    Tick,
    step,
)
from supervisor.effects import Effects, Result
from supervisor.errors import BusError, ConfigError, SupervisorError
from supervisor.failover_shell import FailoverShell
from supervisor.metrics import Metrics
from supervisor.ports import Ports
from supervisor.preconditions import LocalHost, failing_precondition
from supervisor.store import Store
from supervisor.systemd.manager import SystemdManager, UnitSnapshot
from supervisor.systemd.notify import Notifier
from supervisor.unit_supervisor import UnitSupervisor, Update

log = structlog.get_logger("host-supervisor")

EX_CONFIG = 78
EX_CANTCREAT = 73
EX_TEMPFAIL = 75

BUS_RETRY_MAX = 30.0
JITTER_MAX = 1.0  # each check's first run is spread over up to this many seconds
STATUS_EVERY = 0.5  # STATUS= is sent at most this often
WATCH_RETRY_MIN = 0.5
WATCH_RETRY_MAX = 60.0
PRECONDITION_RETRY = 30.0  # a repair held by a precondition asks again this much later
HISTORY_FLUSH = 1.0  # buffered history reaches the disk at least this often
PRUNE_EVERY = 3600  # flushes between two prunings of old history (hourly)
OBSERVE_MAX = 30.0  # after a start, act only once every check has reported (or this long)
OBSERVE_POLL = 0.5  # while observing, a held repair asks again this often
FAILED_GRACE = 0.5  # how long a unit with its own Restart= may look failed before we act

_NOTICE_LEVEL = {
    Notice.EXHAUSTED: "error",
    Notice.ACTION_FAILED: "warning",
    Notice.HELD: "warning",
}


@dataclass(frozen=True)
class DaemonOptions:
    config_dir: Path
    state_dir: Path
    socket_path: Path
    dry_run: bool = False


class StartupError(Exception):
    """The daemon cannot start; carries the exit code to use."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log_config_issues(loaded: LoadedConfig) -> None:
    for issue in loaded.errors:
        log.error("policy error", error=str(issue), file=str(issue.path), line=issue.line)


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Create the state dir and hold its lock, so two daemons never share it."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = open(state_dir / "lock", "a+")  # noqa: SIM115 - held for the daemon's lifetime
    except OSError as exc:
        raise StartupError(
            f"state dir {state_dir} is not writable: {exc.strerror}", EX_CANTCREAT
        ) from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        lock.close()
        raise StartupError(
            f"state dir {state_dir} is in use by another host-supervisor", EX_TEMPFAIL
        ) from exc
    return lock


class Daemon(FailoverShell):
    def __init__(self, options: DaemonOptions, loaded: LoadedConfig, ports: Ports) -> None:
        self.options = options
        self.loaded = loaded
        self.ports = ports
        self.store = ports.store
        self.notifier = ports.notifier
        self.clock = ports.clock  # wall clock: deadlines are stored and must survive a restart
        self.units: dict[str, UnitSupervisor] = {
            unit: UnitSupervisor(policy) for unit, policy in loaded.policies.items()
        }
        self.manager = ports.manager
        self.manager.listen(self._on_unit_change)
        self.effects = ports.repairs
        self.prober = ports.probes
        self.hostname = ports.hostname
        self.alerter = ports.alerts
        self.metrics = Metrics()
        store = self.store
        # Actions in flight died with the previous process: nothing is running now.
        stored_guard = GuardState.from_dict(store.load_doc("guard") or {})
        self.guard: GuardState = dataclasses.replace(stored_guard, running=frozenset())
        self.flaps: dict[str, FlapState] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._snapshot_timers: dict[str, asyncio.TimerHandle] = {}
        self._guard_timer: asyncio.TimerHandle | None = None
        self._check_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: list[str] = []  # units held for a free repair slot
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._problem_alerted: set[str] = set()  # units whose recovery people should hear of
        self._last_snapshot: dict[str, UnitSnapshot] = {}
        self._stop = asyncio.Event()
        self._reload_note = ""
        self._status_pending = False
        self._observe_until = 0.0
        stored = store.load_units()
        self._resume_stored(stored)
        self._failover_init(stored)

    def _resume_stored(self, stored: dict[str, dict[str, Any]]) -> None:
        """Take up each unit's ladder where the previous process left it."""
        now = self.clock()
        for unit, supervisor in self.units.items():
            doc = stored.get(unit)
            if doc is None or "recovery" not in doc:
                continue
            state = RecoveryState.from_dict(doc["recovery"])
            if state.phase is Phase.ACTING:
                # The previous process died during the action: it was performed (or
                # not), but never again: judge it after settle like any other.
                state, _ = self._step(supervisor, state, ActionFinished(True), now)
            supervisor.recovery = dataclasses.replace(state, condition=Condition.UNKNOWN)
            log.info(
                "resumed stored state",
                unit=unit,
                phase=state.phase.value,
                attempts=state.attempts,
                next_in_s=round(state.deadline - now, 1) if state.deadline else None,
            )

    def _step(
        self, supervisor: UnitSupervisor, state: RecoveryState, event: Event, now: float
    ) -> tuple[RecoveryState, list[Action]]:
        return step(supervisor.policy.recovery, state, event, now)

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        api = self.ports.control(self)
        self.notifier.status("connecting to the system bus")
        if not await self._connect():
            return 0
        await api.start()
        await self.alerter.start()  # apprise loads its plugins now, not at the first alert
        bus_task = asyncio.create_task(self.manager.run())
        watchdog = asyncio.create_task(self.notifier.watchdog_loop())
        flusher = asyncio.create_task(self._flush_history())
        # Observe before acting: unit states now, and one round of probes.
        longest = max(
            (
                c.interval + c.timeout
                for s in self.units.values()
                for c in s.policy.checks
                if not isinstance(c.probe, UnitProbe)
            ),
            default=0.0,
        )
        self._observe_until = self.clock() + min(longest + JITTER_MAX, OBSERVE_MAX)
        await asyncio.gather(*(self._watch(unit) for unit in list(self.units)))
        await self._failover_start()
        for unit, supervisor in self.units.items():
            self._start_checks(unit)
            self._schedule(supervisor)
            self._arm_snapshot(supervisor)
        self._schedule_guard()
        self._history(None, "daemon", "started", units=len(self.units))
        self._alert(
            None,
            "daemon",
            Severity.INFO,
            f"host-supervisor started on {self.hostname}",
            f"Supervising {len(self.units)} units"
            + (" (dry run: no action is taken)." if self.options.dry_run else "."),
        )
        log.info(
            "supervising",
            units=len(self.units),
            checks=sum(len(s.policy.checks) for s in self.units.values()),
            dry_run=self.options.dry_run,
            config=str(self.options.config_dir),
        )
        self.notifier.ready(self.status_line())
        # Policies, models and the bus client live as long as the daemon: keep them out
        # of the collector's full passes, whose pauses would make checks run late.
        gc.freeze()
        await self._stop.wait()
        log.info("stopping")
        self.notifier.stopping()
        self._history(None, "daemon", "stopping")
        self._alert(
            None,
            "daemon",
            Severity.INFO,
            f"host-supervisor stopping on {self.hostname}",
            "Units are no longer watched or repaired until it starts again.",
        )
        for timers in (
            self._timers,
            self._snapshot_timers,
            self._failover_timers,
            self._judge_timers,
            self._grace,
        ):
            for timer in timers.values():
                timer.cancel()
        if self._guard_timer is not None:
            self._guard_timer.cancel()
        for unit in list(self._check_tasks):
            self._stop_checks(unit)
        watchdog.cancel()
        flusher.cancel()
        await api.stop()
        await self.manager.close()
        await self.prober.close()
        await self.alerter.close()
        bus_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(bus_task, watchdog, flusher, *self._tasks, return_exceptions=True)
        self.store.close()
        return 0

    def request_stop(self) -> None:
        """Stop as on SIGTERM: say so, close the adapters, return from `run`."""
        self._stop.set()

    async def _connect(self) -> bool:
        """Connect to the bus, retrying with backoff; False if asked to stop meanwhile."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.manager.connect()
                return True
            except BusError as exc:
                log.error("system bus unreachable", error=str(exc), retry_in_s=delay)
                self.notifier.status(f"waiting for the system bus: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, BUS_RETRY_MAX)
        return False

    async def _watch(self, unit: str, attempt: int = 0) -> None:
        """Follow the unit over D-Bus; on failure retry with backoff, never give up."""
        if unit not in self.units:
            return
        try:
            snapshot = await self.manager.watch(unit)
        except BusError as exc:
            delay = min(WATCH_RETRY_MIN * 2**attempt, WATCH_RETRY_MAX)
            log.error("cannot watch unit; retrying", unit=unit, error=str(exc), retry_in_s=delay)
            asyncio.get_running_loop().call_later(
                delay, lambda: self._spawn(self._watch(unit, attempt + 1))
            )
            return
        if snapshot.load_state == "not-found":
            log.warning("unit not found; watching for it to appear", unit=unit)
        self._on_unit_change(snapshot)

    async def _flush_history(self) -> None:
        """Write buffered history every second; keep it bounded (90 days, 200k entries)."""
        flushes = 0
        while True:
            await asyncio.sleep(HISTORY_FLUSH)
            flushes += 1
            try:
                self.store.flush()
                if flushes % PRUNE_EVERY == 1:
                    self.store.prune()
            except SupervisorError as exc:
                log.error("cannot write history", error=str(exc))

    def _history(self, unit: str | None, kind: str, message: str, **data: Any) -> None:
        try:
            self.store.append(unit, kind, message, data or None, time=self.clock())
        except (SupervisorError, TypeError) as exc:
            log.error("cannot record history", error=str(exc), unit=unit, kind=kind)

    def _alert(
        self,
        supervisor: UnitSupervisor | None,
        event: str,
        severity: Severity,
        title: str,
        body: str,
        *,
        problem: bool = False,
        resolves: tuple[str, ...] = (),
    ) -> None:
        """Tell people: the policy's channels for a unit, every channel for the host."""
        if supervisor is None:
            channels = tuple(self.loaded.main.alerts.channels)
        else:
            channels = supervisor.policy.alerts
        if not channels:
            return
        unit = supervisor.unit if supervisor is not None else None
        self.alerter.submit(
            Alert(
                unit=unit,
                event=event,
                severity=severity,
                title=title,
                body=body,
                channels=channels,
                time=self.clock(),
                resolves=resolves,
                problem=problem,
            )
        )

    def _next_steps(self, supervisor: UnitSupervisor) -> str:
        recovery = supervisor.policy.recovery
        if guard.is_protected(
            supervisor.unit, self.loaded.main.guard, supervisor.policy.allow_automatic
        ):
            return "It is protected: it is not repaired automatically; a person must act."
        ladder = ", ".join(recovery.ladder)
        return f"Next: the repair ladder ({ladder}), up to {recovery.max_attempts} attempts."

    async def test_alert(self, channel: str | None) -> list[Delivery]:
        return await self.alerter.test(channel)

    # -- checks ------------------------------------------------------------

    def _start_checks(self, unit: str) -> None:
        supervisor = self.units[unit]
        self._check_tasks[unit] = [
            asyncio.create_task(self._check_loop(unit, index, check), name=f"{unit}/{check.name}")
            for index, check in enumerate(supervisor.policy.checks)
            if not isinstance(check.probe, UnitProbe)  # judged on every signal instead
        ]

    def _stop_checks(self, unit: str) -> None:
        for task in self._check_tasks.pop(unit, []):
            task.cancel()

    async def _check_loop(self, unit: str, index: int, check: Check) -> None:
        """Run one check on its own fixed-rate schedule; nothing it does delays another."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(_jitter(unit, check))
        due = loop.time()
        while True:
            supervisor = self.units[unit]
            if supervisor.running:
                late_by = loop.time() - due
                result = await self.prober.run(check, await self._context(supervisor, check))
                self.metrics.ran(result.status.value, late_by)
                self._on_result(supervisor, index, result)
            due += check.interval
            now = loop.time()
            if due < now:  # the probe outlasted its interval: run again now, not in a burst
                due = now
            await asyncio.sleep(due - now)

    async def _context(self, supervisor: UnitSupervisor, check: Check) -> ProbeContext:
        context = supervisor.context
        if isinstance(check.probe, MemoryProbe) and check.probe.max_rss is not None:
            # MemoryCurrent is not signalled: read it for each run of a memory check.
            with contextlib.suppress(BusError):
                memory = await self.manager.memory_current(supervisor.unit)
                context = dataclasses.replace(context, memory_current=memory)
        return context

    def _on_result(self, supervisor: UnitSupervisor, index: int, result: CheckResult) -> None:
        update = supervisor.record(index, result, self.clock())
        if not update.changed:
            # Flap detection samples every check-in, as Nagios does (a changed
            # condition is sampled in _apply_update).
            self._observe_flapping(supervisor)
        self._apply_update(supervisor, update)
        if update.changed:
            self._failover_observe(supervisor.unit)

    # -- events ------------------------------------------------------------

    def _on_unit_change(self, snapshot: UnitSnapshot, *, after_grace: bool = False) -> None:
        unit = snapshot.name
        supervisor = self.units.get(unit)
        if supervisor is None:
            self._last_snapshot[unit] = snapshot  # a backup without a policy of its own
            self._failover_observe(unit)
            return
        self._last_snapshot[unit] = snapshot
        if _systemd_may_restart(snapshot) and not after_grace:
            # systemd 252 shows a unit with its own Restart= as failed for a moment on
            # its way to auto-restart: judge it only if it is still failed after a grace.
            if unit not in self._grace:
                self._grace[unit] = asyncio.get_running_loop().call_later(
                    FAILED_GRACE, self._grace_over, unit
                )
            return
        if (timer := self._grace.pop(unit, None)) is not None:
            timer.cancel()
        view = UnitView(
            snapshot.load_state, snapshot.active_state, snapshot.sub_state, snapshot.result
        )
        supervisor.main_pid = snapshot.main_pid
        self._apply_update(supervisor, supervisor.observe(view, self.clock()), snapshot)
        self._failover_observe(unit)

    def _grace_over(self, unit: str) -> None:
        self._grace.pop(unit, None)
        snapshot = self._last_snapshot.get(unit)
        if snapshot is not None:
            self._on_unit_change(snapshot, after_grace=True)

    def _apply_update(
        self, supervisor: UnitSupervisor, update: Update, snapshot: UnitSnapshot | None = None
    ) -> None:
        unit = supervisor.unit
        for change in update.check_changes:
            level = "info" if change.after.value in ("ok", "pending") else "warning"
            getattr(log, level)(
                "check state changed",
                unit=unit,
                check=change.check.name,
                before=change.before.value,
                after=change.after.value,
                critical=change.check.critical,
                message=change.result.message,
            )
            if change.after.value != "pending":
                self._history(
                    unit,
                    "check",
                    f"{change.check.name}: {change.before.value} -> {change.after.value}: "
                    f"{change.result.message}",
                    check=change.check.name,
                    state=change.after.value,
                )
        if update.changed:
            self._log_transition(supervisor, update.previous, snapshot)
            self._observe_flapping(supervisor)
        if update.changed or update.check_changes:
            self._update_status()
        self._perform(supervisor, update.actions)

    def _log_transition(
        self, supervisor: UnitSupervisor, previous: Condition, snapshot: UnitSnapshot | None
    ) -> None:
        unit, condition, view = supervisor.unit, supervisor.condition, supervisor.view
        fields: dict[str, Any] = {"unit": unit, "state": describe(view) if view else ""}
        if snapshot is not None:
            fields["main_pid"] = snapshot.main_pid
        match condition:
            case Condition.UNHEALTHY if view and unit_condition(view) is Condition.UNHEALTHY:
                log.warning("unit failed", action="detect", **fields)
                self._failover_trigger(supervisor, PrimaryHardFailure(fields["state"]))
                self._history(unit, "health", f"failed: {fields['state']}")
                self._alert(
                    supervisor,
                    "unhealthy",
                    Severity.WARNING,
                    f"{unit} failed ({view.result or view.active_state})",
                    f"systemd reports {unit} as {fields['state']}. {self._next_steps(supervisor)}",
                    problem=True,
                )
            case Condition.UNHEALTHY:
                failing = ",".join(supervisor.failing_checks())
                log.warning("unit unhealthy", action="detect", checks=failing, **fields)
                self._failover_trigger(supervisor, PrimaryHardFailure(f"checks {failing}"))
                self._history(unit, "health", f"unhealthy: failing checks {failing}")
                messages = "; ".join(
                    f"{check.name}: {result.message}"
                    for check, result in zip(
                        supervisor.policy.checks, supervisor.results, strict=True
                    )
                    if check.name in supervisor.failing_checks() and result is not None
                )
                self._alert(
                    supervisor,
                    "unhealthy",
                    Severity.WARNING,
                    f"{unit} unhealthy: {failing}",
                    f"Critical checks failing: {messages}. {self._next_steps(supervisor)}",
                    problem=True,
                )
            case Condition.STOPPED if previous in (
                Condition.HEALTHY,
                Condition.DEGRADED,
                Condition.TRANSIENT,
                Condition.UNKNOWN,
            ):
                log.info("unit stopped cleanly; respecting the stop", action="none", **fields)
                self._history(unit, "health", "stopped cleanly; not restarted")
            case Condition.MISSING if previous is not Condition.UNKNOWN:
                log.warning("unit disappeared", **fields)
                self._history(unit, "health", "disappeared")
            case Condition.HEALTHY if previous is Condition.MISSING:
                log.info("unit appeared", **fields)
                self._history(unit, "health", "appeared")
            case _:
                log.info("unit state", condition=condition.value, **fields)
                if previous is not Condition.UNKNOWN or condition is not Condition.HEALTHY:
                    self._history(unit, "health", condition.value)
        if condition in (Condition.HEALTHY, Condition.DEGRADED):
            self._arm_snapshot(supervisor)
            if unit in self._problem_alerted:
                # The gate sends it only if a problem was actually sent, and once.
                self._problem_alerted.discard(unit)
                self._alert(
                    supervisor,
                    "recovered",
                    Severity.INFO,
                    f"{unit} recovered",
                    f"{unit} is {condition.value} again ({fields['state']}).",
                    resolves=("unhealthy", "exhausted", "protected"),
                )
        elif condition is Condition.UNHEALTHY:
            self._problem_alerted.add(unit)

    def _observe_flapping(self, supervisor: UnitSupervisor) -> None:
        condition = supervisor.condition
        if condition not in (Condition.HEALTHY, Condition.DEGRADED, Condition.UNHEALTHY):
            return
        unit = supervisor.unit
        cfg = self.loaded.main.guard.flapping
        healthy = condition is not Condition.UNHEALTHY
        self.flaps[unit], change = observe_flap(
            cfg, self.flaps.get(unit, FlapState()), healthy, self.clock()
        )
        if change == "started":
            log.error("unit is flapping; repairs paused until it settles", unit=unit)
            self._history(unit, "alert", "flapping: repairs paused until it settles")
            self._alert(
                supervisor,
                "flapping",
                Severity.WARNING,
                f"{unit} is flapping",
                f"{unit} changes between healthy and unhealthy too often. Repairs are "
                "paused until it settles; it is still watched.",
                problem=True,
            )
        elif change == "stopped":
            log.info("unit stopped flapping; repairs resume", unit=unit)
            self._history(unit, "alert", "no longer flapping: repairs resume")
            self._alert(
                supervisor,
                "settled",
                Severity.INFO,
                f"{unit} stopped flapping",
                "Repairs resume.",
                resolves=("flapping",),
            )
            self._feed(supervisor, Resume())

    # -- the ladder and its effects -----------------------------------------

    def _feed(self, supervisor: UnitSupervisor, event: Event) -> None:
        self._perform(supervisor, supervisor.feed(event, self.clock()))

    def _perform(self, supervisor: UnitSupervisor, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case RunRung():
                    self._spawn(self._run_rung(supervisor, action))
                case Report():
                    self._report(supervisor, action)
        self._save(supervisor)
        self._schedule(supervisor)

    def _save(self, supervisor: UnitSupervisor) -> None:
        unit = supervisor.unit
        fo = self.failovers.get(unit)
        if (supervisor.recovery, fo) == supervisor.saved:
            return
        doc: dict[str, Any] = {"recovery": supervisor.recovery.to_dict()}
        if fo is not None:
            doc["failover"] = fo.to_dict()
        try:
            self.store.save_unit(unit, doc)
            supervisor.saved = (supervisor.recovery, fo)
        except SupervisorError as exc:
            log.error("cannot save state", unit=unit, error=str(exc))

    def _schedule(self, supervisor: UnitSupervisor) -> None:
        unit = supervisor.unit
        if (old := self._timers.pop(unit, None)) is not None:
            old.cancel()
        deadline = supervisor.deadline
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock())
        self._timers[unit] = asyncio.get_running_loop().call_later(delay, self._tick, unit)

    def _tick(self, unit: str) -> None:
        self._timers.pop(unit, None)
        supervisor = self.units.get(unit)
        if supervisor is not None:
            self._feed(supervisor, Tick())

    def _report(self, supervisor: UnitSupervisor, report: Report) -> None:
        level = _NOTICE_LEVEL.get(report.notice, "info")
        unit = supervisor.unit
        getattr(log, level)(report.notice.value, unit=unit, detail=report.detail)
        kind = "alert" if report.notice is Notice.EXHAUSTED else "recovery"
        self._history(unit, kind, f"{report.notice.value}: {report.detail}")
        supervisor.last_event = f"{report.notice.value}: {report.detail}"
        self._update_status()
        match report.notice:
            case Notice.ATTEMPTS_RESET:
                self._failover_trigger(supervisor, PrimaryStable())
            case Notice.EXHAUSTED:
                self._failover_trigger(supervisor, LadderExhausted(report.detail))
                failover = supervisor.policy.failover
                after = (
                    f"Next: failover to {', '.join(failover.backup)}."
                    if failover is not None
                    else "Nothing more is tried automatically."
                )
                self._alert(
                    supervisor,
                    "exhausted",
                    Severity.CRITICAL,
                    f"{unit}: repairs exhausted, a person must act",
                    f"{report.detail}. {after} `host-supervisor reset {unit}` re-arms the ladder.",
                    problem=True,
                )

    async def _run_rung(self, supervisor: UnitSupervisor, action: RunRung) -> None:
        unit = supervisor.unit
        fields = {
            "unit": unit,
            "action": action.rung,
            "attempt": f"{action.attempt}/{action.max_attempts}",
        }
        allowed_at = self.clock()
        held = await self._hold_reason(supervisor, allowed_at)
        if held is not None:
            reason, until = held
            self._feed(supervisor, Held(reason, until))
            return
        self._history(unit, "action", f"{action.rung} (attempt {fields['attempt']})")
        self._alert(
            supervisor,
            f"action:{action.rung}#{action.attempt}",  # each action is news, not a repeat
            Severity.INFO,
            f"{action.rung} {unit} (attempt {fields['attempt']})",
            f"{unit} is {supervisor.condition.value}; trying {action.rung}"
            + (" (dry run: not done)." if self.options.dry_run else "."),
        )
        if self.options.dry_run:
            log.warning(f"would {action.rung} unit (dry run)", dry_run=True, **fields)
            self._guard_finished(unit, True)
            self._feed(supervisor, ActionFinished(True, "dry run"))
            return
        log.warning(f"{action.rung}ing unit", **fields)
        started = asyncio.get_running_loop().time()
        failed_now = supervisor.view is not None and supervisor.view.active_state == "failed"
        outcome = await self.effects.perform(
            supervisor.policy, action.rung, failed_now, self.clock()
        )
        took_ms = round((asyncio.get_running_loop().time() - started) * 1000, 1)
        self._history(unit, "result", f"{action.rung} {outcome.result.value}: {outcome.detail}")
        settle = supervisor.policy.recovery.settle
        self._alert(
            supervisor,
            f"result:{action.rung}#{action.attempt}",
            Severity.INFO if outcome.result is Result.DONE else Severity.WARNING,
            f"{action.rung} {unit}: {outcome.result.value}",
            f"{outcome.detail}. Next: judged again after {settle:g}s.",
        )
        if outcome.result is Result.SKIPPED:
            self.guard = guard.cancelled(self.guard, unit, allowed_at)
            self._guard_changed([])
            self._release_waiting()
        else:
            self._guard_finished(unit, outcome.result is Result.DONE)
        if self.units.get(unit) is not supervisor:
            return  # the policy was removed meanwhile
        match outcome.result:
            case Result.DONE:
                self.metrics.repairs += 1
                log.info(
                    f"{action.rung} finished", result=outcome.detail, took_ms=took_ms, **fields
                )
                self._feed(supervisor, ActionFinished(True, outcome.detail))
            case Result.SKIPPED:
                log.warning(f"{action.rung} skipped", result=outcome.detail, **fields)
                self._feed(supervisor, Skipped(outcome.detail))
            case Result.FAILED:
                log.error(f"{action.rung} failed", result=outcome.detail, took_ms=took_ms, **fields)
                self._feed(supervisor, ActionFinished(False, outcome.detail))

    async def _hold_reason(
        self, supervisor: UnitSupervisor, now: float
    ) -> tuple[str, float | None] | None:
        """Why the repair asked for may not run now, and when to ask again; None: go."""
        unit = supervisor.unit
        if now < self._observe_until and not self._first_round_done():
            retry = min(self._observe_until, now + OBSERVE_POLL)
            return "observing units and running one round of checks after a start", retry
        if self.failover_owns(unit):
            return "failed over: the failover machine acts on this unit", None
        if self.flaps.get(unit, FlapState()).flapping:
            return "flapping: repairs paused until it settles", None
        reason = await failing_precondition(
            supervisor.policy.recovery.preconditions, self.manager, self.ports.host
        )
        if reason is not None:
            return f"precondition: {reason}", now + PRECONDITION_RETRY
        self.guard, decision, notices = guard.request(
            self.loaded.main.guard,
            self.guard,
            unit,
            allow_automatic=supervisor.policy.allow_automatic,
            now=now,
        )
        self._guard_changed(notices)
        if decision.verdict is Verdict.ALLOW:
            return None
        if decision.kind == "protected":
            log.error("protected unit unhealthy; not repaired automatically", unit=unit)
            self._history(unit, "alert", f"protected: {decision.reason}")
            self._alert(
                supervisor,
                "protected",
                Severity.CRITICAL,
                f"{unit} is unhealthy and protected: a person must act",
                f"{decision.reason}. It is not repaired automatically unless its policy "
                "says allow_automatic: true.",
                problem=True,
            )
        if decision.kind == "concurrency" and unit not in self._waiting:
            self._waiting.append(unit)
        return decision.reason, decision.retry_at

    def _first_round_done(self) -> bool:
        """Every scheduled check of every running unit has reported since the start."""
        return all(
            runs > 0
            for supervisor in self.units.values()
            if supervisor.running
            for check, runs in zip(supervisor.policy.checks, supervisor.runs, strict=True)
            if not isinstance(check.probe, UnitProbe)
        )

    def _guard_finished(self, unit: str, ok: bool) -> None:
        self.guard, notices = guard.finished(
            self.loaded.main.guard, self.guard, unit, ok, self.clock()
        )
        self._guard_changed(notices)
        self._release_waiting()

    def _release_waiting(self) -> None:
        """A slot is free: the units waiting for one may ask again, in order."""
        waiting, self._waiting = self._waiting, []
        for name in waiting:
            if (supervisor := self.units.get(name)) is not None:
                self._feed(supervisor, Resume())

    def _guard_changed(self, notices: list[GuardNotice]) -> None:
        for notice in notices:
            level = "critical" if notice.kind == "frozen" else "warning"
            getattr(log, level)(notice.message, guard=notice.kind)
            self._history(None, "guard", notice.message, notice=notice.kind)
            if notice.kind == "frozen":
                self._alert(
                    None,
                    "frozen",
                    Severity.CRITICAL,
                    f"automation frozen on {self.hostname}",
                    f"{notice.message}. Units are still watched and alerted, not repaired.",
                    problem=True,
                )
            elif notice.kind == "thawed":
                self._alert(
                    None,
                    "thawed",
                    Severity.INFO,
                    f"automation resumed on {self.hostname}",
                    notice.message,
                    resolves=("frozen",),
                )
        try:
            self.store.save_doc("guard", self.guard.to_dict())
        except SupervisorError as exc:
            log.error("cannot save the guard's state", error=str(exc))
        self._schedule_guard()

    def _schedule_guard(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None
        deadline = guard.next_deadline(self.guard)
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock())
        self._guard_timer = asyncio.get_running_loop().call_later(delay, self._guard_tick)

    def _guard_tick(self) -> None:
        self._guard_timer = None
        self.guard, notices = guard.tick(self.loaded.main.guard, self.guard, self.clock())
        self._guard_changed(notices)

    # -- last-known-good snapshots ----------------------------------------

    def _arm_snapshot(self, supervisor: UnitSupervisor) -> None:
        restore = supervisor.policy.recovery.restore
        unit = supervisor.unit
        if restore is None or restore.source != "last-known-good" or unit in self._snapshot_timers:
            return
        self._snapshot_timers[unit] = asyncio.get_running_loop().call_later(
            restore.snapshot_after, self._snapshot_due, unit
        )

    def _snapshot_due(self, unit: str) -> None:
        self._snapshot_timers.pop(unit, None)
        supervisor = self.units.get(unit)
        if supervisor is None:
            return
        restore = supervisor.policy.recovery.restore
        since = supervisor.recovery.healthy_since
        healthy = supervisor.condition in (Condition.HEALTHY, Condition.DEGRADED)
        if restore is None or not healthy or since is None:
            return  # armed again when it is healthy again
        if self.clock() - since >= restore.snapshot_after:
            self._spawn(self._take_snapshot(supervisor))
        self._arm_snapshot(supervisor)  # files may change later: look again

    async def _take_snapshot(self, supervisor: UnitSupervisor) -> None:
        try:
            taken = await self.effects.snapshot(supervisor.policy, self.clock())
        except (OSError, SupervisorError) as exc:
            log.error("cannot snapshot the configuration", unit=supervisor.unit, error=str(exc))
            return
        if taken is not None:
            log.info("known-good configuration saved", unit=supervisor.unit, snapshot=str(taken))
            self._history(supervisor.unit, "restore", f"snapshot taken: {taken}")

    # -- tasks -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reload ------------------------------------------------------------

    def _spawn_reload(self) -> None:
        self._spawn(self.reload())

    async def reload(self) -> bool:
        """Load the policies again; on any error keep every old policy and say why."""
        self.notifier.reloading()
        log.info("reloading policies", config=str(self.options.config_dir))
        loaded: LoadedConfig | None = None
        try:
            loaded = load_config(self.options.config_dir)
            problems = [str(issue) for issue in loaded.errors]
        except ConfigError as exc:
            problems = [str(exc)]
        if loaded is None or problems:
            for problem in problems:
                log.error("policy error", error=problem)
            first = problems[0] if problems else "unknown error"
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            self._reload_note = f"reload refused: {first}{more}"
            log.error("reload refused; keeping the previous policies", errors=len(problems))
            self._history(None, "daemon", self._reload_note)
            self.notifier.ready(self.status_line())
            return False
        await self._apply(loaded)
        self._reload_note = ""
        self._history(None, "daemon", f"policies reloaded: {len(self.units)} units")
        self.notifier.ready(self.status_line())
        return True

    async def _apply(self, loaded: LoadedConfig) -> None:
        old, new = set(self.units), set(loaded.policies)
        for unit in old - new:
            self.manager.unwatch(unit)
            self._stop_checks(unit)
            for timers in (self._timers, self._snapshot_timers):
                if (timer := timers.pop(unit, None)) is not None:
                    timer.cancel()
            del self.units[unit]
            self.store.delete_unit(unit)
            log.info("no longer supervising", unit=unit)
        for unit in old & new:
            supervisor = self.units[unit]
            if supervisor.policy != loaded.policies[unit]:
                checks_changed = supervisor.policy.checks != loaded.policies[unit].checks
                supervisor.set_policy(loaded.policies[unit])
                if checks_changed:
                    self._stop_checks(unit)
                    self._start_checks(unit)
        self.loaded = loaded
        added = sorted(new - old)
        for unit in added:
            self.units[unit] = UnitSupervisor(loaded.policies[unit])
        await asyncio.gather(*(self._watch(unit) for unit in added))
        for unit in added:
            self._start_checks(unit)
            log.info("now supervising", unit=unit)
        log.info("policies reloaded", units=len(self.units))

    # -- operator commands -------------------------------------------------

    def reset(self, unit: str) -> bool:
        supervisor = self.units.get(unit)
        if supervisor is None:
            return False
        log.info("reset by operator", unit=unit, action="reset")
        self._history(unit, "operator", "reset: attempts and exhaustion forgotten")
        self._feed(supervisor, OperatorReset())
        return True

    def pause(self, unit: str) -> bool:
        if unit not in self.units:
            return False
        log.info("paused by operator: watching, not acting", unit=unit, action="pause")
        self._history(unit, "operator", "paused: watched and alerted, not repaired")
        self.guard = guard.pause(self.guard, unit)
        self._guard_changed([])
        return True

    def resume(self, unit: str | None) -> bool:
        """Resume one unit, or with None every unit and a frozen automation."""
        if unit is not None and unit not in self.units:
            return False
        now = self.clock()
        if unit is None:
            log.info("resumed by operator: all units, and the repair budget", action="resume")
            self._history(None, "operator", "resume --all")
            self.guard, notices = guard.resume_all(self.guard, now)
            targets = list(self.units.values())
        else:
            log.info("resumed by operator", unit=unit, action="resume")
            self._history(unit, "operator", "resumed")
            self.guard, notices = guard.resume(self.guard, unit), []
            targets = [self.units[unit]]
        self._guard_changed(notices)
        for supervisor in targets:
            self._feed(supervisor, Resume())
        return True

    def history(self, unit: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        return [
            {
                "time": entry.time,
                "unit": entry.unit,
                "kind": entry.kind,
                "message": entry.message,
                "data": entry.data,
            }
            for entry in self.store.history(unit=unit, since=since, limit=limit)
        ]

    # -- status ------------------------------------------------------------

    def status_line(self) -> str:
        units: dict[str, int] = {}
        checks: dict[str, int] = {}
        for supervisor in self.units.values():
            units[supervisor.condition.value] = units.get(supervisor.condition.value, 0) + 1
            for state, n in supervisor.check_counts().items():
                checks[state] = checks.get(state, 0) + n
        noun = "unit" if len(self.units) == 1 else "units"
        text = f"{len(self.units)} {noun}: " + (_counts(units) or "none")
        if checks:
            text += f"; checks: {_counts(checks)}"
        text += f"; {self.metrics.repairs} repairs"
        if self.guard.frozen_until is not None and self.guard.frozen_until > self.clock():
            text += "; AUTOMATION FROZEN (repair budget spent)"
        if self.options.dry_run:
            text += " (dry run)"
        if self._reload_note:
            text += f"; {self._reload_note}"
        return text

    def _update_status(self) -> None:
        """Send STATUS= soon; many changes at once make one message."""
        if self._status_pending:
            return
        self._status_pending = True
        asyncio.get_running_loop().call_later(STATUS_EVERY, self._send_status)

    def _send_status(self) -> None:
        self._status_pending = False
        self.notifier.status(self.status_line())

    def unit_status(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        now = self.clock()
        for unit, sup in sorted(self.units.items()):
            view = sup.view
            rows.append(
                {
                    "unit": unit,
                    "condition": sup.condition.value,
                    "state": describe(view) if view else "",
                    "phase": sup.recovery.phase.value,
                    "attempts": sup.recovery.attempts,
                    "max_attempts": sup.policy.recovery.max_attempts,
                    "next_action_in_s": (
                        round(max(0.0, sup.deadline - now), 1) if sup.deadline is not None else None
                    ),
                    "held": sup.recovery.held_reason,
                    "paused": unit in self.guard.paused or self.guard.paused_all,
                    "flapping": self.flaps.get(unit, FlapState()).flapping,
                    "last_event": sup.last_event,
                    "failover": self.failover_status(unit),
                    "policy": str(self.loaded.sources.get(unit, "")),
                    "checks": [
                        {
                            "name": check.name,
                            "kind": check.kind,
                            "critical": check.critical,
                            "state": state.hard.value,
                            "soft": state.soft,
                            "message": result.message if result else "",
                            "duration_ms": round(result.duration * 1000, 1) if result else None,
                            "runs": runs,
                        }
                        for check, state, result, runs in zip(
                            sup.policy.checks, sup.checks, sup.results, sup.runs, strict=True
                        )
                    ],
                }
            )
        return rows


def _systemd_may_restart(snapshot: UnitSnapshot) -> bool:
    """Failed, but with a Restart= of its own that has not given up (start limit)."""
    return (
        snapshot.active_state == "failed"
        and snapshot.restart not in ("", "no")
        and snapshot.result != "start-limit-hit"
    )


def _jitter(unit: str, check: Check) -> float:
    """Where in its first interval a check first runs: spread, and the same every run."""
    spread = zlib.crc32(f"{unit}/{check.name}".encode()) / 2**32
    return spread * min(check.interval, JITTER_MAX)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def run_daemon(options: DaemonOptions) -> int:
    """Load, lock and run; returns the process exit code."""
    try:
        loaded = load_config(options.config_dir)
    except ConfigError as exc:
        log.error("cannot load configuration", error=str(exc))
        return EX_CONFIG
    log_config_issues(loaded)
    if loaded.errors and not loaded.policies:
        log.error("no valid policy left; refusing to start", errors=len(loaded.errors))
        return EX_CONFIG
    if not loaded.policies:
        log.warning("no policies found; nothing to supervise yet", config=str(options.config_dir))
    try:
        lock = lock_state_dir(options.state_dir)
    except StartupError as exc:
        log.error("cannot start", error=str(exc))
        return exc.exit_code
    try:
        try:
            store = Store(options.state_dir / "state.db")
        except SupervisorError as exc:
            log.error("cannot start", error=str(exc))
            return EX_CANTCREAT
        if store.moved_aside is not None:
            log.error(
                "the state database was unreadable; moved it aside and started afresh",
                moved_to=str(store.moved_aside),
            )
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            ports = real_ports(options, loaded, store)
            return runner.run(Daemon(options, loaded, ports).run())
    finally:
        lock.close()


def real_ports(options: DaemonOptions, loaded: LoadedConfig, store: Store) -> Ports:
    """The adapters that talk to this host: systemd, probes, apprise, SQLite."""
    manager = SystemdManager()
    hostname = socket.gethostname()
    group = loaded.main.control.socket_group
    return Ports(
        manager=manager,
        repairs=Effects(manager, options.state_dir),
        probes=Prober(loaded.main.checks.max_concurrent_commands),
        commands=CommandRunner(),
        alerts=Alerter(loaded.main.alerts, options.state_dir / "alerts", hostname),
        store=store,
        notifier=Notifier(),
        host=LocalHost(),
        control=lambda daemon: ControlServer(daemon, options.socket_path, group),
        clock=time.time,
        hostname=hostname,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it halves the event loop's cost per check run."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay correct without it
        return None
    return uvloop.new_event_loop
