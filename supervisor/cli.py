"""The `host-supervisor` command line: the parser, and the dispatch to `supervisor.commands`.

Each sub-command is one `add_parser` block below that names its handler as
"module:function" (`set_defaults(handler=...)`); the module is imported only when the
command runs, so the CLI starts fast. `run`, `validate`, `schema`, `check`,
`test-alert` and `config show` work alone; the others talk to the running daemon over
its control socket.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path

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


def _positive_duration(text: str) -> float:
    from supervisor.config.values import parse_positive_duration

    try:
        return parse_positive_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        metavar="DIR",
        help=f"directory with host-supervisor.yaml and policies.d/ (default {DEFAULT_CONFIG_DIR})",
    )


def _socket_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
    )


def _json_flag(p: argparse.ArgumentParser, help: str = "machine-readable output") -> None:
    p.add_argument("--json", action="store_true", help=help)


def _no_color_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-color",
        action="store_true",
        help="no colour even on a terminal (NO_COLOR=1 in the environment does the same)",
    )


def _acting(
    commands: argparse._SubParsersAction[_Parser], name: str, help: str
) -> argparse.ArgumentParser:
    """A command that changes what the daemon does: confirms in one line, or --json."""
    p = commands.add_parser(name, help=help)
    _socket_flag(p)
    _json_flag(p, "print the daemon's answer as JSON instead of a sentence")
    p.set_defaults(handler="supervisor.commands.acting:act_command")
    return p


def build_parser() -> _Parser:
    parser = _Parser(
        prog="host-supervisor",
        description="Keeps the services of this host healthy through systemd.",
        epilog="Durations take 500ms, 30s, 5min, 1h 30min, 2h, 1d (systemd's time spans) or 1m30s.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground")
    _config_flag(run)
    _socket_flag(run)
    run.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"durable state and history (default {DEFAULT_STATE_DIR})",
    )
    run.add_argument(
        "--shadow",
        dest="dry_run",
        action="store_true",
        help="shadow mode: decide everything, act on nothing; what it would have done, "
        "and why, goes to the history",
    )
    run.add_argument("--dry-run", action="store_true", help="the old name of --shadow")
    run.set_defaults(handler="supervisor.commands.local:run")

    simulate = commands.add_parser(
        "simulate",
        help="replay the recorded unit states and check results through the policies in "
        "--config, and print what they would have done beside what was done",
    )
    _config_flag(simulate)
    simulate.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the history is read (default {DEFAULT_STATE_DIR})",
    )
    simulate.add_argument(
        "--since",
        type=_duration,
        default=86400.0,
        metavar="DURATION",
        help="replay the last DURATION, e.g. 24h, 30min (default 24h)",
    )
    simulate.set_defaults(handler="supervisor.commands.simulate:run")

    validate = commands.add_parser(
        "validate",
        help="check the main config and every policy, or only the FILEs given (for "
        "Ansible's validate: %%s and pre-commit); errors as FILE:LINE:COL, exit 1",
    )
    _config_flag(validate)
    validate.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="policy files, each on its own"
    )
    validate.add_argument(
        "--main", action="store_true", help="the FILEs are main configs (host-supervisor.yaml)"
    )
    validate.set_defaults(handler="supervisor.commands.local:validate")

    discover = commands.add_parser(
        "discover",
        help="write an observe-only policy for every enabled service unit, from systemd's "
        "metadata; never over an existing policy file",
    )
    _config_flag(discover)
    discover.add_argument("--dry-run", action="store_true", help="print the policies, write none")
    discover.add_argument(
        "--unit", action="append", default=[], metavar="NAME", help="only this unit; repeatable"
    )
    discover.set_defaults(handler="supervisor.commands.discover:run")

    schema = commands.add_parser("schema", help="print the JSON Schema of a policy")
    schema.add_argument("--main", action="store_true", help="the main config's schema instead")
    schema.set_defaults(handler="supervisor.commands.local:schema")

    config = commands.add_parser("config", help="the configuration: config show")
    config_commands = config.add_subparsers(
        dest="config_command", required=True, metavar="ACTION", help="show: print it"
    )
    config_show = config_commands.add_parser(
        "show",
        help="print the effective configuration (main config and policies) with every "
        "default filled in, as YAML, secrets masked",
    )
    _config_flag(config_show)
    config_show.set_defaults(handler="supervisor.commands.local:config_show")

    check = commands.add_parser(
        "check",
        help="run every check of one policy once, now, as a monitoring plugin (Nagios, "
        "Icinga): a status line with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
    )
    _config_flag(check)
    check.add_argument("target", metavar="UNIT_OR_POLICY_FILE")
    _json_flag(check)
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
    check.set_defaults(handler="supervisor.commands.local:check")

    test_alert = commands.add_parser(
        "test-alert",
        help="send a test message to one or every alert channel and say whether it arrived",
    )
    _config_flag(test_alert)
    test_alert.add_argument("channel", nargs="?", help="only this channel")
    test_alert.set_defaults(handler="supervisor.commands.local:test_alert")

    status = commands.add_parser(
        "status",
        help="each supervised unit's state; exit 0 all healthy, 1 degraded, 2 unhealthy, "
        "3 unknown or no daemon, 4 no status (no such unit, not allowed)",
    )
    _socket_flag(status)
    status.add_argument("unit", nargs="?", help="only this unit")
    _json_flag(status, "the daemon's answer as JSON (as the API document describes it)")
    status.add_argument(
        "-l", "--full", action="store_true", help="rows whole, not cut to the terminal's width"
    )
    _no_color_flag(status)
    status.set_defaults(handler="supervisor.commands.status:status_command")

    history = commands.add_parser("history", help="what happened: checks, actions, alerts")
    _socket_flag(history)
    history.add_argument("unit", nargs="?", help="only this unit")
    history.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="only the last DURATION, e.g. 1h, 30min (default: all)",
    )
    history.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    history.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="then print new entries as they come, until Ctrl-C (exit 130)",
    )
    history.add_argument(
        "--interval",
        type=_positive_duration,
        default=1.0,
        metavar="DURATION",
        help="with --follow, ask the daemon this often (default 1s)",
    )
    _json_flag(history, "machine-readable output (with --follow, one JSON entry per line)")
    _no_color_flag(history)
    history.set_defaults(handler="supervisor.commands.history:history_command")

    why = commands.add_parser(
        "why", help="why the daemon did what it did to a unit: event, rule, action, result"
    )
    _socket_flag(why)
    why.add_argument("unit")
    why.add_argument(
        "--last", type=int, default=3, metavar="N", help="the last N chains (default 3)"
    )
    _json_flag(why, "machine-readable output")
    why.set_defaults(handler="supervisor.commands.why:run")

    pause = _acting(commands, "pause", "maintenance: watch a unit but do not repair it")
    pause.add_argument("unit")
    pause.add_argument(
        "--for",
        dest="for_",
        type=_positive_duration,
        metavar="DURATION",
        help="end the pause on its own after DURATION, e.g. 2h, 30min (default: until resume)",
    )
    pause.add_argument(
        "--reason", default="", metavar="TEXT", help="why, shown by status and in the history"
    )

    resume = _acting(
        commands, "resume", "repair a paused unit again; --all also thaws a frozen repair budget"
    )
    target = resume.add_mutually_exclusive_group(required=True)
    target.add_argument("unit", nargs="?")
    target.add_argument("--all", action="store_true", help="every unit, and the repair budget")

    failover_cmd = _acting(commands, "failover", "move a unit's service to its backup now")
    failover_cmd.add_argument("unit")
    failover_cmd.add_argument("--to", metavar="BACKUP", help="this backup (default: the first)")
    failover_cmd.add_argument(
        "--to-host", metavar="HOST", help="a clustered unit: hand it over to this host"
    )

    failback_cmd = _acting(commands, "failback", "move a failed-over service back now")
    failback_cmd.add_argument("unit")

    reset = _acting(commands, "reset", "forget a unit's attempts and exhaustion")
    reset.add_argument("unit")

    metrics = commands.add_parser("metrics", help="check runs, results and lateness")
    _socket_flag(metrics)
    metrics.add_argument("--reset", action="store_true", help="start the lateness histogram afresh")
    _json_flag(metrics, "with --reset, the daemon's answer as JSON")
    metrics.set_defaults(handler="supervisor.commands.acting:metrics_command")

    _acting(
        commands,
        "reload",
        "make the daemon reload its policies and wait for its verdict: exit 1 when a "
        "policy is refused (the old ones stay in force); ExecReload= of the unit runs it",
    )

    drill = commands.add_parser(
        "drill",
        help="inject a real fault into a supervised unit and report how the daemon repaired "
        "it; exit 0 expectations met, 1 missed, 2 refused, 3 no daemon",
    )
    _config_flag(drill)
    _socket_flag(drill)
    drill.add_argument("unit", nargs="?", help="the unit (or --all)")
    drill.add_argument("--all", action="store_true", help="every unit with a policy, in turn")
    drill.add_argument(
        "--fault",
        choices=["kill", "stop-dbus-signal", "fail-check", "break-config"],
        default="kill",
        help="what to do to it (default kill: SIGKILL its main process)",
    )
    drill.add_argument(
        "--check", metavar="NAME", help="fail-check: this check (default the first critical)"
    )
    drill.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drill.add_argument("--force", action="store_true", help="drill a protected unit too")
    drill.add_argument("--dry-run", action="store_true", help="say what it would do; do nothing")
    _json_flag(drill, "one JSON object per unit")
    drill.add_argument(
        "--timeout",
        type=_positive_duration,
        default=120.0,
        metavar="DURATION",
        help="how long to watch the daemon repair it (default 2m)",
    )
    drill.add_argument(
        "--backup-dir",
        type=Path,
        default=DEFAULT_STATE_DIR / "drill-backups",
        metavar="DIR",
        help="break-config keeps the original file here until it is back "
        f"(default {DEFAULT_STATE_DIR / 'drill-backups'})",
    )
    drill.set_defaults(handler="supervisor.commands.drill:drill_main")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every error ends in one line on stderr and an exit code, never a traceback."""
    try:
        parser = build_parser()
        words = sys.argv[1:] if argv is None else argv
        parser.plugin_mode = words[:1] == ["check"]
        args = parser.parse_args(argv)
        return _handler(args.handler)(args)
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
        if isinstance(exc, OSError) and exc.strerror:  # e.g. a file named on the command line
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"host-supervisor: {where}{exc.strerror}", file=sys.stderr)
            return 1
        print(
            f"host-supervisor: internal error: {type(exc).__name__}: {detail} "
            "(HOST_SUPERVISOR_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_SOFTWARE


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function `name` ("module:function") names, imported now."""
    module, _, function = name.partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module), function
    )
    return handler
