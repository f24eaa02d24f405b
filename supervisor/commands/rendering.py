"""How `status` and `history` look on a terminal, from the daemon's JSON (the bodies the
API document describes). Pure: a body and a `Terminal` in, lines out; no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from supervisor.commands.terminal import Terminal

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_HEALTHY",
    "EXIT_UNHEALTHY",
    "EXIT_UNKNOWN",
    "cluster_line",
    "history_line",
    "human_duration",
    "next_label",
    "pause_label",
    "render_status",
    "state_label",
    "status_exit_code",
]

EXIT_HEALTHY = 0
"""Every unit is healthy (or there is none), as `systemctl is-active` exits 0."""
EXIT_DEGRADED = 1
"""No unit is unhealthy or unknown, and one at least is degraded or in transition."""
EXIT_UNHEALTHY = 2
"""A unit at least is unhealthy, stopped or missing."""
EXIT_UNKNOWN = 3
"""No unit is unhealthy, and one at least is not known yet; also: no daemon answered."""

_EXIT_OF_CONDITION = {
    "healthy": EXIT_HEALTHY,
    "degraded": EXIT_DEGRADED,
    "transient": EXIT_DEGRADED,
    "unhealthy": EXIT_UNHEALTHY,
    "stopped": EXIT_UNHEALTHY,
    "missing": EXIT_UNHEALTHY,
}
# Worst first: a unit known to be down says more than one not known yet.
_EXIT_RANK = (EXIT_UNHEALTHY, EXIT_UNKNOWN, EXIT_DEGRADED, EXIT_HEALTHY)

_STYLE_OF_CONDITION = {
    "healthy": "green",
    "degraded": "yellow",
    "transient": "yellow",
    "unhealthy": "red",
    "stopped": "red",
    "missing": "red",
}

# systemd's load states for a unit that cannot run: shown as they are, since a unit that
# does not exist is not "inactive/dead".
_MISSING_LOAD_STATES = frozenset({"not-found", "masked", "error", "bad-setting"})

_HEADER = ("UNIT", "HEALTH", "STATE", "PHASE", "ATTEMPTS", "NEXT")
_LAST = "LAST EVENT"
_MIN_LAST = 12
"""Columns kept for the last event when a row is cut to the terminal's width."""


def status_exit_code(units: Iterable[Mapping[str, Any]]) -> int:
    """0 all healthy, 1 degraded, 2 unhealthy, 3 unknown: the worst unit decides."""
    codes = {_EXIT_OF_CONDITION.get(str(u.get("condition")), EXIT_UNKNOWN) for u in units}
    return next((code for code in _EXIT_RANK if code in codes), EXIT_HEALTHY)


def human_duration(seconds: float) -> str:
    """A countdown as a person reads it: `42s`, `4m 10s`, `59m`, `1h 30m`, `2d 3h`."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "now"
    whole = int(seconds)
    if whole < 60:
        return f"{max(whole, 1)}s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes < 10 and secs:
        return f"{minutes}m {secs}s"
    return f"{minutes}m"


def state_label(unit: Mapping[str, Any]) -> str:
    """systemd's state in short; a unit that does not exist as `not-found` (or masked)."""
    systemd = unit.get("systemd")
    if isinstance(systemd, Mapping) and systemd.get("load_state") in _MISSING_LOAD_STATES:
        return str(systemd["load_state"])
    return str(unit.get("state") or "-")


def pause_label(unit: Mapping[str, Any], paused_all: bool = False) -> str:
    """`paused (2h left: deploy)`, `paused: deploy`, `paused`, or '' when not paused."""
    if not unit.get("paused"):
        return ""
    reason = str(unit.get("pause_reason") or "")
    left = unit.get("pause_left_s")
    if isinstance(left, int | float) and not isinstance(left, bool):
        inside = f"{human_duration(left)} left" + (f": {reason}" if reason else "")
        return f"paused ({inside})"
    if reason:
        return f"paused: {reason}"
    return "paused (all units)" if paused_all else "paused"


def next_label(unit: Mapping[str, Any]) -> str:
    """What happens next, with its countdown labelled: `attempts reset in 59m`."""
    phase = unit.get("phase")
    held = str(unit.get("held") or "")
    left = unit.get("next_action_in_s")
    when = human_duration(left) if isinstance(left, int | float) else ""
    if phase == "exhausted":
        return f"gave up; `host-supervisor reset {unit.get('unit')}` to try again"
    if phase == "held":
        return "held" + (f": {held}" if held else "") + (f" (retry in {when})" if when else "")
    if not when:
        return "judging the repair" if phase == "acting" else ""
    match phase:
        case "idle":
            return f"attempts reset in {when}"
        case "cooldown":
            return f"next repair in {when}"
        case "settling":
            return f"repair judged in {when}"
        case _:
            return f"next decision in {when}"


