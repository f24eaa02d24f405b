"""`host-supervisor check UNIT_OR_POLICY_FILE`: every check of one policy, once, now,
reported as a monitoring plugin (Nagios, Icinga, Naemon, Checkmk) expects.

Works without the daemon. Follows the Monitoring Plugins development guidelines:

- stdout only; the first line is the status line, `HOST-SUPERVISOR STATE - UNIT: what`,
  then `|` and the performance data (`'label'=value[UOM];[warn];[crit];[min];[max]`,
  space separated); each check's own line follows (the long output);
- exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: a critical check failing is CRITICAL, a
  warning or a failing non-critical check WARNING, a probe that cannot run UNKNOWN;
- UNKNOWN (3), still on stdout, for a usage error, a policy that cannot be loaded, and
  when systemd's bus cannot be reached (the unit's state is then not known);
- thresholds in the guidelines' range format (`10`, `10:`, `~:10`, `10:20`, `@10:20`)
  on every figure a probe measures: `--warning disk_used=80 --critical http_ms=500`.
  The policy's own limits (max_used, max_rss, ...) are the critical thresholds where
  no `--critical` is given, and are shown in the perfdata.

Perfdata labels are CHECK_FIGURE: `http_ms` (response time), `port_ms` (TCP connect),
`disk_used` and `disk_inodes_used` (%), `disk_free` and `memory_rss` (B),
`memory_host_used` (%), `pid_count`, `pid_threads`, `pid_fds`, `pid_cpu` (%), for
checks named http, port, disk, memory and pid. (The probes themselves live in
`supervisor.checks`.)
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from supervisor.checks import Prober
from supervisor.checks.result import CheckResult, Measure, ProbeContext, Status
from supervisor.config import Check, Policy, load_config, load_policy_file
from supervisor.errors import BusError, ConfigError
from supervisor.secrets import mask
from supervisor.systemd.manager import SystemdManager

__all__ = [
    "EXIT_WORDS",
    "FIGURES",
    "PLUGIN",
    "STATE_WORDS",
    "Range",
    "Thresholds",
    "apply_thresholds",
    "check_command",
    "exit_code",
    "find_policy",
    "parse_thresholds",
    "perfdata",
    "render_json",
    "render_plugin",
    "run_policy_once",
    "unit_context",
    "usage_error",
]

PLUGIN = "HOST-SUPERVISOR"
"""The service name that starts the status line."""
STATE_WORDS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
"""The status line's word for each exit code."""
FIGURES: dict[str, tuple[str, ...]] = {
    "http": ("ms",),
    "tcp": ("ms",),
    "disk": ("used", "free", "inodes_used"),
    "memory": ("rss", "host_used"),
    "process": ("count", "threads", "fds", "cpu"),
    "command": (),
    "unit": (),
}
"""What each probe kind measures (a perfdata label is CHECK_FIGURE)."""

EXIT_WORDS = {0: "healthy", 1: "degraded", 2: "unhealthy", 3: "unknown"}
"""What each exit code of `exit_code` means."""

Results = Sequence[tuple[Check, CheckResult]]


async def run_policy_once(
    policy: Policy, context: ProbeContext, *, max_concurrent_commands: int = 4
) -> list[tuple[Check, CheckResult]]:
    """Run each check of `policy` once, all at the same time; results in the policy's order."""
    prober = Prober(max_concurrent_commands=max_concurrent_commands)
    try:
        results = await asyncio.gather(*(prober.run(check, context) for check in policy.checks))
    finally:
        await prober.close()
    return list(zip(policy.checks, results, strict=True))


def exit_code(results: Results) -> int:
    """The plugin's exit code of one run of a policy's checks.

    2 (unhealthy) when a critical check is CRITICAL; otherwise 3 (unknown) when any
    probe could not run, or there are no checks; otherwise 1 (degraded) when a check
    warns or a non-critical check is CRITICAL; otherwise 0 (healthy).
    """
    if not results:
        return 3
    statuses = [(check.critical, result.status) for check, result in results]
    if (True, Status.CRITICAL) in statuses:
        return 2
    if any(status is Status.UNKNOWN for _, status in statuses):
        return 3
    if any(status in (Status.WARNING, Status.CRITICAL) for _, status in statuses):
        return 1
    return 0


# -- thresholds: the guidelines' ranges ----------------------------------------------------

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^(?P<inside>@)?(?:(?P<low>~|{_NUMBER}):)?(?P<high>{_NUMBER})?$")


