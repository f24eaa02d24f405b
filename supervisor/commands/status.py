"""`host-supervisor status [UNIT]`: every supervised unit, and an exit code scripts use
as they use `systemctl is-active`'s: 0 all healthy, 1 degraded, 2 unhealthy, 3 unknown
(or no daemon answered), 4 the status could not be had (no such unit, not allowed)."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from supervisor.commands.client import EXIT_FORBIDDEN, EXIT_REFUSED, EXIT_USAGE
from supervisor.commands.rendering import render_status, status_exit_code
from supervisor.commands.talk import ask, print_json, talking
from supervisor.commands.terminal import Terminal

__all__ = ["EXIT_NO_STATUS", "status_command"]

EXIT_NO_STATUS = EXIT_FORBIDDEN
"""The daemon answered but gave no status: LSB's 'status unknown' (4)."""


def status_command(args: argparse.Namespace) -> int:
    def run() -> int:
        url = "/v1/status" + (f"?unit={quote(args.unit)}" if args.unit else "")
        body = ask(args.socket, "GET", url)
        if args.json:
            print_json(body)
        else:
            term = Terminal.of(sys.stdout, no_colour=args.no_color, full=args.full)
            print("\n".join(render_status(body, term)))
        return status_exit_code(body.get("units") or [])

    # A refusal must not read as "degraded" (1) or "unhealthy" (2).
    return talking(run, exit_codes={EXIT_REFUSED: EXIT_NO_STATUS, EXIT_USAGE: EXIT_NO_STATUS})
