"""Health: what a unit's observed state means for supervision. Pure, no I/O.

The D-Bus snapshot of a unit is reduced to one `Condition`. Only `UNHEALTHY`
starts or continues a repair; `STOPPED` is an operator's (or a clean) stop that
we respect the way systemd's `Restart=on-failure` does; `TRANSIENT` covers the
moments when systemd itself is busy with the unit (starting, stopping, or
about to restart it under its own `Restart=`), which we leave alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Condition(enum.Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"
    TRANSIENT = "transient"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class UnitView:
    """The part of a unit's systemd state that health decisions read."""

    load_state: str
    active_state: str
    sub_state: str
    result: str


_MISSING_LOAD_STATES = frozenset({"not-found", "masked", "error", "bad-setting"})


def unit_condition(view: UnitView) -> Condition:
    """Classify a unit from its systemd states alone."""
    if view.load_state in _MISSING_LOAD_STATES:
        return Condition.MISSING
    match view.active_state:
        case "active" | "reloading":
            return Condition.HEALTHY
        case "failed":
            return Condition.UNHEALTHY
        case "inactive":
            # A service's Result stays at its failure until the next start; an
            # inactive unit whose last run did not succeed was not stopped cleanly.
            if view.result in ("", "success"):
                return Condition.STOPPED
            return Condition.UNHEALTHY
        case "activating" | "deactivating":
            return Condition.TRANSIENT
        case _:
            return Condition.UNKNOWN


def describe(view: UnitView) -> str:
    """A short human description, e.g. `failed/failed (signal)`."""
    text = f"{view.active_state or '?'}/{view.sub_state or '?'}"
    if view.result and view.result != "success":
        text += f" ({view.result})"
    return text