@dataclass(frozen=True)
class Range:
    """A threshold in the Monitoring Plugins range format: `10` alerts outside 0..10,
    `10:` below 10, `~:10` above 10, `10:20` outside 10..20, `@10:20` inside it."""

    low: float
    high: float
    inside: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> Range:
        match = _RANGE.match(text.strip())
        if not text.strip() or match is None or (match["low"] is None and not match["high"]):
            raise ValueError(f"{text!r} is not a range: write 10, 10:, ~:10, 10:20 or @10:20")
        low_text = match["low"]
        low = -math.inf if low_text == "~" else float(low_text) if low_text else 0.0
        high = float(match["high"]) if match["high"] else math.inf
        if low > high:
            raise ValueError(f"{text!r}: the start of a range must not be above its end")
        return cls(low, high, bool(match["inside"]), text.strip())

    @classmethod
    def of_limit(cls, measure: Measure) -> Range | None:
        """The policy's limit on a figure as a range: `90` (above), `1048576:` (below)."""
        if measure.limit is None:
            return None
        limit = _number(measure.limit)
        if measure.below:
            return cls(measure.limit, math.inf, False, f"{limit}:")
        if measure.limit >= 0 and (measure.low is None or measure.low >= 0):
            return cls(0.0, measure.limit, False, limit)
        return cls(-math.inf, measure.limit, False, f"~:{limit}")

    def alerts(self, value: float) -> bool:
        within = self.low <= value <= self.high
        return within if self.inside else not within


Thresholds = Mapping[str, tuple[Range | None, Range | None]]
"""Perfdata label -> (warning, critical), from the command line."""


def parse_thresholds(
    policy: Policy, warning: Sequence[str], critical: Sequence[str]
) -> dict[str, tuple[Range | None, Range | None]]:
    """`LABEL=RANGE` options, checked against what the policy's checks measure;
    ValueError names a bad one and what would do."""
    known = {
        f"{check.name}_{figure}": check for check in policy.checks for figure in FIGURES[check.kind]
    }
    found: dict[str, tuple[Range | None, Range | None]] = {}
    for level, options in (("warning", warning), ("critical", critical)):
        for option in options:
            label, sep, text = option.partition("=")
            if not sep or not label:
                raise ValueError(f"--{level} {option!r}: write LABEL=RANGE, e.g. disk_used=80")
            if label not in known:
                choices = ", ".join(sorted(known)) or "none: no check of it measures a figure"
                raise ValueError(
                    f"--{level} {label}: no check of {policy.unit} measures that; labels: {choices}"
                )
            try:
                parsed = Range.parse(text)
            except ValueError as exc:
                raise ValueError(f"--{level} {label}: {exc}") from None
            warn, crit = found.get(label, (None, None))
            found[label] = (parsed, crit) if level == "warning" else (warn, parsed)
    return found


def _label(check: Check, measure: Measure) -> str:
    return f"{check.name}_{measure.name}"


def _ranges(
    check: Check, measure: Measure, thresholds: Thresholds
) -> tuple[Range | None, Range | None]:
    warn, crit = thresholds.get(_label(check, measure), (None, None))
    return warn, crit if crit is not None else Range.of_limit(measure)


_ORDER = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2}


def apply_thresholds(results: Results, thresholds: Thresholds) -> list[tuple[Check, CheckResult]]:
    """Each result, made WARNING or CRITICAL where a figure is past a threshold given on
    the command line (never better than the probe said; UNKNOWN stays UNKNOWN)."""
    out: list[tuple[Check, CheckResult]] = []
    for check, result in results:
        status, notes = result.status, []
        for measure in result.measures:
            warn, crit = thresholds.get(_label(check, measure), (None, None))
            for level, limit in ((Status.CRITICAL, crit), (Status.WARNING, warn)):
                if limit is None or not limit.alerts(measure.value):
                    continue
                notes.append(
                    f"{_label(check, measure)} {_number(measure.value)}{measure.unit} is past "
                    f"the {level.value} threshold {limit.text}"
                )
                if status in _ORDER and _ORDER[level] > _ORDER[status]:
                    status = level
                break
        if notes:
            message = "; ".join([*notes, result.message]) if result.message else "; ".join(notes)
            result = replace(result, status=status, message=message)
        out.append((check, result))
    return out


# -- output -----------------------------------------------------------------------------------


