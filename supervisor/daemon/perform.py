"""Carrying out the reducer's actions: each one becomes an adapter call, and the
outcome of every call that takes time comes back as an event.

Quick actions (log, history, alert, save, timers) are done at once; the ones that
wait on systemd, a program or the disk run as tasks and `feed` their outcome.
A failed write to the store is logged and, for a unit's state, fed back so that
the state is written again at the next change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from supervisor.core import actions as act
from supervisor.core.actions import Action, Event
from supervisor.core.failover import Verb
from supervisor.core.shadow import NOT_RUN
from supervisor.core.state import HostState
from supervisor.core.values import RepairResult, Rung
from supervisor.daemon.metrics import Metrics
from supervisor.daemon.ports import ClusterPort, Ports
from supervisor.daemon.preconditions import failing_precondition
from supervisor.daemon.probing import Probing
from supervisor.daemon.timers import Timers
from supervisor.errors import BusError, JobFailed, SupervisorError
from supervisor.secrets import mask, mask_data
from supervisor.store import StoreUnavailable

log = structlog.get_logger("host-supervisor")

JOB_TIMEOUT = 90.0
DURABLE_BEFORE_ACTION = 2.0  # a repair waits this long for its state to be stored
DURABLE_BEFORE_FAILOVER = 30.0  # a failover's job waits longer: holding it costs more
CAN_RECOVER_TIMEOUT = 60.0


class Performer:
    def __init__(
        self,
        ports: Ports,
        state: Callable[[], HostState],
        feed: Callable[[Event], object],
        timers: Timers,
        probing: Probing,
        metrics: Metrics,
        status_changed: Callable[[], None],
        ready: Callable[[], None],
        cluster: Callable[[], ClusterPort | None] = lambda: None,
    ) -> None:
        self.ports = ports
        self._state = state
        self._feed = feed
        self.timers = timers
        self.probing = probing
        self.metrics = metrics
        self._status_changed = status_changed
        self._ready = ready
        self._cluster = cluster
        self.tasks: set[asyncio.Task[Any]] = set()

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            self._one(action)

    def _one(self, action: Action) -> None:
        match action:
            case act.Log(level, message, fields):
                getattr(log, level)(message, **dict(fields))
            case act.RecordHistory(unit, kind, message, data):
                self._history(unit, kind, message, dict(data))
            case act.SendAlert(alert):
                self.ports.alerts.submit(alert)
            case act.SaveUnit(unit, doc):
                try:
                    self.ports.store.save_unit(unit, doc)
                except (SupervisorError, TypeError) as exc:
                    log.error("cannot save state", unit=unit, error=str(exc))
                    self._feed(act.SaveFailed(unit))
            case act.DeleteUnit(unit):
                try:
                    self.ports.store.delete_unit(unit)
                except SupervisorError as exc:
                    log.error("cannot delete state", unit=unit, error=str(exc))
            case act.SaveGuard(doc):
                try:
                    self.ports.store.save_doc("guard", doc)
                except SupervisorError as exc:
                    log.error("cannot save the guard's state", error=str(exc))
            case act.SetTimer(key, at):
                self.timers.set(key, at)
            case act.CheckPreconditions(unit):
                self.spawn(self._preconditions(unit))
            case act.RunRepair():
                self.spawn(self._repair(action))
            case act.RunFailoverJob():
                self.spawn(self._failover_job(action))
            case act.RunCanRecover(unit, argv):
                self.spawn(self._can_recover(unit, argv))
            case act.TakeSnapshot():
                self.spawn(self._snapshot(action))
            case act.WatchConfig():
                self.spawn(self._watch_config(action))
            case act.UnwatchConfig(unit):
                if self.ports.changes is not None:
                    self.ports.changes.unwatch(unit)
            case act.WatchBackup(unit):
                self.spawn(self.watch_backup(unit))
            case act.Unwatch(unit):
                self.ports.manager.unwatch(unit)
            case act.StartChecks(unit):
                self.probing.start(unit)
            case act.StopChecks(unit):
                self.probing.stop(unit)
            case act.StatusChanged():
                self._status_changed()
            case act.Ready():
                self._ready()
            case act.ClusterAct(unit, step):
                if (driver := self._cluster()) is not None:
                    driver.perform(unit, step)
            case act.ClusterRole():
                if (driver := self._cluster()) is not None:
                    driver.role_changed(action)
            case act.Watch() | act.Answer():
                pass  # read by whoever fed the event (reload, the control socket)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _history(self, unit: str | None, kind: str, message: str, data: dict[str, Any]) -> None:
        try:
            self.ports.store.append(
                unit, kind, mask(message), mask_data(data) or None, time=self.ports.clock()
            )
        except (SupervisorError, TypeError) as exc:
            log.error("cannot record history", error=str(exc), unit=unit, kind=kind)

    async def _preconditions(self, unit: str) -> None:
        state = self._state().units.get(unit)
        if state is None:
            return
        unsaved = ""
        try:
            # The attempt is counted in the state queued with this request: it must be
            # on disk before the repair runs, or a crash would repeat it.
            await self.ports.store.durable(DURABLE_BEFORE_ACTION)
        except StoreUnavailable as exc:
            unsaved = str(exc)
        pre = state.policy.recovery.preconditions
        reason = await failing_precondition(pre, self.ports.manager, self.ports.host)
        self._feed(act.PreconditionsChecked(unit, reason or "", unsaved))

    async def _repair(self, action: act.RunRepair) -> None:
        state = self._state().units.get(action.unit)
        if state is None:
            return
        if self._state().dry_run:
            # A last net: in shadow mode the reducer records its repairs, never asks for one.
            log.error("repair refused in shadow mode", unit=action.unit, action=action.rung)
            self._feed(
                act.RepairDone(
                    action.unit,
                    action.rung,
                    action.attempt,
                    action.max_attempts,
                    RepairResult.FAILED,
                    "shadow mode: not done",
                    0.0,
                )
            )
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await self.ports.repairs.perform(
            state.policy, action.rung, action.unit_failed, self.ports.clock()
        )
        if action.rung is Rung.RESTORE and self.ports.changes is not None:
            await self.ports.changes.quiet(action.unit)  # our own writes are no change
        took_ms = round((loop.time() - started) * 1000, 1)
        self.metrics.repaired(action.unit, action.rung.value, outcome.result.value)
        self._feed(
            act.RepairDone(
                action.unit,
                action.rung,
                action.attempt,
                action.max_attempts,
                outcome.result,
                outcome.detail,
                took_ms,
                outcome.diff,
            )
        )

    async def _failover_job(self, job: act.RunFailoverJob) -> None:
        if self._state().dry_run:
            self._feed(act.FailoverJobDone(job.primary, job.target, job.verb, True, NOT_RUN))
            return
        manager = self.ports.manager
        try:
            await self.ports.store.durable(DURABLE_BEFORE_FAILOVER)
        except StoreUnavailable as exc:
            detail = f"not done: the failover's state is not saved: {exc}"
            self._feed(act.FailoverJobDone(job.primary, job.target, job.verb, False, detail))
            return
        try:
            if job.verb is Verb.START:
                if job.reset_failed_first:
                    await manager.reset_failed(job.target)
                result = await manager.start(job.target, timeout=JOB_TIMEOUT)
            else:
                result = await manager.stop(job.target, timeout=JOB_TIMEOUT)
            ok, detail = result == "done", f"job {result}"
        except (BusError, JobFailed) as exc:
            ok, detail = False, str(exc)
        self._feed(act.FailoverJobDone(job.primary, job.target, job.verb, ok, detail))

    async def _can_recover(self, unit: str, argv: tuple[str, ...]) -> None:
        result = await self.ports.commands.run(argv, unit, CAN_RECOVER_TIMEOUT)
        ok = result.status.value == "ok"
        self._feed(act.CanRecoverDone(unit, ok, result.status.value, result.message))

    async def watch_backup(self, unit: str) -> None:
        try:
            snapshot = await self.ports.manager.watch(unit)
        except BusError as exc:
            self._feed(act.BackupWatched(None, unit, str(exc)))
            return
        self._feed(act.BackupWatched(snapshot, unit))

    async def _snapshot(self, take: act.TakeSnapshot) -> None:
        state = self._state().units.get(take.unit)
        if state is None:
            return
        repairs = self.ports.repairs
        try:
            taken = await repairs.snapshot(
                state.policy,
                self.ports.clock(),
                applied_at=take.applied_at,
                healthy_since=take.healthy_since,
            )
            known_good = await repairs.known_good(state.policy)
            proven = await repairs.proven(state.policy)
        except (OSError, SupervisorError) as exc:
            self._feed(act.SnapshotDone(take.unit, "", str(exc)))
            return
        path = str(taken) if taken is not None else ""
        self._feed(act.SnapshotDone(take.unit, path, known_good=known_good, proven=proven))

    async def _watch_config(self, action: act.WatchConfig) -> None:
        """Watch the restore paths, then say whether a rollback has a snapshot to use."""
        state = self._state().units.get(action.unit)
        changes = self.ports.changes
        if state is None:
            return
        error = ""
        if changes is None:
            error = "this daemon has no watcher of restore paths"
        else:
            try:
                await changes.watch(action.unit, action.paths)
            except (OSError, SupervisorError) as exc:
                error = str(exc)
        try:
            proven = await self.ports.repairs.proven(state.policy)
            known_good = await self.ports.repairs.known_good(state.policy)
        except (OSError, SupervisorError) as exc:
            proven, known_good = False, ""
            error = error or str(exc)
        self._feed(act.ConfigWatched(action.unit, proven, known_good, error))
