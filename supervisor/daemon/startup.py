"""From `host-supervisor run` to a running daemon: load, lock, build the adapters, run."""

from __future__ import annotations

import asyncio
import fcntl
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import structlog

from supervisor.alerts import Alerter
from supervisor.checks import Prober
from supervisor.checks.command import CommandRunner
from supervisor.config import LoadedConfig, load_config
from supervisor.core.host import checked_guard_doc, checked_unit_doc
from supervisor.daemon.control import ControlServer
from supervisor.daemon.listener import HttpServer
from supervisor.daemon.loop import Daemon, DaemonOptions, Stored
from supervisor.daemon.ports import ClusterPort, Ports
from supervisor.daemon.preconditions import LocalHost
from supervisor.errors import ConfigError, SupervisorError
from supervisor.logs import configure_logging
from supervisor.repairs import Repairs
from supervisor.restore.watcher import ChangeWatcher
from supervisor.store import Store
from supervisor.store_async import AsyncStore
from supervisor.systemd.manager import SystemdManager
from supervisor.systemd.notify import Notifier

log = structlog.get_logger("host-supervisor")

EX_CONFIG = 78
EX_CANTCREAT = 73
EX_TEMPFAIL = 75


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


def real_ports(options: DaemonOptions, loaded: LoadedConfig, store: AsyncStore) -> Ports:
    """The adapters that talk to this host: systemd, probes, apprise, SQLite."""
    manager = SystemdManager()
    hostname = socket.gethostname()
    control = loaded.main.control
    http, textfile = loaded.main.http, loaded.main.node_exporter
    return Ports(
        manager=manager,
        repairs=Repairs(manager, options.state_dir),
        probes=Prober(loaded.main.checks.max_concurrent_commands),
        commands=CommandRunner(),
        alerts=Alerter(loaded.main.alerts, options.state_dir / "alerts", hostname),
        store=store,
        notifier=Notifier(),
        host=LocalHost(),
        control=lambda daemon: ControlServer(daemon, options.socket_path, control),
        clock=time.time,
        hostname=hostname,
        log_level=configure_logging,
        cluster=_cluster_driver() if loaded.main.cluster is not None else None,
        http=(
            (lambda daemon: HttpServer(daemon, http, textfile))
            if http.listen is not None or textfile is not None
            else None
        ),
        changes=ChangeWatcher(),
    )


def _cluster_driver() -> Callable[..., ClusterPort]:
    """The etcd driver, imported only for a host with a `cluster:` section (a change of
    that section takes effect at the next start anyway)."""
    from supervisor.cluster.driver import ClusterDriver  # only when a cluster is configured

    return ClusterDriver


def run_daemon(options: DaemonOptions) -> int:
    """Load, lock and run; returns the process exit code."""
    try:
        loaded = load_config(options.config_dir)
    except ConfigError as exc:
        log.error("cannot load configuration", error=str(exc))
        return EX_CONFIG
    configure_logging(loaded.main.log_level)
    log_config_issues(loaded)
    if loaded.errors and not loaded.policies and not loaded.only_refusals:
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
        # Rows that do not parse are discarded here (logged, recorded): those units
        # start fresh, and the daemon always starts.
        units, _ = store.load_units_checked(checked_unit_doc)
        guard, _ = store.load_doc_checked("guard", checked_guard_doc)
        stored = Stored(units, guard or {})
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            ports = real_ports(options, loaded, AsyncStore(store))
            return runner.run(Daemon(options, loaded, ports, stored).run())
    finally:
        lock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it halves the event loop's cost per check run."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay correct without it
        return None
    return uvloop.new_event_loop