def _number(value: float) -> str:
    """A figure in perfdata: digits, '-' and '.', no exponent, no trailing zeros."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def perfdata(results: Results, thresholds: Thresholds | None = None) -> str:
    """`'label'=value[UOM];[warn];[crit];[min];[max]` for every measured figure."""
    items: list[str] = []
    for check, result in results:
        for measure in result.measures:
            label = _label(check, measure).replace("'", "").replace("=", "_")
            warn, crit = _ranges(check, measure, thresholds or {})
            fields = [
                f"{_number(measure.value)}{measure.unit}",
                warn.text if warn else "",
                crit.text if crit else "",
                _number(measure.low) if measure.low is not None else "",
                _number(measure.high) if measure.high is not None else "",
            ]
            items.append(f"'{label}'=" + ";".join(fields).rstrip(";"))
    return " ".join(items)


def _clean(text: str) -> str:
    """Plugin text: one line, masked, and never a '|' (it would start the perfdata)."""
    return " ".join(mask(text).replace("|", "/").split())


def _state_word(check: Check, status: Status) -> str:
    word = status.value.upper()
    return word + (" (non-critical)" if not check.critical and status is not Status.OK else "")


def render_plugin(
    unit: str, results: Results, thresholds: Thresholds | None = None, problem: str = ""
) -> tuple[str, int]:
    """The plugin's output and exit code. `problem`: why systemd was not asked (UNKNOWN)."""
    code = 3 if problem else exit_code(results)
    bad = [(c, r) for c, r in results if r.status is not Status.OK]
    bad.sort(key=lambda cr: (not cr[0].critical, -_ORDER.get(cr[1].status, 3)))
    if problem:
        summary = f"systemd cannot be reached, the unit's state is not known ({problem})"
    elif not results:
        summary = "the policy has no checks"
    elif bad:
        summary = "; ".join(
            f"{check.name} {result.status.value}"
            + ("" if check.critical else " (non-critical)")
            + (f" ({result.message})" if result.message else "")
            for check, result in bad
        )
    else:
        summary = f"{len(results)} check{'s' if len(results) != 1 else ''} ok"
    line = f"{PLUGIN} {STATE_WORDS[code]} - {_clean(unit)}: {_clean(summary)}"
    data = perfdata(results, thresholds)
    lines = [f"{line}|{data}" if data else line]
    lines += [
        f"{_clean(check.name)}: {_state_word(check, result.status)} - {_clean(result.message)}"
        for check, result in results
    ]
    return "\n".join(lines) + "\n", code


def usage_error(message: str) -> str:
    """UNKNOWN for a usage error, on stdout as the guidelines ask."""
    return f"{PLUGIN} {STATE_WORDS[3]} - {_clean(message)}\n"


def render_json(results: Results, thresholds: Thresholds | None = None, problem: str = "") -> str:
    """One JSON object: the verdict, its exit code and every check's result and figures;
    `problem`: why systemd was not asked (the verdict is then unknown)."""
    code = 3 if problem else exit_code(results)
    document: dict[str, object] = {
        "health": EXIT_WORDS[code],
        "exit_code": code,
        **({"systemd_error": mask(problem)} if problem else {}),
        "checks": [
            {
                "name": check.name,
                "kind": check.kind,
                "critical": check.critical,
                "status": result.status.value,
                "duration_ms": round(result.duration * 1000, 1),
                "message": mask(result.message),
                "measures": [
                    {
                        "label": _label(check, measure),
                        "value": measure.value,
                        "unit": measure.unit,
                        "warning": warn.text if warn else None,
                        "critical": crit.text if crit else None,
                    }
                    for measure in result.measures
                    for warn, crit in [_ranges(check, measure, thresholds or {})]
                ],
            }
            for check, result in results
        ],
    }
    return json.dumps(document, indent=2) + "\n"


EXIT_UNKNOWN = 3


def find_policy(target: str, config_dir: Path) -> tuple[Policy | None, str]:
    """The policy a user named, by file path or by unit; or None and why not."""
    path = Path(target)
    if path.is_file():
        policy, issues = load_policy_file(path)
        if policy is None:
            return None, "; ".join(str(issue) for issue in issues)
        return policy, ""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        return None, str(exc)
    policy = loaded.policies.get(target)
    if policy is None:
        return None, f"no valid policy for unit {target} in {config_dir / 'policies.d'}"
    return policy, ""


async def unit_context(unit: str) -> tuple[ProbeContext, str]:
    """What systemd says of the unit, or a bare context and why systemd did not say."""
    manager = SystemdManager(lambda _snapshot: None)
    try:
        await manager.connect()
        snapshot = await manager.watch(unit)
        memory = await manager.memory_current(unit)
    except BusError as exc:
        return ProbeContext(unit=unit), str(exc)
    finally:
        await manager.close()
    context = ProbeContext(
        unit=unit,
        main_pid=snapshot.main_pid,
        memory_current=memory,
        active_state=snapshot.active_state,
    )
    return context, ""


async def _check(policy: Policy, as_json: bool, thresholds: Thresholds, out: TextIO) -> int:
    context, problem = await unit_context(policy.unit)
    results = apply_thresholds(await run_policy_once(policy, context), thresholds)
    if as_json:
        out.write(render_json(results, thresholds, problem))
        return EXIT_UNKNOWN if problem else exit_code(results)
    text, code = render_plugin(policy.unit, results, thresholds, mask(problem))
    out.write(text)
    return code


def check_command(
    target: str,
    config_dir: Path,
    as_json: bool,
    out: TextIO,
    warning: Sequence[str] = (),
    critical: Sequence[str] = (),
) -> int:
    policy, problem = find_policy(target, config_dir)
    if policy is None:
        out.write(usage_error(problem))
        return EXIT_UNKNOWN
    try:
        thresholds = parse_thresholds(policy, warning, critical)
    except ValueError as exc:
        out.write(usage_error(str(exc)))
        return EXIT_UNKNOWN
    return asyncio.run(_check(policy, as_json, thresholds, out))
