"""The daemon's life: connect, watch, feed the reducer, perform, stop.

Everything that decides is `supervisor.core.host.step`; this class holds the
current `HostState`, turns signals, probe results, timers and operator requests
into events, and hands the returned actions to the `Performer`. It is also the
`Control` the control socket serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from supervisor.config import LoadedConfig, UnitProbe, load_config
from supervisor.core import actions as act
from supervisor.core import host
from supervisor.core.actions import Action, Event
from supervisor.core.cluster_host import clustered_units
from supervisor.core.failover_host import backups
from supervisor.core.state import HostState, Tx
from supervisor.core.status import guard_row, status_line, unit_rows
from supervisor.core.values import UnitSnapshot
from supervisor.daemon.dependencies import DependencyReader
from supervisor.daemon.drills import Drills
from supervisor.daemon.metrics import Metrics
from supervisor.daemon.perform import Performer
from supervisor.daemon.ports import ClusterPort, Ports
from supervisor.daemon.probing import JITTER_MAX, Probing
from supervisor.daemon.timers import Timers
from supervisor.errors import BusError, ConfigError, SupervisorError
from supervisor.secrets import mask, mask_data
from supervisor.store import StoreUnavailable

log = structlog.get_logger("host-supervisor")

BUS_RETRY_MAX = 30.0
STATUS_EVERY = 0.5  # STATUS= is sent at most this often
WATCH_RETRY_MIN = 0.5
WATCH_RETRY_MAX = 60.0
PRUNE_EVERY = 3600.0  # seconds between two prunings of old history
STORE_CLOSE = 5.0  # at stop, how long the store may take to write what is queued
PERSIST_WAIT = 5.0  # how long an operator's request may wait to be stored
OBSERVE_MAX = 30.0  # after a start, act only once every check has reported (or this long)


@dataclass(frozen=True)
class Stored:
    """What the previous process left in the store: unit documents and the guard's."""

    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    guard: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DaemonOptions:
    config_dir: Path
    state_dir: Path
    socket_path: Path
    dry_run: bool = False


