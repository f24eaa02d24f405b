"""`host-supervisor drill`: inject a real fault into a supervised unit, watch the daemon
repair it through its history, and report (and record, in the daemon's history and
metrics) how long detection and recovery took, the rungs it ran, and whether the
policy's `expect:` held.

Exit 0 expectations met, 1 missed, 2 bad arguments or refused, 3 no daemon answered.
The drill never leaves its fault behind: a forced check is ended, a broken file put
back, a stopped or still failed unit started again, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from supervisor.commands.client import EXIT_UNREACHABLE, ControlError, call, error_of
from supervisor.commands.drill_faults import Broken, DrillFault, SystemdBus, break_file, pick_file
from supervisor.commands.drill_faults import put_back as put_file_back
from supervisor.config import LoadedConfig, Policy, load_config
from supervisor.core import drill, drill_record
from supervisor.core.drill import MAX_FORCE, Fault, Figures, Result
from supervisor.errors import ConfigError
from supervisor.secrets import mask

EXIT_MET, EXIT_MISSED, EXIT_REFUSED = 0, 1, 2
POLL = 0.1  # seconds between two reads of the history; the figures come from its times
FORCED = "/drill/fail-check"  # below /v1/units/UNIT: the daemon's forced check
QUIET = 2.0  # after a stop, how long the daemon must leave the unit alone (at least)


@dataclass(frozen=True)
class DrillOptions:
    units: tuple[str, ...]
    """The units to drill; every policy's unit with --all."""
    fault: Fault
    config: Path
    socket: Path
    backup_dir: Path
    timeout: float = 120.0
    yes: bool = False
    force: bool = False
    dry_run: bool = False
    every: bool = False
    check: str | None = None
    json: bool = False


def drill_main(args: argparse.Namespace) -> int:
    """The `drill` sub-command, from its parsed arguments (see `supervisor.cli`)."""
    if (args.unit is None) == (not args.all):
        print("host-supervisor: drill: name one UNIT, or --all", file=sys.stderr)
        return EXIT_REFUSED
    if not 0 < args.timeout <= MAX_FORCE:
        print(f"host-supervisor: drill: --timeout must be 1ms to {MAX_FORCE:g}s", file=sys.stderr)
        return EXIT_REFUSED
    options = DrillOptions(
        units=(args.unit,) if args.unit else (),
        fault=Fault(args.fault),
        config=args.config,
        socket=args.socket,
        backup_dir=args.backup_dir,
        timeout=args.timeout,
        yes=args.yes,
        force=args.force,
        dry_run=args.dry_run,
        every=args.all,
        check=args.check,
        json=args.json,
    )
    return drill_command(options, sys.stdout, sys.stderr)


def drill_command(
    options: DrillOptions, out: TextIO, err: TextIO, ask: Callable[[str], str] = input
) -> int:
    try:
        loaded = load_config(options.config)
    except ConfigError as exc:
        print(f"host-supervisor: {exc}", file=err)
        return EXIT_REFUSED
    units = tuple(sorted(loaded.policies)) if options.every else options.units
    codes: list[int] = []
    try:
        status = _get(options.socket, "/v1/status")
        for unit in units:
            codes.append(_one(options, loaded, status, unit, out, err, ask))
            if len(units) > 1 and not options.dry_run:
                status = _get(options.socket, "/v1/status")
    except ControlError as exc:
        print(f"host-supervisor: {exc}", file=err)
        return exc.exit_code
    except DrillFault as exc:
        print(f"host-supervisor: drill: {exc}", file=err)
        return EXIT_MISSED
    if options.every:
        ran = [code for code in codes if code != EXIT_REFUSED]
        return max(ran, default=EXIT_MET)
    return max(codes, default=EXIT_MET)


def _one(
    options: DrillOptions,
    loaded: LoadedConfig,
    status: dict[str, Any],
    unit: str,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str],
) -> int:
    policy = loaded.policies.get(unit)
    if policy is None:
        print(f"{unit}: refused: no policy for it in {options.config / 'policies.d'}", file=err)
        return EXIT_REFUSED
    row = next((r for r in status["units"] if r["unit"] == unit), None)
    why = drill.refusal(
        policy,
        loaded.main.guard,
        row,
        options.fault,
        force=options.force,
        daemon_dry_run=bool(status.get("dry_run")),
        check=options.check,
    )
    if why is not None:
        print(f"{unit}: refused: {why}", file=out if options.dry_run else err)
        return EXIT_REFUSED
    plan = drill.describe_plan(policy, options.fault, options.timeout, options.check)
    if options.dry_run:
        print(f"{unit}: {plan}", file=out)
        return EXIT_MET
    if not options.yes:
        if not sys.stdin.isatty():
            print(f"{unit}: refused: not confirmed (no terminal): pass --yes", file=err)
            return EXIT_REFUSED
        if ask(f"{unit}: {plan}. Go on? [y/N] ").strip().lower() not in ("y", "yes"):
            print(f"{unit}: not drilled", file=err)
            return EXIT_REFUSED
    record = Run(options, policy).run()
    try:
        _post(options.socket, f"/v1/units/{quote(unit, safe='')}/drill", record.to_dict())
    except ControlError as exc:
        print(f"host-supervisor: the drill's result is not recorded: {exc}", file=err)
        _print(options, unit, record, out)
        return EXIT_UNREACHABLE
    _print(options, unit, record, out)
    return EXIT_MET if record.result is Result.MET else EXIT_MISSED


