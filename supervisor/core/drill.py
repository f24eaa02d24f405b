"""Recovery drills, the decisions: may a drill run on a unit, what the daemon's history
says it did about the fault, whether the policy's `expect:` held, and a check forced to
fail. Pure: no I/O, no clock (the fault's time is an argument). The record a drill
leaves in the history is `supervisor.core.drill_record`.

The command that injects the fault and watches is `supervisor.commands.drill`; the
daemon's side (a check forced to fail, the record) is `supervisor.daemon.drills`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.config import Check, GuardConfig, Policy, UnitProbe
from supervisor.core.actions import Event, ProbeDone, ProbesDone
from supervisor.core.guard import protecting_glob
from supervisor.core.values import CheckResult, Status


class Fault(enum.Enum):
    """What a drill does to the unit."""

    KILL = "kill"
    """SIGKILL to the main process, through systemd (KillUnit), as a crash."""
    STOP = "stop-dbus-signal"
    """A stop job through systemd (StopUnit), as an operator or another tool would: the
    daemon must respect it (a clean stop is never undone), and the drill starts it again."""
    FAIL_CHECK = "fail-check"
    """One critical check reports CRITICAL (a drill override in the daemon) until the
    daemon repairs the unit, or for at most the drill's timeout."""
    BREAK_CONFIG = "break-config"
    """One file under recovery.restore.paths is overwritten (after a backup), and the unit
    restarted as a deploy would: the daemon's restore must bring the file back."""


class Result(enum.Enum):
    MET = "met"
    """The daemon did what the policy expects, in time."""
    MISSED = "missed"
    """It did not (too late, not at all, or the drill had to put things back itself)."""


MAX_FORCE = 3600.0
"""The longest a drill watches, and a check may be forced to fail, in seconds."""

HEALTHY_AGAIN = ("healthy", "degraded", "appeared")
"""The daemon's `health` history entries that mean the unit serves again."""


# -- may it run ---------------------------------------------------------------------------


def drill_check(policy: Policy, name: str | None) -> Check | str:
    """The check a fail-check drill forces to fail: `name`, or the policy's first critical
    scheduled check; else why there is none."""
    scheduled = [c for c in policy.checks if not isinstance(c.probe, UnitProbe)]
    if name is not None:
        check = next((c for c in policy.checks if c.name == name), None)
        if check is None:
            known = ", ".join(c.name for c in policy.checks) or "none"
            return f"{policy.unit} has no check {name!r} (checks: {known})"
        if check not in scheduled:
            return f"check {name!r} is a unit: check, judged from systemd: it cannot be forced"
        if not check.critical:
            return f"check {name!r} is not critical: its failure only degrades, nothing repairs"
        return check
    check = next((c for c in scheduled if c.critical), None)
    if check is None:
        return f"{policy.unit} has no critical probed check for fail-check to force"
    return check


def refusal(
    policy: Policy,
    guard: GuardConfig,
    row: Mapping[str, Any] | None,
    fault: Fault,
    *,
    force: bool = False,
    daemon_dry_run: bool = False,
    check: str | None = None,
) -> str | None:
    """Why a drill may not run on the unit now (None: it may). `row` is the unit's row of
    the daemon's status (None when the daemon does not supervise it)."""
    unit = policy.unit
    if row is None:
        return f"the daemon does not supervise {unit}: reload it after adding the policy"
    if daemon_dry_run:
        return "the daemon runs with --dry-run: it would repair nothing"
    if policy.mode == "observe":
        return f"{unit} is in mode: observe: the daemon would not repair it"
    if row.get("paused"):
        return f"{unit} is paused: `host-supervisor resume {unit}` first"
    if row.get("flapping"):
        return f"{unit} is flapping: repairs are paused until it settles"
    condition = row.get("condition")
    if condition != "healthy":
        return f"{unit} is {condition} now: a drill starts from a healthy unit"
    glob = protecting_glob(unit, guard, allow_automatic=False)
    if glob is not None and not force:
        return f"{unit} is protected (guard.protected {glob!r}): --force drills it anyway"
    if fault is Fault.BREAK_CONFIG:
        restore = policy.recovery.restore
        if restore is None or not restore.paths:
            return f"break-config needs recovery.restore.paths in {unit}'s policy"
        if "restore" not in policy.recovery.ladder:
            return f"break-config needs restore in {unit}'s recovery.ladder"
    if fault is Fault.FAIL_CHECK:
        picked = drill_check(policy, check)
        if isinstance(picked, str):
            return picked
    return None


def describe_plan(policy: Policy, fault: Fault, timeout: float, check: str | None = None) -> str:
    """What a drill would do, in one line (`drill --dry-run`)."""
    unit = policy.unit
    match fault:
        case Fault.KILL:
            what = f"SIGKILL the main process of {unit} (systemd KillUnit)"
        case Fault.STOP:
            what = f"stop {unit} over D-Bus (StopUnit), expect the daemon to leave it stopped"
        case Fault.FAIL_CHECK:
            picked = drill_check(policy, check)
            name = picked.name if isinstance(picked, Check) else "?"
            what = f"force check {name!r} of {unit} to fail"
        case Fault.BREAK_CONFIG:
            restore = policy.recovery.restore
            paths = ", ".join(restore.paths) if restore is not None else "?"
            what = f"back up and break a file under {paths}, then restart {unit}"
    target = policy.expect.recover_within
    expect = f"; expect healthy within {target:g}s" if target is not None else ""
    return f"would {what}; watch up to {timeout:g}s{expect}"


