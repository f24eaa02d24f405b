"""A small client for the control socket (stdlib only: the CLI must start fast)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError


class DaemonUnreachable(SupervisorError):
    """The control socket is missing or refused us: no daemon runs, or we are not root."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def call(socket_path: Path, method: str, url: str, timeout: float = 30.0) -> tuple[int, Any]:
    """Send one request; returns (HTTP status, decoded JSON body)."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request(method, url)
        response = connection.getresponse()
        body = json.loads(response.read() or b"null")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonUnreachable(
            f"no daemon answers on {socket_path}: is host-supervisor running?"
        ) from exc
    except PermissionError as exc:
        raise DaemonUnreachable(f"{socket_path}: permission denied (run as root)") from exc
    finally:
        connection.close()
    return response.status, body
