"""The commands that change what the daemon does: pause, resume, reset, failover,
failback, reload, metrics --reset. Each confirms in one line a person reads; `--json`
prints the daemon's answer instead."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from supervisor.commands.rendering import human_duration
from supervisor.commands.talk import ask, print_json, talking, unit_url

__all__ = ["act_command", "metrics_command", "pause_confirmation"]


def pause_confirmation(unit: str, seconds: float | None, reason: str, now: float) -> str:
    """`web.service paused for 2h (until 11:40): watched, not repaired; reason: deploy`."""
    text = f"{unit} paused"
    if seconds is not None:
        until = datetime.fromtimestamp(now + seconds)
        shown = until.strftime("%H:%M" if seconds < 86400 else "%Y-%m-%d %H:%M")
        text += f" for {human_duration(seconds)} (until {shown})"
    text += ": watched, not repaired"
    if seconds is None:
        text += f", until `host-supervisor resume {unit}`"
    return text + (f"; reason: {reason}" if reason else "")


def act_command(args: argparse.Namespace) -> int:
    def run() -> int:
        body, line = _act(args)
        if args.json:
            print_json(body)
        if isinstance(body, dict) and body.get("ok") is False:
            # A refused reload: the daemon keeps the old policies, and says why.
            print(f"host-supervisor: {line}", file=sys.stderr)
            return 1
        if not args.json:
            print(line)
        return 0

    return talking(run)


def _act(args: argparse.Namespace) -> tuple[Any, str]:
    """Send the request; the answer and the line that confirms it."""
    socket = args.socket
    match args.command:
        case "pause":
            query: dict[str, str] = {}
            if args.for_ is not None:
                query["for_s"] = repr(args.for_)
            if args.reason:
                query["reason"] = args.reason
            url = unit_url(args.unit, "pause") + (f"?{urlencode(query)}" if query else "")
            body = ask(socket, "POST", url)
            return body, pause_confirmation(args.unit, args.for_, args.reason, time.time())
        case "resume" if args.all:
            body = ask(socket, "POST", "/v1/resume")
            return body, "every unit resumed, and a frozen repair budget thawed"
        case "resume":
            body = ask(socket, "POST", unit_url(args.unit, "resume"))
            return body, f"{args.unit} resumed: it is repaired again when it fails"
        case "reset":
            body = ask(socket, "POST", unit_url(args.unit, "reset"))
            return body, f"{args.unit} reset: its attempts and exhaustion are forgotten"
        case "failover":
            if args.to_host is not None:
                query = {"to_host": args.to_host}
                where = f"handed over to {args.to_host}"
            elif args.to is not None:
                query = {"to": args.to}
                where = f"failing over to {args.to}"
            else:
                query, where = {}, "failing over to its first ready backup"
            url = unit_url(args.unit, "failover") + (f"?{urlencode(query)}" if query else "")
            body = ask(socket, "POST", url)
            return body, f"{args.unit}: {where} (no automatic failback follows)"
        case "failback":
            body = ask(socket, "POST", unit_url(args.unit, "failback"))
            return body, f"{args.unit}: failing back to its primary"
        case "reload":
            body = ask(socket, "POST", "/v1/reload")
            status = str(body.get("status", "")) if isinstance(body, dict) else ""
            if isinstance(body, dict) and body.get("ok") is False:
                refused = status.partition("reload refused: ")[2] or status
                return body, f"reload refused, the previous policies stay in force: {refused}"
            return body, f"policies reloaded: {status}"
    raise AssertionError(f"not an acting command: {args.command}")  # argparse refuses others


def metrics_command(args: argparse.Namespace) -> int:
    def run() -> int:
        if args.reset:
            body = ask(args.socket, "POST", "/v1/metrics/reset")
            if args.json:
                print_json(body)
            else:
                print("lateness histogram started afresh")
        else:
            print_json(ask(args.socket, "GET", "/v1/metrics"))
        return 0

    return talking(run)