# -- what the history says ----------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """The daemon's answer to one fault, read from its history; seconds after the fault."""

    detected_after: float | None = None
    """The daemon recorded the unit unhealthy (or, for a stop, stopped)."""
    repaired_after: float | None = None
    """Its first repair action finished (e.g. the restart job done: active again)."""
    recovered_after: float | None = None
    """It recorded the unit healthy again."""
    rungs: tuple[str, ...] = ()
    """The rungs it ran, in order (restart, reload, restore)."""
    stopped: bool = False
    """The fault showed as a clean stop (which the daemon respects)."""
    unanswered: int = 0
    """Rungs whose result is not in the history yet."""


def _health(entry: Mapping[str, Any]) -> str:
    return str(entry.get("message", "")) if entry.get("kind") == "health" else ""


def _check_ok(entry: Mapping[str, Any]) -> bool:
    data = entry.get("data")
    return entry.get("kind") == "check" and isinstance(data, Mapping) and data.get("state") == "ok"


def figures(entries: Sequence[Mapping[str, Any]], fault_at: float, fault: Fault) -> Figures:
    """Read the unit's history entries (oldest first, as the daemon answers) after
    `fault_at`: when it noticed, what it ran, when the unit was healthy again. A clean
    stop is the answer to a stop; for other faults it is a restart passing by."""
    detected: float | None = None
    repaired: float | None = None
    recovered: float | None = None
    rungs: list[str] = []
    results = 0
    stopped = checks_pending = False
    for entry in entries:
        at = float(entry.get("time", -math.inf))
        if at < fault_at:
            continue
        message, kind = str(entry.get("message", "")), entry.get("kind")
        health = _health(entry)
        if detected is None:
            if health.startswith(("failed:", "unhealthy:")):
                detected = at
            elif health.startswith("stopped cleanly") and fault is Fault.STOP:
                detected, stopped = at, True
            continue
        # Healthy again (systemd said active) may come before the restart job's result:
        # read on for the results of the rungs in flight, not past a new fault.
        new_fault = health.startswith(("failed:", "unhealthy:")) or kind == "action"
        if recovered is not None and new_fault:
            break
        if kind == "action" and message:
            rungs.append(message.split()[0])
        elif kind == "result":
            results += 1
            if repaired is None and message.split()[1:2] == ["done:"]:
                repaired = at
        elif recovered is not None:
            continue
        elif health in HEALTHY_AGAIN or (checks_pending and _check_ok(entry)):
            recovered = at
        elif health:
            # Restarted, its checks start afresh ("unknown"): the first to pass makes it
            # healthy, which the history shows as that check's change, not as health.
            checks_pending = health == "unknown"
    return Figures(
        detected_after=None if detected is None else detected - fault_at,
        repaired_after=None if repaired is None else repaired - fault_at,
        recovered_after=None if recovered is None else recovered - fault_at,
        rungs=tuple(rungs),
        stopped=stopped,
        unanswered=max(0, len(rungs) - results),
    )


def settled(fault: Fault, found: Figures) -> bool:
    """The drill has seen the end of the daemon's answer and may stop watching."""
    if fault is Fault.STOP:
        return found.detected_after is not None
    return found.recovered_after is not None and found.unanswered == 0


# -- the verdict --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    result: Result
    reasons: tuple[str, ...] = ()
    """Why it was missed; empty when met."""


def judge(fault: Fault, found: Figures, recover_within: float | None) -> Verdict:
    """Did the daemon do what the policy expects? A stop must be respected (no repair);
    any other fault detected and repaired, healthy again within `recover_within`."""
    reasons: list[str] = []
    if fault is Fault.STOP:
        if not found.stopped:
            reasons.append("the daemon did not record the stop as a clean stop")
        if found.rungs:
            reasons.append(f"the daemon fought the stop: it ran {', '.join(found.rungs)}")
    elif found.detected_after is None:
        reasons.append("the daemon never recorded the unit unhealthy")
    elif found.recovered_after is None:
        reasons.append("the daemon did not bring the unit back to healthy in time")
    elif recover_within is not None and found.recovered_after > recover_within:
        reasons.append(
            f"healthy again after {found.recovered_after:.3f}s, "
            f"expected within {recover_within:g}s (expect.recover_within)"
        )
    return Verdict(Result.MISSED if reasons else Result.MET, tuple(reasons))


# -- a check forced to fail ---------------------------------------------------------------


@dataclass(frozen=True)
class Forced:
    """A drill's override: check number `index` of `unit` reports CRITICAL until `until`,
    or until the unit's repair attempts pass `attempts` (the daemon acted)."""

    unit: str
    index: int
    check: str
    until: float
    attempts: int
    caller: str = ""


def forced_result(forced: Forced) -> CheckResult:
    by = f" by {forced.caller}" if forced.caller else ""
    return CheckResult(Status.CRITICAL, f"forced to fail by a recovery drill{by}", 0.0)


def still_forced(forced: Forced, attempts: int | None, now: float) -> bool:
    """The override holds: not expired, the unit still supervised and not yet repaired."""
    return attempts is not None and now < forced.until and attempts <= forced.attempts


def apply_forced(event: Event, forced: Mapping[tuple[str, int], Forced]) -> Event:
    """A probe event with every forced check's result replaced by a failure."""
    if not forced:
        return event
    if isinstance(event, ProbeDone):
        return _forced_one(event, forced)
    if isinstance(event, ProbesDone):
        return ProbesDone(tuple(_forced_one(done, forced) for done in event.results))
    return event


def _forced_one(done: ProbeDone, forced: Mapping[tuple[str, int], Forced]) -> ProbeDone:
    hit = forced.get((done.unit, done.index))
    return done if hit is None else ProbeDone(done.unit, done.index, forced_result(hit))
