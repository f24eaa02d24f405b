"""The shell's seams: one small Protocol per thing the daemon talks to.

The daemon is built from a `Ports` value, so the same daemon runs against systemd,
SQLite, apprise and real probes in production and against the fakes of
`supervisor.testing.fakes` in the whole-host scenarios.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from supervisor.checks.result import CheckResult, Pending, ProbeContext
from supervisor.config import Check, Policy
from supervisor.core.alerting import Alert
from supervisor.core.values import Rung
from supervisor.repairs import Outcome
from supervisor.store import HistoryEntry
from supervisor.systemd.manager import OnChange, UnitSnapshot


class UnitManager(Protocol):
    """systemd's manager: unit states as signals in, jobs out."""

    def listen(self, on_change: OnChange) -> None: ...
    def listen_reloaded(self, on_reloaded: Callable[[], None]) -> None: ...
    async def dependencies(self, unit: str) -> tuple[str, ...]: ...
    async def connect(self) -> None: ...
    async def run(self) -> None: ...
    async def close(self) -> None: ...
    async def watch(self, unit: str) -> UnitSnapshot: ...
    def unwatch(self, unit: str) -> None: ...
    async def snapshot(self, unit: str) -> UnitSnapshot: ...
    async def memory_current(self, unit: str) -> int | None: ...
    async def start(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def stop(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def restart(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def reload(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def reset_failed(self, unit: str) -> None: ...
    async def daemon_reload(self) -> None: ...


class RepairPort(Protocol):
    """One rung of the ladder performed on a unit, and last-known-good snapshots."""

    async def perform(
        self, policy: Policy, rung: Rung, unit_failed: bool, now: float
    ) -> Outcome: ...
    async def snapshot(
        self,
        policy: Policy,
        now: float,
        *,
        applied_at: float | None = None,
        healthy_since: float | None = None,
    ) -> Path | None: ...
    async def known_good(self, policy: Policy) -> str: ...
    async def proven(self, policy: Policy) -> bool: ...


class ConfigWatchPort(Protocol):
    """Watches restore paths; calls back (unit, paths) when their content changed."""

    def listen(self, on_change: Callable[[str, tuple[str, ...]], None]) -> None: ...
    async def watch(self, unit: str, paths: tuple[str, ...]) -> None: ...
    def unwatch(self, unit: str) -> None: ...
    async def quiet(self, unit: str) -> None:
        """The daemon itself wrote the paths: what is there now is no change."""
        ...

    async def close(self) -> None: ...


class Probes(Protocol):
    """Runs one check once; never raises."""

    async def run(self, check: Check, context: ProbeContext) -> CheckResult: ...
    def start(
        self, check: Check, context: ProbeContext, done: Callable[[CheckResult], None]
    ) -> Pending | None:
        """Start `check` by callbacks alone if it can be (no task, no timer): `done` gets
        its result; the caller calls `expire()` at the timeout. None: `run` it instead."""
        ...

    async def close(self) -> None: ...


class Commands(Protocol):
    """Runs a program of a policy's (`can_recover`) with a timeout; never raises."""

    async def run(self, argv: tuple[str, ...], unit: str, timeout: float) -> CheckResult: ...  # noqa: ASYNC109


class AlertSink(Protocol):
    """Where alerts go: dedup, batching and delivery live behind it."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def submit(self, alert: Alert) -> None: ...
    async def test(self, channel: str | None) -> list[Any]: ...
    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Messages by channel and outcome: sent, failed, spooled, dropped."""
        ...


class StateStore(Protocol):
    """Durable state documents and the history. Writes return at once (a writer
    thread commits them); `durable` waits until what is queued is committed."""

    def save_unit(self, unit: str, state: dict[str, Any]) -> None: ...
    def delete_unit(self, unit: str) -> None: ...
    def save_doc(self, key: str, doc: dict[str, Any]) -> None: ...
    def append(
        self,
        unit: str | None,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        time: float | None = None,
    ) -> None: ...
    async def durable(self, timeout: float) -> None: ...  # noqa: ASYNC109
    @property
    def healthy(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...
    async def history(
        self,
        *,
        unit: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]: ...
    async def prune(self) -> int: ...
    async def aclose(self, timeout: float = 5.0) -> None: ...  # noqa: ASYNC109


class ServiceNotifier(Protocol):
    """sd_notify: READY=1, STATUS=, RELOADING=1, STOPPING=1, WATCHDOG=1."""

    def ready(self, status: str) -> None: ...
    def status(self, text: str) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self) -> None: ...
    async def watchdog_loop(self) -> None: ...


class HostFacts(Protocol):
    """What preconditions read of the host."""

    def disk_used_percent(self, path: str) -> float: ...
    def memory_used_percent(self) -> float: ...


class ClusterPort(Protocol):
    """etcd and the fence files, for clustered units (`supervisor.cluster.driver`)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def perform(self, unit: str, action: Any) -> None: ...
    def role_changed(self, change: Any) -> None: ...
    def set_units(self, units: dict[str, float]) -> None: ...
    def host_views(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


class ControlServer(Protocol):
    """The control socket's server, started once the daemon is connected."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass
class Ports:
    """Everything the daemon does I/O through, and its clock."""

    manager: UnitManager
    repairs: RepairPort
    probes: Probes
    commands: Commands
    alerts: AlertSink
    store: StateStore
    notifier: ServiceNotifier
    host: HostFacts
    control: Callable[[Any], ControlServer]
    """Builds the control server for a daemon (the daemon is its `Control`)."""
    clock: Callable[[], float]
    """Wall-clock seconds: deadlines are stored and must survive a restart."""
    hostname: str
    log_level: Callable[[str], None]
    """Sets the least level logged (the main config's `log_level`)."""
    cluster: Callable[..., ClusterPort] | None = None
    """Builds the cluster driver (config, this host's name, unit TTLs, jobs, feed)."""
    http: Callable[[Any], ControlServer] | None = None
    """Builds the HTTP listener and textfile writer for a daemon, when configured."""
    changes: ConfigWatchPort | None = None
    """Watches restore paths for change-aware rollback (None: changes are not seen)."""
