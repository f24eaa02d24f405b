"""The shell: D-Bus signals in, decisions out, effects done, results fed back.

Everything that decides lives in `health`, `recovery` (and later `guard` and
`failover`); this module only wires them to the world: it loads policies,
watches units through `systemd.manager`, performs the actions the machines ask
for, schedules their deadlines on the event loop, speaks sd_notify, and serves
the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from supervisor.api import ControlServer
from supervisor.checks import Prober
from supervisor.checks.result import CheckResult, ProbeContext
from supervisor.config import Check, LoadedConfig, MemoryProbe, UnitProbe, load_config
from supervisor.errors import BusError, ConfigError, JobFailed
from supervisor.health import Condition, UnitView, describe, unit_condition
from supervisor.metrics import Metrics
from supervisor.recovery import Action, Notice, OperatorReset, Report, RunRung, Tick
from supervisor.systemd.manager import SystemdManager, UnitSnapshot
from supervisor.systemd.notify import Notifier
from supervisor.unit_supervisor import UnitSupervisor, Update

log = structlog.get_logger("host-supervisor")

EX_CONFIG = 78
EX_CANTCREAT = 73
EX_TEMPFAIL = 75

JOB_TIMEOUT = 90.0
BUS_RETRY_MAX = 30.0
JITTER_MAX = 1.0  # each check's first run is spread over up to this many seconds
STATUS_EVERY = 0.5  # STATUS= is sent at most this often
WATCH_RETRY_MIN = 0.5
WATCH_RETRY_MAX = 60.0


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


class Daemon:
    def __init__(
        self,
        options: DaemonOptions,
        loaded: LoadedConfig,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.loaded = loaded
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.units: dict[str, UnitSupervisor] = {
            unit: UnitSupervisor(policy) for unit, policy in loaded.policies.items()
        }
        self.manager = SystemdManager(self._on_unit_change)
        self.prober = Prober(loaded.main.checks.max_concurrent_commands)
        self.metrics = Metrics()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._check_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._reload_note = ""
        self._status_pending = False

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        api = ControlServer(self, self.options.socket_path)
        self.notifier.status("connecting to the system bus")
        if not await self._connect():
            return 0
        await api.start()
        bus_task = asyncio.create_task(self.manager.run())
        watchdog = asyncio.create_task(self.notifier.watchdog_loop())
        await asyncio.gather(*(self._watch(unit) for unit in list(self.units)))
        for unit in self.units:
            self._start_checks(unit)
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
        for timer in self._timers.values():
            timer.cancel()
        for unit in list(self._check_tasks):
            self._stop_checks(unit)
        watchdog.cancel()
        await api.stop()
        await self.manager.close()
        await self.prober.close()
        bus_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(bus_task, watchdog, *self._tasks, return_exceptions=True)
        return 0

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
        await asyncio.sleep(random.uniform(0.0, min(check.interval, JITTER_MAX)))
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
        self._apply_update(supervisor, supervisor.record(index, result, self.clock()))

    # -- events ------------------------------------------------------------

    def _on_unit_change(self, snapshot: UnitSnapshot) -> None:
        supervisor = self.units.get(snapshot.name)
        if supervisor is None:
            return
        view = UnitView(
            snapshot.load_state, snapshot.active_state, snapshot.sub_state, snapshot.result
        )
        supervisor.main_pid = snapshot.main_pid
        self._apply_update(supervisor, supervisor.observe(view, self.clock()), snapshot)

    def _apply_update(
        self, supervisor: UnitSupervisor, update: Update, snapshot: UnitSnapshot | None = None
    ) -> None:
        for change in update.check_changes:
            level = "info" if change.after.value in ("ok", "pending") else "warning"
            getattr(log, level)(
                "check state changed",
                unit=supervisor.unit,
                check=change.check.name,
                before=change.before.value,
                after=change.after.value,
                critical=change.check.critical,
                message=change.result.message,
            )
        if update.changed:
            self._log_transition(supervisor, update.previous, snapshot)
        if update.changed or update.check_changes:
            self._update_status()
        self._perform(supervisor, update.actions)

    def _log_transition(
        self, supervisor: UnitSupervisor, previous: Condition, snapshot: UnitSnapshot | None
    ) -> None:
        unit, condition, view = supervisor.unit, supervisor.condition, supervisor.view
        fields: dict[str, object] = {"unit": unit, "state": describe(view) if view else ""}
        if snapshot is not None:
            fields["main_pid"] = snapshot.main_pid
        match condition:
            case Condition.UNHEALTHY if view and unit_condition(view) is Condition.UNHEALTHY:
                log.warning("unit failed", action="detect", **fields)
            case Condition.UNHEALTHY:
                failing = ",".join(supervisor.failing_checks())
                log.warning("unit unhealthy", action="detect", checks=failing, **fields)
            case Condition.STOPPED if previous in (
                Condition.HEALTHY,
                Condition.DEGRADED,
                Condition.TRANSIENT,
                Condition.UNKNOWN,
            ):
                log.info("unit stopped cleanly; respecting the stop", action="none", **fields)
            case Condition.MISSING if previous is not Condition.UNKNOWN:
                log.warning("unit disappeared", **fields)
            case Condition.HEALTHY if previous is Condition.MISSING:
                log.info("unit appeared", **fields)
            case _:
                log.info("unit state", condition=condition.value, **fields)

    def _perform(self, supervisor: UnitSupervisor, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case RunRung():
                    self._spawn(self._run_rung(supervisor, action))
                case Report():
                    self._report(supervisor, action)
        self._schedule(supervisor)

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
            self._perform(supervisor, supervisor.feed(Tick(), self.clock()))

    def _report(self, supervisor: UnitSupervisor, report: Report) -> None:
        level = "error" if report.notice is Notice.EXHAUSTED else "info"
        if report.notice is Notice.ACTION_FAILED:
            level = "warning"
        getattr(log, level)(report.notice.value, unit=supervisor.unit, detail=report.detail)
        supervisor.last_event = f"{report.notice.value}: {report.detail}"
        self._update_status()

    # -- effects -----------------------------------------------------------

    async def _run_rung(self, supervisor: UnitSupervisor, action: RunRung) -> None:
        unit = supervisor.unit
        fields = {
            "unit": unit,
            "action": action.rung,
            "attempt": f"{action.attempt}/{action.max_attempts}",
        }
        if self.options.dry_run:
            log.warning(f"would {action.rung} unit (dry run)", dry_run=True, **fields)
            self._finish(supervisor, True, "dry run")
            return
        log.warning(f"{action.rung}ing unit", **fields)
        started = time.monotonic()
        ok, detail = await self._execute(supervisor, action.rung)
        took_ms = round((time.monotonic() - started) * 1000, 1)
        if ok:
            self.metrics.repairs += 1
            log.info(f"{action.rung} finished", result=detail, took_ms=took_ms, **fields)
        else:
            log.error(f"{action.rung} failed", result=detail, took_ms=took_ms, **fields)
        self._finish(supervisor, ok, detail)

    async def _execute(self, supervisor: UnitSupervisor, rung: str) -> tuple[bool, str]:
        unit = supervisor.unit
        try:
            match rung:
                case "restart":
                    view = supervisor.view
                    if view is not None and view.active_state == "failed":
                        # Our ladder, cooldown and guard limit restarts; systemd's
                        # start limit would refuse a guarded restart of a failed unit.
                        await self.manager.reset_failed(unit)
                    result = await self.manager.restart(unit, timeout=JOB_TIMEOUT)
                case "reload":
                    if not (await self.manager.snapshot(unit)).can_reload:
                        return False, f"{unit} cannot reload (no ExecReload=); rung skipped"
                    result = await self.manager.reload(unit, timeout=JOB_TIMEOUT)
                case _:
                    return False, f"the {rung} rung is not available yet"
        except (BusError, JobFailed) as exc:
            return False, str(exc)
        return result == "done", f"job {result}"

    def _finish(self, supervisor: UnitSupervisor, ok: bool, detail: str) -> None:
        if self.units.get(supervisor.unit) is supervisor:
            self._perform(supervisor, supervisor.finish(ok, detail, self.clock()))

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
            self.notifier.ready(self.status_line())
            return False
        await self._apply(loaded)
        self._reload_note = ""
        self.notifier.ready(self.status_line())
        return True

    async def _apply(self, loaded: LoadedConfig) -> None:
        old, new = set(self.units), set(loaded.policies)
        for unit in old - new:
            self.manager.unwatch(unit)
            self._stop_checks(unit)
            if (timer := self._timers.pop(unit, None)) is not None:
                timer.cancel()
            del self.units[unit]
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
        self._perform(supervisor, supervisor.feed(OperatorReset(), self.clock()))
        return True

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
                        round(max(0.0, sup.deadline - self.clock()), 1)
                        if sup.deadline is not None
                        else None
                    ),
                    "last_event": sup.last_event,
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
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(Daemon(options, loaded).run())
    finally:
        lock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it halves the event loop's cost per check run."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay correct without it
        return None
    return uvloop.new_event_loop
