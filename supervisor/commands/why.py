"""`host-supervisor why UNIT`: why the daemon did what it did to a unit, in words.

Reads the unit's history through the control socket (`GET /v1/history`, the endpoint
`history` uses) and hands it to the pure chain builder, `supervisor.core.why`. Times
are shown in the local time zone, with the date when it is not today.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import urlencode

from supervisor.core.why import explain, render

#: History rows read to find the last chains: enough for hours of a busy unit.
SCAN = 5000


def clock_for(now: datetime) -> Callable[[float], str]:
    """`12:03:04` for a time today, `2026-01-05 12:03:04` for another day."""

    def clock(t: float) -> str:
        when = datetime.fromtimestamp(t)
        if when.date() == now.date():
            return when.strftime("%H:%M:%S")
        return when.strftime("%Y-%m-%d %H:%M:%S")

    return clock


def why_command(socket: Path, unit: str, last: int, as_json: bool, out: TextIO) -> int:
    """Exit 0 with the chains (none is an answer too), else the socket client's codes."""
    from supervisor.commands.client import call, error_of
    from supervisor.secrets import mask_data

    if last < 1:
        raise error_of(400, {"error": f"--last must be 1 or more, got {last}"})

    query = urlencode({"unit": unit, "limit": str(SCAN)})
    code, body = call(socket, "GET", f"/v1/history?{query}")
    if code != 200:
        raise error_of(code, body)
    entries = mask_data(body.get("entries", [])) if isinstance(body, dict) else []
    chains = explain(unit, entries, last=last)
    if as_json:
        doc = {"unit": unit, "chains": [chain.to_dict() for chain in chains]}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render(unit, chains, clock_for(datetime.now())))
    return 0


def run(args: argparse.Namespace) -> int:
    """`host-supervisor why UNIT`."""
    from supervisor.commands.talk import talking

    return talking(lambda: why_command(args.socket, args.unit, args.last, args.json, sys.stdout))
