"""A small client for the control socket (stdlib only: the CLI must start fast).

Every way a request can fail ends in a `ControlError` with a one-line message and
the exit code the CLI returns for it (see `supervisor.cli`).
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError

EXIT_REFUSED = 1
"""The daemon answered, and said no (no such unit, a refused failover, an internal error)."""
EXIT_USAGE = 2
"""Bad arguments: from the command line, or the daemon's 400."""
EXIT_UNREACHABLE = 3
"""No answer: no daemon runs, it timed out, or it closed the connection."""
EXIT_FORBIDDEN = 4
"""Not allowed: the socket file refused us, or the daemon's 403."""


class ControlError(SupervisorError):
    """A request that did not get a usable answer; `exit_code` is the CLI's."""

    exit_code = EXIT_REFUSED


class DaemonUnreachable(ControlError):
    """The control socket is missing, refused us, or gave no answer in time."""

    exit_code = EXIT_UNREACHABLE


class NotPermitted(ControlError):
    """The socket file's mode keeps us out."""

    exit_code = EXIT_FORBIDDEN


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def call(
    socket_path: Path, method: str, url: str, timeout: float = 30.0, body: Any = None
) -> tuple[int, Any]:
    """Send one request (with `body` as JSON, if any); returns (HTTP status, decoded
    JSON body)."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        if body is None:
            connection.request(method, url)
        else:
            data = json.dumps(body).encode()
            connection.request(method, url, data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonUnreachable(
            f"no daemon answers on {socket_path}: is host-supervisor running?"
        ) from exc
    except PermissionError as exc:
        raise NotPermitted(
            f"{socket_path}: permission denied: only root and the group set by control: "
            "in host-supervisor.yaml may connect"
        ) from exc
    except TimeoutError as exc:
        raise DaemonUnreachable(f"the daemon gave no answer within {timeout:g}s") from exc
    except (ConnectionError, http.client.HTTPException) as exc:
        raise DaemonUnreachable(
            f"the daemon on {socket_path} closed the connection without an answer"
        ) from exc
    except OSError as exc:
        raise DaemonUnreachable(f"{socket_path}: {exc.strerror or exc}") from exc
    finally:
        connection.close()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ControlError(
            f"the daemon answered HTTP {response.status} with something that is not JSON"
        ) from exc
    return response.status, body


def error_of(status: int, body: Any) -> ControlError:
    """The error for an answer other than 200, with the daemon's message."""
    message = body.get("error") if isinstance(body, dict) else None
    text = " ".join(str(message).split()) if message else f"the daemon answered HTTP {status}"
    error = ControlError(text)
    if status == 400:
        error.exit_code = EXIT_USAGE
    elif status == 403:
        error.exit_code = EXIT_FORBIDDEN
    return error
