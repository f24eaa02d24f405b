"""The faults a recovery drill injects from outside the daemon: systemd jobs and signals
over D-Bus (as `systemctl` or another tool would send them), and a configuration file
broken on purpose, kept aside first and always put back.

Files are reached as the restore code reaches them: walked from `/` by descriptors,
never following a symlink in any component; the broken file keeps its inode, owner
and mode, only its bytes change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError
from supervisor.fsutil import atomic_write, write_all
from supervisor.restore.walk import open_dir, opened

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
BUS_TIMEOUT = 10.0
SIGKILL = 9
MAX_FILES = 10_000  # a restore path's tree read at most this far, to pick a file

BROKEN = b"{{{ broken on purpose by host-supervisor drill }}}\n"
"""What a broken file holds: no configuration language accepts it."""


class DrillFault(SupervisorError):
    """A fault could not be injected (or a file put back): the message says which and why."""


class SystemdBus:
    """A connection to the system bus that sends systemd's manager a few calls."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self._runner = runner
        self._bus: Any = None

    def connect(self) -> None:
        from dbus_fast.aio import MessageBus

        from supervisor.systemd.bus import system_bus_address

        address = system_bus_address()

        async def connect() -> Any:  # the bus needs a running loop from its construction on
            return await asyncio.wait_for(MessageBus(bus_address=address).connect(), BUS_TIMEOUT)

        try:
            self._bus = self._runner.run(connect())
        except (OSError, TimeoutError, ValueError) as exc:
            raise DrillFault(f"cannot connect to the system bus at {address}: {exc}") from exc

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:

            async def disconnect() -> None:
                bus.disconnect()

            self._runner.run(disconnect())

    def _call(self, member: str, signature: str, body: list[Any]) -> None:
        from dbus_fast import Message, MessageType

        message = Message(
            destination=SYSTEMD,
            path=MANAGER_PATH,
            interface=MANAGER,
            member=member,
            signature=signature,
            body=body,
        )
        try:
            reply = self._runner.run(asyncio.wait_for(self._bus.call(message), BUS_TIMEOUT))
        except (OSError, TimeoutError, EOFError) as exc:
            raise DrillFault(f"systemd {member} {body[0]}: {exc or type(exc).__name__}") from exc
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply is not None and reply.body else "no answer"
            name = reply.error_name if reply is not None else ""
            raise DrillFault(f"systemd {member} {body[0]}: {name}: {detail}")

    def kill_main(self, unit: str) -> None:
        """SIGKILL the unit's main process (`systemctl kill -s KILL --kill-whom=main`)."""
        self._call("KillUnit", "ssi", [unit, "main", SIGKILL])

    def stop(self, unit: str) -> None:
        self._call("StopUnit", "ss", [unit, "replace"])

    def start(self, unit: str) -> None:
        self._call("StartUnit", "ss", [unit, "replace"])

    def restart(self, unit: str) -> None:
        self._call("RestartUnit", "ss", [unit, "replace"])

    def reset_failed(self, unit: str) -> None:
        """Best effort before a start (a start limit hit by the drill must not block it):
        a unit that is not failed, or not even loaded, has nothing to reset."""
        with contextlib.suppress(DrillFault):
            self._call("ResetFailedUnit", "s", [unit])


# -- a configuration file broken on purpose ------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """A file the drill broke: where, its original bytes, and the copy kept on disk."""

    path: str
    original: bytes
    backup: Path


def pick_file(paths: tuple[str, ...]) -> str | None:
    """The first regular file under the restore paths (a path itself, or in sorted order
    below a directory), links not followed; None when there is none."""
    for path in paths:
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            return path
        if not stat.S_ISDIR(info.st_mode):
            continue
        seen = 0
        for top, dirs, files in os.walk(path, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                candidate = os.path.join(top, name)
                if stat.S_ISREG(os.lstat(candidate).st_mode):
                    return candidate
            seen += len(files) + len(dirs)
            if seen > MAX_FILES:
                break
    return None


def _open(path: str, flags: int) -> int:
    parent, name = os.path.split(path)
    with opened(open_dir(parent)) as dir_fd:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _read(path: str) -> bytes:
    with opened(_open(path, os.O_RDONLY)) as fd:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def _overwrite(path: str, data: bytes) -> None:
    with opened(_open(path, os.O_WRONLY | os.O_TRUNC)) as fd:
        write_all(fd, data)
        os.fsync(fd)


def break_file(path: str, backup_dir: Path, tag: str) -> Broken:
    """Keep `path`'s bytes in memory and in `backup_dir`, then overwrite it with text no
    configuration parser accepts."""
    try:
        original = _read(path)
        backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        backup = backup_dir / f"{tag}{path.replace('/', '_')}"
        atomic_write(backup, original, 0o600)
        _overwrite(path, BROKEN)
    except OSError as exc:
        raise DrillFault(f"cannot break {path}: {exc.strerror or exc}") from exc
    return Broken(path, original, backup)


def put_back(broken: Broken) -> bool:
    """Write the original bytes back unless the file holds them already (the daemon's
    restore did it); True when the drill had to. The backup is removed once it matches."""
    try:
        if _read(broken.path) != broken.original:
            _overwrite(broken.path, broken.original)
            wrote = True
        else:
            wrote = False
    except FileNotFoundError:
        atomic_write(broken.path, broken.original, 0o644)
        wrote = True
    except OSError as exc:
        raise DrillFault(
            f"cannot put {broken.path} back: {exc.strerror or exc}; its original is {broken.backup}"
        ) from exc
    broken.backup.unlink(missing_ok=True)
    return wrote
