"""Helpers shared by the unit tests of the probes: child processes and a closed port."""

from __future__ import annotations

import contextlib
import socket
import subprocess

import psutil


def spawn(argv: list[str], ready: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv``; with ``ready``, wait until it prints "ready" on stdout."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE if ready else None)
    if ready:  # wait until it says it is set up
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
    return child


def stop(child: subprocess.Popen[bytes]) -> None:
    """Kill ``child`` and whatever it started, and reap it."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in psutil.Process(child.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    child.kill()
    child.wait()
    if child.stdout:
        child.stdout.close()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
