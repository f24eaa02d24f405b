"""The commands that work without the daemon, as the parser hands them over: run,
validate, check, schema, test-alert, config show. Each takes the parsed arguments and
returns the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = [
    "check",
    "config_show",
    "run",
    "schema",
    "test_alert",
    "validate",
]


def _quiet_logs() -> None:
    from supervisor.logs import configure_logging

    configure_logging("warning", journal=False)  # stdout is the report


def run(args: argparse.Namespace) -> int:
    """The daemon; its own errors go to its log, tracebacks included."""
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


def validate(args: argparse.Namespace) -> int:
    from supervisor.commands.validate import validate_command, validate_files

    _quiet_logs()
    if args.files:
        return validate_files(args.files, sys.stdout, main=args.main)
    if args.main:
        print("host-supervisor validate: --main needs FILE arguments", file=sys.stderr)
        return 2
    return validate_command(args.config, sys.stdout)


def check(args: argparse.Namespace) -> int:
    from supervisor.commands.check import check_command

    _quiet_logs()  # stdout is the plugin's output
    return check_command(
        args.target, args.config, args.json, sys.stdout, args.warning, args.critical
    )


def schema(args: argparse.Namespace) -> int:
    from supervisor.config import main_json_schema, policy_json_schema

    print(json.dumps(main_json_schema() if args.main else policy_json_schema(), indent=2))
    return 0


def config_show(args: argparse.Namespace) -> int:
    from supervisor.commands.config_show import config_show_command

    _quiet_logs()
    return config_show_command(args.config, sys.stdout)


def test_alert(args: argparse.Namespace) -> int:
    """Works without the daemon: it reads the main config and sends directly."""
    import asyncio
    import tempfile

    from supervisor.alerts import Alerter
    from supervisor.config import load_config
    from supervisor.errors import ConfigError

    _quiet_logs()
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
