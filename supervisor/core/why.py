"""`host-supervisor why UNIT`: the causal chains of a unit's last decisions, built from
its history alone (event -> decision -> action -> result -> outcome).

A chain starts where something happened to the unit (it failed, a critical check went
bad, it stopped or disappeared) and runs until the next such event; inside it come the
holds, the ladder's repairs with the rule that chose them, their results, failovers,
operators' requests and the outcome. Each action row carries its own cause and rule
(`supervisor.core.reasons`), so an action whose earlier rows fell out of the history
window still explains itself. Pure: history entries in, chains out; the caller formats
times (it knows the time zone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

EVENT = "event"
DECISION = "decision"
ACTION = "action"
RESULT = "result"
OUTCOME = "outcome"
OPERATOR = "operator"

_BAD_CHECK_STATES = ("critical", "warning", "unknown")
_TRIGGERS = ("unhealthy", "missing")
_OUTCOMES = ("healthy", "degraded")
_FAILOVER_DECISIONS = ("failover-started", "failback-started")


@dataclass(frozen=True)
class Link:
    """One step of a chain; `repeats` counts identical steps folded into it (a hold
    asked again every 30 s), the last of them at `last_time`."""

    time: float
    role: str  # event | decision | action | result | outcome | operator
    text: str
    rule: str = ""  # for an action: the rule that chose it
    timed: bool = False  # the one-line form says when: "healthy at 12:03:09"
    repeats: int = 1
    last_time: float | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"time": self.time, "role": self.role, "text": self.text}
        if self.rule:
            doc["rule"] = self.rule
        if self.repeats > 1:
            doc["repeats"] = self.repeats
            doc["last_time"] = self.last_time
        return doc


@dataclass
class Chain:
    unit: str
    links: list[Link] = field(default_factory=list)

    @property
    def started(self) -> float:
        return self.links[0].time

    @property
    def actions(self) -> int:
        return sum(1 for link in self.links if link.role == ACTION)

    def add(self, link: Link) -> None:
        last = self.links[-1] if self.links else None
        if last is not None and (last.role, last.text) == (link.role, link.text):
            self.links[-1] = replace(last, repeats=last.repeats + 1, last_time=link.time)
            return
        self.links.append(link)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "started": self.started,
            "actions": self.actions,
            "links": [link.to_dict() for link in self.links],
        }


def explain(unit: str, entries: Iterable[Mapping[str, Any]], last: int = 3) -> list[Chain]:
    """The unit's last `last` chains, oldest first, from its history entries (oldest
    first, as `/v1/history` returns them: `time`, `kind`, `message`, `data`)."""
    chains: list[Chain] = []
    bad_checks: dict[str, Link] = {}  # critical checks failing since the last chain began
    for entry in entries:
        if entry.get("unit") != unit:
            continue
        kind, message = str(entry.get("kind", "")), str(entry.get("message", ""))
        data = entry.get("data") or {}
        if not isinstance(data, Mapping):
            data = {}
        time = float(entry.get("time") or 0.0)
        current = chains[-1] if chains else None
        if kind == "check":
            name, link = _check_link(time, message, data)
            bad_checks.pop(name, None)
            if link is not None:
                bad_checks[name] = link
            continue
        if kind == "health" and message.startswith("stopped cleanly") and _acting(current):
            continue  # the repair in flight stopped it on its way to start it again
        if kind == "health" and _is_trigger(message, data):
            chain = Chain(unit, list(bad_checks.values())[-3:])
            bad_checks = {}
            chain.add(Link(time, DECISION if chain.links else EVENT, _health_text(message)))
            if message.startswith("stopped cleanly"):
                chain.add(Link(time, DECISION, "not repaired: a clean stop is respected"))
            if current is not None and _decided_at(current, time):
                # The failover machine decides in the same step, and is recorded first.
                chain.links.extend(current.links)
                chains[-1] = chain
            else:
                chains.append(chain)
            continue
        link = _link(time, kind, message, data)
        if link is None:
            continue
        if kind == "health":
            bad_checks = {}
        if current is None:
            if link.role in (RESULT, OUTCOME):
                continue  # what it answers is no longer in the history
            current = Chain(unit)
            chains.append(current)
        if link.role == ACTION and not _has_cause(current):
            reason = str(data.get("reason") or "unknown (not recorded)")
            current.add(Link(time, EVENT, reason))
        current.add(link)
    return [chain for chain in chains if chain.links][-last:] if last > 0 else []


def _acting(chain: Chain | None) -> bool:
    """An action of the chain has no result yet."""
    acting = False
    for link in chain.links if chain is not None else ():
        if link.role in (ACTION, RESULT):
            acting = link.role == ACTION
    return acting


def _decided_at(chain: Chain, time: float) -> bool:
    """The chain is only decisions taken at `time`, with no event of its own yet."""
    return all(link.time == time and link.role == DECISION for link in chain.links)


def _has_cause(chain: Chain) -> bool:
    return any(link.role in (EVENT, DECISION) for link in chain.links)


def _is_trigger(message: str, data: Mapping[str, Any]) -> bool:
    """A health row that starts a chain: the unit failed, went unhealthy, disappeared
    or was stopped by someone (a stop inside a restart is no news)."""
    return _condition(message, data) in _TRIGGERS or message.startswith("stopped cleanly")


def _condition(message: str, data: Mapping[str, Any]) -> str:
    """A health row's condition; rows written before it was recorded say it in words."""
    if "condition" in data:
        return str(data["condition"])
    if message.startswith(("failed:", "unhealthy:")):
        return "unhealthy"
    if message.startswith("stopped cleanly"):
        return "stopped"
    if message == "disappeared":
        return "missing"
    return message.split(":")[0]


