"""One incident, one message: failures of units that depend on a failed unit are its
symptoms, not incidents of their own. Pure: no I/O, no clock.

The dependency graph comes from systemd (each supervised unit's `Requires=`,
`BindsTo=`, `PartOf=` and `After=`, read by the shell) as data: `Graph` maps a unit
to the units it names. A unit that fails within `window` of a supervised unit it
depends on, directly or through other supervised units, before or after it, is a
symptom of that unit's incident; the incident's root is the unit whose failure the
others follow. Here are the values and the words; `incident_host` applies them
inside the host reducer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from supervisor.core.health import Condition

Graph = Mapping[str, frozenset[str]]
"""unit -> the units its Requires=, BindsTo=, PartOf= and After= name."""

WELL = (Condition.HEALTHY, Condition.DEGRADED)  # what counts as recovered
SHOWN = 10  # symptoms named in a message; the rest are counted


@dataclass(frozen=True)
class Incident:
    """A root unit's failure and the dependents that failed with it."""

    root: str
    since: float
    """When the root failed."""
    symptoms: tuple[str, ...] = ()
    """In the order they were classified."""
    alerted: bool = False
    """The problem message went out (a recovery is then worth sending)."""
    root_healthy_at: float | None = None
    """When the root was last seen healthy again; None while it is not."""
    why: str = "failed"
    """How the root failed, as its first message says: `failed (exit-code)`."""
    stopped: tuple[str, ...] = ()
    """The symptoms systemd stopped with the root (BindsTo=) rather than saw fail: once
    the root is back, they are started again if nothing else has."""

    def with_symptoms(self, units: Iterable[str]) -> Incident:
        added = tuple(unit for unit in units if unit not in self.symptoms and unit != self.root)
        return replace(self, symptoms=self.symptoms + added) if added else self


def dependencies_of(graph: Graph, unit: str, supervised: Iterable[str]) -> frozenset[str]:
    """The supervised units `unit` depends on, directly or through supervised units."""
    known = frozenset(supervised)
    seen: set[str] = set()
    todo = [unit]
    while todo:
        for name in graph.get(todo.pop(), frozenset()):
            if name in known and name not in seen and name != unit:
                seen.add(name)
                todo.append(name)
    return frozenset(seen)


def dependents_of(graph: Graph, unit: str, supervised: Iterable[str]) -> frozenset[str]:
    """The supervised units that depend on `unit`, directly or through supervised units."""
    known = frozenset(supervised)
    return frozenset(
        name for name in known if name != unit and unit in dependencies_of(graph, name, known)
    )


def root_of(incidents: Mapping[str, Incident], unit: str) -> str | None:
    """The root of the open incident `unit` is part of (as root or symptom); None if none."""
    if unit in incidents:
        return unit
    for root, incident in incidents.items():
        if unit in incident.symptoms:
            return root
    return None


def symptom_of(incidents: Mapping[str, Incident], unit: str) -> str | None:
    """The root whose symptom `unit` is; None if it is no symptom."""
    for root, incident in incidents.items():
        if unit in incident.symptoms:
            return root
    return None


def listed(units: Iterable[str]) -> str:
    """`a, b, c` or, past `SHOWN` names, `a, ..., j (+40 more)`."""
    names = list(units)
    shown = ", ".join(names[:SHOWN])
    return shown + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def dependents_word(count: int) -> str:
    return "1 dependent" if count == 1 else f"{count} dependents"


def problem_title(incident: Incident, why: str) -> str:
    """`db.service failed (exit-code); 50 dependents failed with it: app1, ... (+40 more)`."""
    title = f"{incident.root} {why}"
    if incident.symptoms:
        count = dependents_word(len(incident.symptoms))
        how = "failed or stopped" if incident.stopped else "failed"
        title += f"; {count} {how} with it: {listed(incident.symptoms)}"
    return title


def recovery_title(incident: Incident, tried: Iterable[str], unhealthy: Iterable[str]) -> str:
    """`db.service recovered after restart; 50 dependents healthy again`."""
    rungs = list(tried)
    how = f"after {', '.join(rungs)}" if rungs else "without a repair"
    title = f"{incident.root} recovered {how}"
    still = list(unhealthy)
    healthy = len(incident.symptoms) - len(still)
    if incident.symptoms:
        title += f"; {dependents_word(healthy)} healthy again"
    if still:
        title += f", {len(still)} still unhealthy: {listed(still)}"
    return title
