"""The shell: the daemon's loop and lifecycle, performing actions, probing, timers,
the control socket. Nothing outside this package imports it but the CLI."""

from __future__ import annotations

from supervisor.daemon.loop import Daemon, DaemonOptions
from supervisor.daemon.startup import run_daemon

__all__ = ["Daemon", "DaemonOptions", "run_daemon"]
