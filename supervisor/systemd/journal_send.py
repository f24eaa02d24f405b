"""journald's native protocol in the standard library: structured entries, no libsystemd.

An entry is one datagram to ``/run/systemd/journal/socket`` holding its fields, each
either ``KEY=value\\n`` or, for a value holding a newline (a traceback), the binary-safe
form ``KEY\\n`` + the value's length as a 64-bit little-endian integer + the value +
``\\n`` (systemd's "Native Journal Protocol", what ``sd_journal_sendv`` writes). An entry
too big for one datagram goes into a sealed memfd whose descriptor is sent alone in an
empty datagram, as libsystemd does.

This is all the daemon needs from libsystemd for logging, so the package ships no
copy of it (a wheel like ``cysystemd`` would bring its own libsystemd, libgcrypt,
liblzma, libzstd and libcap, outside the distribution's security updates).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Mapping

SOCKET_PATH = "/run/systemd/journal/socket"

#: What journald accepts as a field name from a client: upper case letters, digits and
#: underscores, not starting with an underscore (journald's own trusted fields) or a
#: digit, at most 64 characters. Anything else journald drops silently; we refuse it.
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

#: Seals journald requires on a memfd before it reads an entry from it.
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def valid_field_name(name: str) -> bool:
    """True when journald keeps a field of this name sent by a client."""
    return _FIELD_NAME.fullmatch(name) is not None


def encode(fields: Mapping[str, str | bytes]) -> bytes:
    """One entry in the native protocol (a pure function); str values as UTF-8."""
    parts: list[bytes] = []
    for name, value in fields.items():
        if not valid_field_name(name):
            raise ValueError(f"not a journal field name: {name!r}")
        key = name.encode("ascii")
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if b"\n" in data:
            parts.append(key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSender:
    """Sends entries to journald; ``sender(MESSAGE=..., PRIORITY=..., ...)``.

    One datagram socket, made at the first entry and shared by every thread (a datagram
    is sent whole or not at all). Errors (no journald, a full queue) are raised to the
    caller, which decides where the message goes instead.
    """

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            return self._sock

    def __call__(self, **fields: str | bytes) -> None:
        self.send(fields)

    def send(self, fields: Mapping[str, str | bytes]) -> None:
        data = encode(fields)
        sock = self._socket()
        try:
            sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(sock, data)

    def _send_memfd(self, sock: socket.socket, data: bytes) -> None:
        """The entry in a sealed memfd, its descriptor alone in an empty datagram."""
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            sock.sendmsg(
                [], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0, self.path
            )
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
