"""Asking the daemon over its control socket, for the commands that talk to it.

Every answer is masked before it reaches the terminal (history and status quote check
messages and errors, which may hold URLs). Every failure is a `ControlError` with one
line and the exit code (see `supervisor.commands.client`); `talking` turns it into
that line on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from supervisor.commands import client
from supervisor.commands.client import ControlError, error_of

__all__ = ["ask", "print_json", "talking", "unit_url"]


def ask(socket: Path, method: str, url: str) -> Any:
    """The daemon's answer to one request, masked; a `ControlError` if it is not a 200."""
    from supervisor.secrets import mask_data

    code, body = client.call(socket, method, url)
    body = mask_data(body)
    if code != 200:
        raise error_of(code, body)
    return body


def unit_url(unit: str, verb: str) -> str:
    return f"/v1/units/{quote(unit, safe='')}/{verb}"


def talking(run: Callable[[], int], *, exit_codes: dict[int, int] | None = None) -> int:
    """`run()`, with a `ControlError` made its one line on stderr and its exit code
    (mapped through `exit_codes` for commands whose codes mean something else)."""
    try:
        return run()
    except ControlError as exc:
        print(f"host-supervisor: {exc}", file=sys.stderr)
        code = exc.exit_code
        return (exit_codes or {}).get(code, code)


def print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))