def render_status(body: Mapping[str, Any], term: Terminal) -> list[str]:
    """The STATUS= line, one row per unit (cut to the terminal's width), the guard when
    it holds repairs back, and a line per clustered unit."""
    lines = [str(body.get("status", ""))]
    raw_guard = body.get("guard")
    guard: Mapping[str, Any] = raw_guard if isinstance(raw_guard, Mapping) else {}
    lines += _guard_lines(guard, term)
    units = [u for u in body.get("units") or [] if isinstance(u, Mapping)]
    if not units:
        return lines
    rows = [(*_HEADER, _LAST)]
    for u in units:
        notes = [n for n in (pause_label(u, bool(guard.get("paused_all"))), next_label(u)) if n]
        if u.get("mode") in ("observe", "shadow"):  # what it would do is recorded, not done
            notes.insert(0, f"{u['mode']}: not acted on")
        if u.get("flapping"):
            notes.append("flapping")
        rows.append(
            (
                str(u.get("unit")),
                str(u.get("condition")),
                state_label(u),
                str(u.get("phase")),
                f"{u.get('attempts')}/{u.get('max_attempts')}",
                "; ".join(notes),
                str(u.get("last_event") or ""),
            )
        )
    widths = _fit([max(len(r[i]) for r in rows) for i in range(len(_HEADER))], term.width)
    for index, row in enumerate(rows):
        lines.append(_row(row, widths, term, header=index == 0))
    for u in units:
        if isinstance(u.get("cluster"), Mapping):
            lines.append(cluster_line(str(u["unit"]), u["cluster"]))
    return lines


_MIN_NEXT = 12
"""Columns the NEXT column keeps when even the fixed columns do not fit."""


def _fit(widths: list[int], width: int | None) -> list[int]:
    """The column widths, with NEXT narrowed when the columns before LAST EVENT leave it
    less than `_MIN_LAST` of the terminal's `width`."""
    if width is None:
        return widths
    used = sum(widths) + 2 * len(widths)
    over = used + _MIN_LAST - width
    if over > 0:
        widths = [*widths[:-1], max(widths[-1] - over, min(widths[-1], _MIN_NEXT))]
    return widths


def _row(row: Sequence[str], widths: list[int], term: Terminal, *, header: bool) -> str:
    """One row: every column cut and padded to its width, the last event to what the
    terminal has left (whole when there is no terminal)."""
    cells = [_cut(cell, w) for cell, w in zip(row, widths, strict=False)]
    last = row[-1]
    if term.width is not None:
        last = _cut(last, max(term.width - sum(widths) - 2 * len(widths), _MIN_LAST))
    padded = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
    plain = "  ".join([*padded, last]).rstrip()
    if term.width is not None and len(plain) > term.width:
        return _cut(plain, term.width)  # a very narrow terminal: the row's start, plain
    if header:
        return term.paint(("  ".join([*padded, last])).rstrip(), "bold")
    health = cells[1]
    padded[1] = term.paint(health, _STYLE_OF_CONDITION.get(health)) + " " * (
        widths[1] - len(health)
    )
    return "  ".join([*padded, last]).rstrip()


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(room - 1, 0)] + "\u2026"


def _guard_lines(guard: Mapping[str, Any], term: Terminal) -> list[str]:
    lines: list[str] = []
    if guard.get("frozen"):
        left = guard.get("frozen_for_s")
        until = f" for {human_duration(left)}" if isinstance(left, int | float) else ""
        text = (
            f"automation frozen{until}: the repair budget is spent "
            "(`host-supervisor resume --all` thaws it)"
        )
        lines.append(term.paint(text, "red"))
    if guard.get("breaker") not in (None, "closed"):
        left = guard.get("breaker_open_for_s")
        until = f", closes in {human_duration(left)}" if isinstance(left, int | float) else ""
        lines.append(term.paint(f"circuit breaker {guard['breaker']}{until}", "yellow"))
    if guard.get("paused_all"):
        lines.append(term.paint("every unit is paused (`host-supervisor resume --all`)", "yellow"))
    return lines


def cluster_line(unit: str, section: Mapping[str, Any]) -> str:
    """`db.service: holder here, token 42, lease 3s left; views: db2 standby`."""
    role, holder = section.get("role"), section.get("holder")
    text = f"{unit}: {role} here"
    if role != "holder":
        text += f", held by {holder}" if holder else ", held by nobody"
    if section.get("token"):
        text += f", token {section['token']}"
    if isinstance(section.get("lease_left_s"), int | float):
        text += f", lease {human_duration(section['lease_left_s'])} left"
    views = section.get("hosts") or {}
    others = [f"{h} {v.get('role')}" for h, v in sorted(views.items()) if isinstance(v, Mapping)]
    if others:
        text += "; views: " + ", ".join(others)
    if section.get("unregistered"):
        text += "; warning: never registered: " + ", ".join(section["unregistered"])
    if section.get("etcd_error"):
        text += f"; etcd: {section['etcd_error']}"
    return text


def history_line(entry: Mapping[str, Any], term: Terminal | None = None) -> str:
    """`2026-11-28 07:51:13  web.service   action    restart: done`, in local time."""
    when = datetime.fromtimestamp(float(entry["time"])).strftime("%Y-%m-%d %H:%M:%S")
    unit = entry.get("unit") or "-"
    kind = str(entry.get("kind", ""))
    shown = kind if term is None else term.paint(kind, _KIND_STYLE.get(kind))
    return f"{when}  {unit:<24} {shown}{' ' * max(9 - len(kind), 0)} {entry.get('message', '')}"


_KIND_STYLE = {"action": "bold", "alert": "red", "guard": "yellow", "operator": "bold"}