def _print(options: DrillOptions, unit: str, record: drill_record.DrillRecord, out: TextIO) -> None:
    if options.json:
        print(json.dumps({"unit": unit, **record.to_dict()}), file=out)
    else:
        print(mask(f"{unit}: {drill_record.summary(record)}"), file=out)


class Run:
    """One drill on one unit: inject, watch, clean up, judge."""

    def __init__(self, options: DrillOptions, policy: Policy) -> None:
        self.options = options
        self.policy = policy
        self.unit = policy.unit
        self.cleanup: list[str] = []
        self.extra: dict[str, str] = {}

    def run(self) -> drill_record.DrillRecord:
        with asyncio.Runner() as runner:
            bus = SystemdBus(runner)
            bus.connect()
            try:
                return self._with(bus)
            finally:
                bus.close()

    def _with(self, bus: SystemdBus) -> drill_record.DrillRecord:
        fault, unit = self.options.fault, self.unit
        broken: Broken | None = None
        found = Figures()
        fault_at = time.time()
        try:
            match fault:
                case Fault.KILL:
                    bus.kill_main(unit)
                case Fault.STOP:
                    bus.stop(unit)
                case Fault.FAIL_CHECK:
                    self._force_check()
                case Fault.BREAK_CONFIG:
                    broken = self._break(bus)
            found = self._watch(fault_at)
        finally:
            self._clean_up(bus, broken, found)
        within = self.policy.expect.recover_within
        verdict = drill.judge(fault, found, within)
        if self.cleanup and fault is not Fault.STOP and verdict.result is Result.MET:
            verdict = drill.Verdict(Result.MISSED, ("the drill had to clean up after it",))
        cleanup = "; ".join(self.cleanup)
        return drill_record.record_of(fault, found, verdict, within, cleanup, self.extra, fault_at)

    def _force_check(self) -> None:
        query = {"for_s": repr(self.options.timeout)}
        if self.options.check:
            query["check"] = self.options.check
        picked = drill.drill_check(self.policy, self.options.check)
        if not isinstance(picked, str):
            self.extra["check"] = picked.name
        url = f"/v1/units/{quote(self.unit, safe='')}{FORCED}?{urlencode(query)}"
        _post(self.options.socket, url)

    def _break(self, bus: SystemdBus) -> Broken:
        restore = self.policy.recovery.restore
        path = pick_file(restore.paths if restore is not None else ())
        if path is None:
            raise DrillFault(f"no regular file under {self.unit}'s recovery.restore.paths")
        tag = f"{self.unit}-{int(time.time())}"
        broken = break_file(path, self.options.backup_dir, tag)
        self.extra["path"] = path
        bus.restart(self.unit)  # as a deploy would: the broken file is now in use
        return broken

    def _watch(self, fault_at: float) -> Figures:
        """Read the unit's history until the daemon's answer is complete, or the timeout."""
        deadline = time.monotonic() + self.options.timeout
        found = Figures()
        while time.monotonic() < deadline:
            found = drill.figures(self._history(fault_at), fault_at, self.options.fault)
            if drill.settled(self.options.fault, found):
                break
            time.sleep(POLL)
        if self.options.fault is Fault.STOP and found.stopped:
            # A clean stop is respected: give the daemon time to (wrongly) act on it.
            quiet = min(max(QUIET, self.policy.recovery.settle), deadline - time.monotonic())
            time.sleep(max(0.0, quiet))
            found = drill.figures(self._history(fault_at), fault_at, self.options.fault)
        return found

    def _history(self, fault_at: float) -> list[dict[str, Any]]:
        since = max(0.0, time.time() - fault_at) + 1.0
        query = urlencode({"unit": self.unit, "since_s": repr(since), "limit": "1000"})
        body = _get(self.options.socket, f"/v1/history?{query}")
        entries: list[dict[str, Any]] = body["entries"]
        return entries

    def _clean_up(self, bus: SystemdBus, broken: Broken | None, found: Figures) -> None:
        """Put back what the drill did, even when the daemon stopped answering meanwhile
        (a forced check then ends at its own deadline, the drill's timeout)."""
        unit, socket, fault = self.unit, self.options.socket, self.options.fault
        if fault is Fault.FAIL_CHECK:
            with contextlib.suppress(ControlError):
                code, body = call(socket, "DELETE", f"/v1/units/{quote(unit, safe='')}{FORCED}")
                if code == 200 and body.get("ended") and found.recovered_after is None:
                    self.cleanup.append("ended the forced check failure")
        if broken is not None and put_file_back(broken):
            self.cleanup.append(f"wrote {broken.path} back from its backup")
            bus.reset_failed(unit)
            bus.restart(unit)  # with the good file again, whatever state it is in
            self.cleanup.append(f"restarted {unit}")
            return
        if fault is not Fault.STOP and found.recovered_after is not None:
            return  # the daemon brought it back: nothing of the drill's is left
        active: str | None = None
        with contextlib.suppress(ControlError):
            rows = _get(socket, f"/v1/status?unit={quote(unit)}")["units"]
            active = (rows[0].get("systemd") or {}).get("active_state") if rows else None
        if active not in ("active", "reloading", "activating"):
            bus.reset_failed(unit)
            bus.start(unit)  # a no-op for systemd if it runs after all
            if fault is not Fault.STOP:
                self.cleanup.append(f"started {unit} (it was {active or 'unknown'})")


def _get(socket: Path, url: str) -> Any:
    code, body = call(socket, "GET", url)
    if code != 200:
        raise error_of(code, body)
    return body


def _post(socket: Path, url: str, body: Any = None) -> Any:
    code, answer = call(socket, "POST", url, body=body)
    if code != 200:
        raise error_of(code, answer)
    return answer
