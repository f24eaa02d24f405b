"""The `host-supervisor` command. `run`, `validate` and `schema` work alone; the
other sub-commands talk to the running daemon over its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from supervisor import __version__

DEFAULT_CONFIG_DIR = Path("/etc/host-supervisor")
DEFAULT_STATE_DIR = Path("/var/lib/host-supervisor")
DEFAULT_SOCKET = Path("/run/host-supervisor/control.sock")


EXIT_SOFTWARE = 70
"""A bug: an exception nobody expected (HOST_SUPERVISOR_DEBUG=1 shows its traceback)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT)."""


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, not a usage block; for `check`,
    a monitoring plugin, one UNKNOWN line on stdout and exit 3, as its callers expect."""

    plugin_mode = False
    """Set when the command line is `check ...`: errors of the top-level parser too."""

    def error(self, message: str) -> typing.NoReturn:
        if self.plugin_mode or self.prog.endswith(" check"):
            from supervisor.commands.check import usage_error

            sys.stdout.write(usage_error(f"usage: {message} (see {self.prog} --help)"))
            sys.stdout.flush()
            self.exit(3)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _duration(text: str) -> float:
    from supervisor.config.values import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> _Parser:
    parser = _Parser(
        prog="host-supervisor",
        description="Keeps the services of this host healthy through systemd.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG_DIR,
            metavar="DIR",
            help="directory with host-supervisor.yaml and policies.d/ "
            f"(default {DEFAULT_CONFIG_DIR})",
        )

    def socket_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--socket",
            type=Path,
            default=DEFAULT_SOCKET,
            metavar="PATH",
            help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
        )

    run = commands.add_parser("run", help="run the daemon in the foreground")
    config_flag(run)
    socket_flag(run)
    run.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"durable state and history (default {DEFAULT_STATE_DIR})",
    )
    run.add_argument("--dry-run", action="store_true", help="log every action, take none")

    validate = commands.add_parser("validate", help="check the main config and every policy")
    config_flag(validate)

    discover = commands.add_parser(
        "discover",
        help="write an observe-only policy for every enabled service unit, from systemd's "
        "metadata; never over an existing policy file",
    )
    config_flag(discover)
    discover.add_argument("--dry-run", action="store_true", help="print the policies, write none")
    discover.add_argument(
        "--unit", action="append", default=[], metavar="NAME", help="only this unit; repeatable"
    )

    schema = commands.add_parser("schema", help="print the JSON Schema of a policy")
    schema.add_argument("--main", action="store_true", help="the main config's schema instead")

    check = commands.add_parser(
        "check",
        help="run every check of one policy once, now, as a monitoring plugin (Nagios, "
        "Icinga): a status line with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
    )
    config_flag(check)
    check.add_argument("target", metavar="UNIT_OR_POLICY_FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "-w",
        "--warning",
        action="append",
        default=[],
        metavar="LABEL=RANGE",
        help="WARNING when a measured figure is outside RANGE (10, 10:, ~:10, 10:20, "
        "@10:20), e.g. disk_used=80; repeatable; labels are CHECK_FIGURE as in the perfdata",
    )
    check.add_argument(
        "-c",
        "--critical",
        action="append",
        default=[],
        metavar="LABEL=RANGE",
        help="CRITICAL when a measured figure is outside RANGE, e.g. http_ms=500 (default: "
        "the policy's own limits); repeatable",
    )

    test_alert = commands.add_parser(
        "test-alert",
        help="send a test message to one or every alert channel and say whether it arrived",
    )
    config_flag(test_alert)
    test_alert.add_argument("channel", nargs="?", help="only this channel")

    status = commands.add_parser("status", help="each supervised unit's state")
    socket_flag(status)
    status.add_argument("unit", nargs="?", help="only this unit")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    history = commands.add_parser("history", help="what happened: checks, actions, alerts")
    socket_flag(history)
    history.add_argument("unit", nargs="?", help="only this unit")
    history.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="only the last DURATION, e.g. 1h, 30m (default: all)",
    )
    history.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    history.add_argument("--json", action="store_true", help="machine-readable output")

    pause = commands.add_parser("pause", help="maintenance: watch a unit but do not repair it")
    socket_flag(pause)
    pause.add_argument("unit")

    resume = commands.add_parser(
        "resume", help="repair a paused unit again; --all also thaws a frozen repair budget"
    )
    socket_flag(resume)
    target = resume.add_mutually_exclusive_group(required=True)
    target.add_argument("unit", nargs="?")
    target.add_argument("--all", action="store_true", help="every unit, and the repair budget")

    failover_cmd = commands.add_parser("failover", help="move a unit's service to its backup now")
    socket_flag(failover_cmd)
    failover_cmd.add_argument("unit")
    failover_cmd.add_argument("--to", metavar="BACKUP", help="this backup (default: the first)")
    failover_cmd.add_argument(
        "--to-host", metavar="HOST", help="a clustered unit: hand it over to this host"
    )

    failback_cmd = commands.add_parser("failback", help="move a failed-over service back now")
    socket_flag(failback_cmd)
    failback_cmd.add_argument("unit")

    reset = commands.add_parser("reset", help="forget a unit's attempts and exhaustion")
    socket_flag(reset)
    reset.add_argument("unit")

    metrics = commands.add_parser("metrics", help="check runs, results and lateness")
    socket_flag(metrics)
    metrics.add_argument("--reset", action="store_true", help="start the lateness histogram afresh")

    reload = commands.add_parser("reload", help="make the daemon reload its policies")
    socket_flag(reload)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every error ends in one line on stderr and an exit code, never a traceback."""
    try:
        parser = build_parser()
        words = sys.argv[1:] if argv is None else argv
        parser.plugin_mode = words[:1] == ["check"]
        args = parser.parse_args(argv)
        if args.command == "run":
            return _run(args)  # the daemon's own errors go to its log, tracebacks included
        return _command(args)
    except KeyboardInterrupt:
        print("host-supervisor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `host-supervisor history | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("HOST_SUPERVISOR_DEBUG") == "1":
            raise
        detail = " ".join(str(exc).split())
        if (sys.argv[1:] if argv is None else argv)[:1] == ["check"]:
            from supervisor.commands.check import usage_error

            print(usage_error(f"internal error: {type(exc).__name__}: {detail}"), end="")
            return 3
        print(
            f"host-supervisor: internal error: {type(exc).__name__}: {detail} "
            "(HOST_SUPERVISOR_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_SOFTWARE


def _command(args: argparse.Namespace) -> int:
    match args.command:
        case "validate":
            from supervisor.commands.validate import validate_command
            from supervisor.logs import configure_logging

            configure_logging("warning", journal=False)  # stdout is the report

            return validate_command(args.config, sys.stdout)
        case "check":
            from supervisor.commands.check import check_command
            from supervisor.logs import configure_logging

            configure_logging("warning", journal=False)  # stdout is the plugin's output

            return check_command(
                args.target, args.config, args.json, sys.stdout, args.warning, args.critical
            )
        case "discover":
            from supervisor.commands.discover import discover_command

            return discover_command(
                args.config, dry_run=args.dry_run, units=args.unit, out=sys.stdout, err=sys.stderr
            )
        case "test-alert":
            return _test_alert(args)
        case "schema":
            from supervisor.config import main_json_schema, policy_json_schema

            schema = main_json_schema() if args.main else policy_json_schema()
            print(json.dumps(schema, indent=2))
            return 0
        case _:
            return _talk(args)


def _test_alert(args: argparse.Namespace) -> int:
    """Works without the daemon: it reads the main config and sends directly."""
    import asyncio
    import tempfile

    from supervisor.alerts import Alerter
    from supervisor.config import load_config
    from supervisor.errors import ConfigError
    from supervisor.logs import configure_logging

    configure_logging("warning", journal=False)
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"host-supervisor: {exc}", file=sys.stderr)
        return 1
    channels = loaded.main.alerts.channels
    if not channels:
        print(f"no alert channels in {args.config / 'host-supervisor.yaml'}", file=sys.stderr)
        return 1
    if args.channel is not None and args.channel not in channels:
        print(f"no channel {args.channel!r}; channels: {', '.join(channels)}", file=sys.stderr)
        return 1

    async def send() -> list[tuple[str, bool, str]]:
        with tempfile.TemporaryDirectory() as spool:  # a test is never spooled
            alerter = Alerter(loaded.main.alerts, Path(spool))
            await alerter.start()
            try:
                return [(d.channel, d.ok, d.detail) for d in await alerter.test(args.channel)]
            finally:
                await alerter.close()

    results = asyncio.run(send())
    for channel, ok, detail in results:
        print(
            f"{channel}: {'delivered' if ok else 'NOT delivered'}" + ("" if ok else f": {detail}")
        )
    return 0 if all(ok for _, ok, _ in results) else 1


def _run(args: argparse.Namespace) -> int:
    from supervisor.daemon import DaemonOptions, run_daemon
    from supervisor.logs import configure_logging

    configure_logging()
    options = DaemonOptions(
        config_dir=args.config,
        state_dir=args.state_dir,
        socket_path=args.socket,
        dry_run=args.dry_run,
    )
    return run_daemon(options)


def _talk(args: argparse.Namespace) -> int:
    """Exit 0 done, 1 the daemon said no, 2 bad arguments, 3 no daemon answered,
    4 not allowed; the reason is one line on stderr."""
    from supervisor.commands.client import ControlError

    try:
        return _ask(args)
    except ControlError as exc:
        print(f"host-supervisor: {exc}", file=sys.stderr)
        return exc.exit_code


def _ask(args: argparse.Namespace) -> int:
    from supervisor.commands.client import error_of

    match args.command:
        case "status":
            url = "/v1/status" + (f"?unit={quote(args.unit)}" if args.unit else "")
            code, body = _call(args.socket, "GET", url)
            if code == 200 and not args.json:
                _print_status(body)
                return 0
        case "reset" | "pause":
            url = f"/v1/units/{quote(args.unit, safe='')}/{args.command}"
            code, body = _call(args.socket, "POST", url)
        case "failover":
            to = f"?to={quote(args.to)}" if args.to is not None else ""
            if args.to_host is not None:
                to = f"?to_host={quote(args.to_host)}"
            url = f"/v1/units/{quote(args.unit, safe='')}/failover{to}"
            code, body = _call(args.socket, "POST", url)
        case "failback":
            url = f"/v1/units/{quote(args.unit, safe='')}/failback"
            code, body = _call(args.socket, "POST", url)
        case "resume" if args.all:
            code, body = _call(args.socket, "POST", "/v1/resume")
        case "resume":
            code, body = _call(args.socket, "POST", f"/v1/units/{quote(args.unit, safe='')}/resume")
        case "history":
            query = {"limit": str(args.limit)}
            if args.unit:
                query["unit"] = args.unit
            if args.since is not None:
                query["since_s"] = repr(args.since)
            code, body = _call(args.socket, "GET", "/v1/history?" + urlencode(query))
            if code == 200 and not args.json:
                _print_history(body["entries"])
                return 0
        case "reload":
            code, body = _call(args.socket, "POST", "/v1/reload")
        case "metrics" if args.reset:
            code, body = _call(args.socket, "POST", "/v1/metrics/reset")
        case "metrics":
            code, body = _call(args.socket, "GET", "/v1/metrics")
        case _:  # pragma: no cover - argparse refuses other commands
            return 2
    if code != 200:
        raise error_of(code, body)
    print(json.dumps(body, indent=2))
    return 0 if not isinstance(body, dict) or body.get("ok", True) else 1


def _call(socket: Path, method: str, url: str) -> tuple[int, Any]:
    """Ask the daemon; its answer with every string masked, a last net before the
    terminal (history and status quote check messages and errors, which may hold URLs)."""
    from supervisor.commands.client import call
    from supervisor.secrets import mask_data

    code, body = call(socket, method, url)
    return code, mask_data(body)


def _print_status(body: dict[str, object]) -> None:
    print(body["status"])
    units = body["units"]
    assert isinstance(units, list)
    if not units:
        return
    header = ("UNIT", "HEALTH", "STATE", "PHASE", "ATTEMPTS", "NEXT", "LAST EVENT")
    rows = [header]
    for u in units:
        nxt = "" if u["next_action_in_s"] is None else f"{u['next_action_in_s']}s"
        rows.append(
            (
                u["unit"],
                u["condition"],
                u["state"],
                u["phase"],
                f"{u['attempts']}/{u['max_attempts']}",
                nxt,
                u["last_event"],
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    for u in units:
        if isinstance(u.get("cluster"), dict):
            print(_cluster_line(str(u["unit"]), u["cluster"]))


def _cluster_line(unit: str, section: dict[str, Any]) -> str:
    """`db.service: holder here, token 42, lease 3.1s left; db2 standby, db3 never seen`."""
    role, holder = section.get("role"), section.get("holder")
    text = f"{unit}: {role} here"
    if role != "holder":
        text += f", held by {holder}" if holder else ", held by nobody"
    if section.get("token"):
        text += f", token {section['token']}"
    if section.get("lease_left_s") is not None:
        text += f", lease {section['lease_left_s']}s left"
    views = section.get("hosts") or {}
    others = [f"{h} {v.get('role')}" for h, v in sorted(views.items()) if isinstance(v, dict)]
    if others:
        text += "; views: " + ", ".join(others)
    if section.get("unregistered"):
        text += "; warning: never registered: " + ", ".join(section["unregistered"])
    if section.get("etcd_error"):
        text += f"; etcd: {section['etcd_error']}"
    return text


def _print_history(entries: list[dict[str, object]]) -> None:
    from datetime import datetime

    for entry in entries:
        when = datetime.fromtimestamp(float(str(entry["time"]))).strftime("%Y-%m-%d %H:%M:%S")
        unit = entry["unit"] or "-"
        print(f"{when}  {unit:<24} {entry['kind']:<9} {entry['message']}")