class Daemon:
    def __init__(
        self, options: DaemonOptions, loaded: LoadedConfig, ports: Ports, stored: Stored
    ) -> None:
        self.options = options
        self.ports = ports
        self.clock = ports.clock  # wall clock: deadlines are stored and must survive a restart
        self.metrics = Metrics()
        self.state, self._initial = host.initial(
            loaded,
            stored.units,
            stored.guard,
            hostname=ports.hostname,
            dry_run=options.dry_run,
            now=self.clock(),
        )
        self.timers = Timers(self.clock, lambda key: self.feed(act.TimerFired(key)))
        self.drills = Drills(lambda: self.state, ports.store, self.metrics, self.clock)
        self.probing = Probing(
            lambda: self.state,
            lambda event: self.feed(self.drills.forced(event)),
            ports.probes,
            ports.manager,
            self.metrics,
        )
        self.performer = Performer(
            ports,
            lambda: self.state,
            self.feed,
            self.timers,
            self.probing,
            self.metrics,
            self._update_status,
            lambda: ports.notifier.ready(self.status_line()),
            lambda: self.cluster,
        )
        self.cluster: ClusterPort | None = None
        self.dependencies = DependencyReader(
            ports.manager,
            lambda: list(self.state.units),
            lambda: dict(self.state.dependencies),
            self.feed,
            self.performer.spawn,
        )
        self._queue: deque[Event] = deque()
        self._stop = asyncio.Event()
        self._status_pending = False
        ports.manager.listen(self._on_unit_change)
        if ports.changes is not None:
            ports.changes.listen(self._on_config_change)
        ports.manager.listen_reloaded(self.dependencies.request)

    # -- the one way in ------------------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        """Step the reducer with `event` and perform what it returns. An event fed while
        actions are being performed (a failed save) is stepped right after them."""
        self._queue.append(event)
        if len(self._queue) > 1:
            return []
        actions: list[Action] = []
        while self._queue:
            event = self._queue[0]
            try:
                self.state, done = host.step(self.state, event, self.clock())
                self.performer.perform(done)
                actions += done
            except Exception:
                # A bug in one decision must not deafen the daemon: the state stays as it
                # was before this event, and the next events are decided as usual.
                log.exception("an event could not be handled; it is dropped", what=repr(event))
            finally:
                self._queue.popleft()
        return actions

    def _on_unit_change(self, snapshot: UnitSnapshot) -> None:
        self.feed(act.UnitChanged(snapshot))

    def _on_config_change(self, unit: str, paths: tuple[str, ...]) -> None:
        self.feed(act.ConfigChanged(unit, paths))

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop as on SIGTERM: say so, close the adapters, return from `run`."""
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.performer.spawn(self.reload()))
        ports = self.ports
        api = ports.control(self)
        await self.drills.load()
        ports.notifier.status("connecting to the system bus")
        if not await self._connect():
            return 0
        await api.start()
        web = ports.http(self) if ports.http is not None else None
        if web is not None:
            await web.start()  # a port it cannot bind is logged; supervision goes on
        await ports.alerts.start()  # apprise loads its plugins now, not at the first alert
        bus_task = asyncio.create_task(ports.manager.run())
        watchdog = asyncio.create_task(ports.notifier.watchdog_loop())
        pruner = asyncio.create_task(self._prune_history())
        self.performer.perform(self._initial)
        # Observe before acting: unit states now, and one round of probes.
        longest = max(
            (
                c.interval + c.timeout
                for s in self.state.units.values()
                for c in s.policy.checks
                if not isinstance(c.probe, UnitProbe)
            ),
            default=0.0,
        )
        self.feed(act.Starting(self.clock() + min(longest + JITTER_MAX, OBSERVE_MAX)))
        await asyncio.gather(*(self._watch(unit) for unit in list(self.state.units)))
        await asyncio.gather(
            *(self.performer.watch_backup(b) for b in self._backups() if b not in self.state.units)
        )
        self.feed(act.Started())
        self.dependencies.request()
        await self._start_cluster()
        for unit in self.state.units:
            self.probing.start(unit)
        log.info(
            "supervising",
            units=len(self.state.units),
            checks=sum(len(s.policy.checks) for s in self.state.units.values()),
            dry_run=self.options.dry_run,
            config=str(self.options.config_dir),
        )
        ports.notifier.ready(self.status_line())
        # Policies, models and the bus client live as long as the daemon: keep them out
        # of the collector's full passes, whose pauses would make checks run late.
        gc.freeze()
        await self._stop.wait()
        ports.notifier.stopping()
        self.feed(act.Stopping())
        if self.cluster is not None:
            # Clustered units keep running: the lease keeper stops them at the fence
            # deadline unless this daemon is back first and renews the lease.
            await self.cluster.close()
        self.timers.cancel_all()
        self.probing.stop_all()
        watchdog.cancel()
        pruner.cancel()
        await api.stop()
        if web is not None:
            await web.stop()
        await ports.manager.close()
        await ports.probes.close()
        await ports.alerts.close()
        if ports.changes is not None:
            await ports.changes.close()
        bus_task.cancel()
        for task in list(self.performer.tasks):
            task.cancel()
        await asyncio.gather(
            bus_task, watchdog, pruner, *self.performer.tasks, return_exceptions=True
        )
        await ports.store.aclose(STORE_CLOSE)
        return 0

    async def _start_cluster(self) -> None:
        config, factory = self.state.loaded.main.cluster, self.ports.cluster
        if config is None or factory is None:
            return
        if self.options.dry_run:
            # Taking a key would keep the unit from the hosts that act: a dry run never
            # joins the election, and starts or stops nothing.
            log.warning(
                "dry run: this host takes no part in the election for clustered units",
                endpoints=list(config.endpoints),
            )
            return
        me = config.host or self.ports.hostname
        units = clustered_units(self.state.loaded.policies)
        self.cluster = factory(config, me, units, self.ports.manager, self.feed, clock=self.clock)
        await self.cluster.start()
        log.info(
            "cluster: following etcd",
            host=me,
            endpoints=list(config.endpoints),
            units=sorted(units),
        )

    def _backups(self) -> set[str]:
        return backups(Tx(self.state, self.clock()))

    async def _connect(self) -> bool:
        """Connect to the bus, retrying with backoff; False if asked to stop meanwhile."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.ports.manager.connect()
                return True
            except BusError as exc:
                log.error("system bus unreachable", error=str(exc), retry_in_s=delay)
                self.ports.notifier.status(f"waiting for the system bus: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, BUS_RETRY_MAX)
        return False

    async def _watch(self, unit: str, attempt: int = 0) -> None:
        """Follow the unit over D-Bus; on failure retry with backoff, never give up."""
        if unit not in self.state.units:
            return
        try:
            snapshot = await self.ports.manager.watch(unit)
        except BusError as exc:
            delay = min(WATCH_RETRY_MIN * 2**attempt, WATCH_RETRY_MAX)
            log.error("cannot watch unit; retrying", unit=unit, error=str(exc), retry_in_s=delay)
            asyncio.get_running_loop().call_later(
                delay, lambda: self.performer.spawn(self._watch(unit, attempt + 1))
            )
            return
        if snapshot.load_state == "not-found":
            log.warning("unit not found; watching for it to appear", unit=unit)
        self._on_unit_change(snapshot)

    async def _prune_history(self) -> None:
        """Keep the history bounded (90 days, 200k entries), hourly; the store's writer
        thread commits everything else within a second on its own."""
        while True:
            try:
                await self.ports.store.prune()
            except SupervisorError as exc:
                log.error("cannot prune the history", error=str(exc))
            await asyncio.sleep(PRUNE_EVERY)

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, caller: str = "") -> bool:
        """Load the policies again; on any error keep every old policy and say why."""
        self.ports.notifier.reloading()
        log.info("reloading policies", config=str(self.options.config_dir))
        loaded: LoadedConfig | None = None
        try:
            loaded = load_config(self.options.config_dir)
            problems = [str(issue) for issue in loaded.errors]
        except ConfigError as exc:
            problems = [str(exc)]
        except Exception as exc:  # a reload must end in READY=1, whatever broke
            log.exception("reload failed unexpectedly; keeping the previous policies")
            problems = [f"unexpected error while loading: {type(exc).__name__}: {exc}"]
        if loaded is None or problems:
            self.feed(act.ReloadRefused(tuple(problems), caller))
            return False
        if loaded.main.log_level != self.state.loaded.main.log_level:
            self.ports.log_level(loaded.main.log_level)
        old = self.state.loaded.main
        if (loaded.main.http, loaded.main.node_exporter) != (old.http, old.node_exporter):
            log.warning(
                "the main config's http: or node_exporter: changed; it takes effect at the "
                "next start"
            )
        if loaded.main.cluster != self.state.loaded.main.cluster:
            log.warning("the main config's cluster: changed; it takes effect at the next start")
            loaded = dataclasses.replace(
                loaded,
                main=loaded.main.model_copy(update={"cluster": self.state.loaded.main.cluster}),
            )
        actions = self.feed(act.PoliciesLoaded(loaded))
        if self.cluster is not None:
            self.cluster.set_units(clustered_units(loaded.policies))
        added = [a.unit for a in actions if isinstance(a, act.Watch)]
        await asyncio.gather(*(self._watch(unit) for unit in added))
        self.feed(act.ReloadDone(caller))
        self.dependencies.request()
        return True

    # -- the Control the socket serves ---------------------------------------------------------

    def _ask(self, event: Event) -> str | None:
        """Feed an operator's request; None when accepted, else why not."""
        for action in self.feed(event):
            if isinstance(action, act.Answer):
                return action.refused
        return None

    def reset(self, unit: str, caller: str = "") -> bool:
        return self._ask(act.OperatorReset(unit, caller)) is None

    def pause(
        self, unit: str, caller: str = "", duration: float | None = None, reason: str = ""
    ) -> bool:
        return self._ask(act.OperatorPause(unit, caller, duration, reason)) is None

    def resume(self, unit: str | None, caller: str = "") -> bool:
        """Resume one unit, or with None every unit and a frozen automation."""
        return self._ask(act.OperatorResume(unit, caller)) is None

    def manual_failover(self, unit: str, to: str | None, caller: str = "") -> str | None:
        return self._ask(act.OperatorFailover(unit, to, caller))

    def handover(self, unit: str, to_host: str, caller: str = "") -> str | None:
        """Hand a clustered unit this host holds over to `to_host`."""
        return self._ask(act.OperatorHandover(unit, to_host, caller))

    def manual_failback(self, unit: str, caller: str = "") -> str | None:
        return self._ask(act.OperatorFailback(unit, caller))

    async def test_alert(self, channel: str | None) -> list[Any]:
        return await self.ports.alerts.test(channel)

    async def persisted(self) -> str | None:
        try:
            await self.ports.store.durable(PERSIST_WAIT)
        except StoreUnavailable as exc:
            return str(exc)
        return None

    async def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]:
        entries = await self.ports.store.history(unit=unit, since=since, limit=limit)
        return [
            {
                "time": entry.time,
                "unit": entry.unit,
                "kind": entry.kind,
                "message": mask(entry.message),
                "data": mask_data(entry.data),
            }
            for entry in entries
        ]

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    def metrics_snapshot(self) -> dict[str, object]:
        return {**self.metrics.snapshot(), "repairs": self.state.repairs}

    def reset_lateness(self) -> None:
        self.metrics.reset_lateness()

    def status_line(self) -> str:
        line = status_line(self.state, self.clock())
        if not self.ports.store.healthy:
            line += f"; STATE NOT SAVED: {self.ports.store.last_error}"
        return mask(line)

    def unit_status(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = mask_data(unit_rows(self.state, self.clock()))
        if self.cluster is not None:
            views = self.cluster.host_views()
            for row in rows:
                section = row.get("cluster")
                if isinstance(section, dict):
                    unit = str(row.get("unit"))
                    section["hosts"] = {
                        host: (view.get("units") or {}).get(unit) for host, view in views.items()
                    }
                    policy = self.state.loaded.policies.get(unit)
                    listed = policy.cluster.hosts if policy and policy.cluster else ()
                    section["unregistered"] = [h for h in listed if h not in views]
        return rows

    def guard_status(self) -> dict[str, object]:
        return guard_row(self.state, self.clock())

    def alert_counts(self) -> dict[str, dict[str, int]]:
        return self.ports.alerts.delivery_counts()

    def state_saved(self) -> bool:
        return self.ports.store.healthy

    @property
    def hostname(self) -> str:
        return self.ports.hostname

    def _update_status(self) -> None:
        """Send STATUS= soon; many changes at once make one message."""
        if self._status_pending:
            return
        self._status_pending = True
        asyncio.get_running_loop().call_later(STATUS_EVERY, self._send_status)

    def _send_status(self) -> None:
        self._status_pending = False
        self.ports.notifier.status(self.status_line())


__all__ = ["Daemon", "DaemonOptions", "HostState"]