def _health_text(message: str) -> str:
    if message.startswith("failed: "):
        return f"unit failed ({message.removeprefix('failed: ')}) -> unhealthy"
    if message.startswith("unhealthy: "):
        return f"unhealthy ({message.removeprefix('unhealthy: ')})"
    return message


def _check_link(time: float, message: str, data: Mapping[str, Any]) -> tuple[str, Link | None]:
    """The check's name, and its event when a critical check went bad (rows recorded
    before `critical` was count as critical)."""
    name = str(data.get("check", message.split(":")[0]))
    state = str(data.get("state", ""))
    if state not in _BAD_CHECK_STATES or data.get("critical") is False:
        return name, None
    detail = message.split(": ", 2)[-1] if message.count(": ") >= 2 else ""
    text = f"{name} check {state}"
    if "threshold" in data:
        text += f" after {data['threshold']} result(s) in a row (threshold {data['threshold']})"
    if detail:
        text += f": {detail}"
    return name, Link(time, EVENT, text)


def _link(time: float, kind: str, message: str, data: Mapping[str, Any]) -> Link | None:
    """The link of one history row inside a chain, or None for rows that are no step
    of a decision (snapshots taken, check recoveries, daemon notes)."""
    match kind:
        case "action":
            return Link(time, ACTION, _action_text(message, data), str(data.get("rule", "")))
        case "result":
            return Link(time, RESULT, _result_text(message, data))
        case "health":
            condition = _condition(message, data)
            return Link(time, OUTCOME, condition, timed=True) if condition in _OUTCOMES else None
        case "recovery" | "alert":
            notice = str(data.get("notice", message.split(":")[0]))
            role = DECISION if notice in ("held", "skipped", "protected", "flapping") else OUTCOME
            if notice == "no longer flapping":
                role = DECISION
            return Link(time, role, message)
        case "failover":
            action = str(data.get("action", ""))
            return Link(time, DECISION if action in _FAILOVER_DECISIONS else OUTCOME, message)
        case "operator":
            return Link(time, OPERATOR, f"operator: {message}")
        case "cluster":
            return Link(time, DECISION, f"cluster: {message}")
    return None


def _action_text(message: str, data: Mapping[str, Any]) -> str:
    if "rung" not in data:
        return message
    text = f"ladder rung {data.get('rung_index', '?')}"
    if isinstance(data.get("ladder"), list):
        text += f" of {len(data['ladder'])}"
    text += f": {data['rung']} (attempt {data.get('attempt', '?')}"
    text += f" of {data.get('max_attempts', '?')}"
    if data.get("attempt") != data.get("max_attempts") and "cooldown_s" in data:
        text += f", cooldown {_seconds(data['cooldown_s'])}"
    text += ")"
    if data.get("dry_run"):
        text += " (dry run: not done)"
    return text


def _result_text(message: str, data: Mapping[str, Any]) -> str:
    took = data.get("took_ms")
    if isinstance(took, int | float) and "rung" in data:
        return f"{message} ({took:.0f}ms)" if took < 1000 else f"{message} ({took / 1000:.1f}s)"
    return message


def _seconds(value: object) -> str:
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return f"{number:g}s"


def one_line(chain: Chain, clock: Callable[[float], str]) -> str:
    """The chain as one line: `12:03:04 http check ... -> unhealthy -> ... -> healthy at
    12:03:09`; `clock` formats a time."""
    parts: list[str] = []
    for index, link in enumerate(chain.links):
        text = link.text
        if link.timed:
            text = f"{text} at {clock(link.time)}"
        elif index == 0:
            text = f"{clock(link.time)} {text}"
        if link.repeats > 1:
            text += f" (x{link.repeats})"
        parts.append(text)
    return " -> ".join(parts)


def render(unit: str, chains: Sequence[Chain], clock: Callable[[float], str]) -> str:
    """The chains as a person reads them: each link on its own line under its time."""
    if not chains:
        return f"{unit}: no decisions in the history\n"
    lines = [f"{unit}: the last {len(chains)} chain(s) of events and decisions, oldest first"]
    for chain in chains:
        lines.append("")
        for index, link in enumerate(chain.links):
            arrow = "   " if index == 0 else "-> "
            text = link.text
            if link.repeats > 1 and link.last_time is not None:
                text += f" ({link.repeats} times, the last at {clock(link.last_time)})"
            lines.append(f"{clock(link.time)}  {arrow}{text}")
    return "\n".join(lines) + "\n"
