"""The words people read, and the names alerts are keyed by, defined once.

Alert kinds are what dedup and recovery notices match on (`resolves=`), so they
are an enum, not strings spread over the code. Verbs are spelt here, not built
from rung names ("restoreing").
"""

from __future__ import annotations

import enum


class AlertKind(enum.Enum):
    """What an alert is about; with the unit, the key that dedup compares."""

    DAEMON = "daemon"
    UNHEALTHY = "unhealthy"
    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"
    PROTECTED = "protected"
    FLAPPING = "flapping"
    SETTLED = "settled"
    FROZEN = "frozen"
    THAWED = "thawed"
    ACTION = "action"
    RESULT = "result"
    FAILOVER_STARTED = "failover-started"
    FAILOVER_DONE = "failover-done"
    BACKUP_FAILED = "backup-failed"
    FAILOVER_FAILED = "failover-failed"
    FAILBACK_STARTED = "failback-started"
    FAILBACK_DONE = "failback-done"
    FAILBACK_FAILED = "failback-failed"
    MANUAL_NEEDED = "manual-needed"
    CLUSTER_TAKEN = "cluster-taken"
    CLUSTER_FENCED = "cluster-fenced"
    CLUSTER_RELEASED = "cluster-released"

    def numbered(self, rung: str, attempt: int) -> str:  # rung: a Rung (a str)
        """`action:restart#2`: each action and result is news, never a repeat."""
        return f"{self.value}:{rung}#{attempt}"


UNIT_PROBLEMS = (AlertKind.UNHEALTHY, AlertKind.EXHAUSTED, AlertKind.PROTECTED)
"""What a unit's recovery resolves."""

FAILOVER_PROBLEMS = (AlertKind.FAILOVER_FAILED, AlertKind.MANUAL_NEEDED)
"""What a finished failover or failback resolves."""

_DOING = {
    "restart": "restarting",
    "reload": "reloading",
    "restore": "restoring",
    "start": "starting",
    "stop": "stopping",
}


def doing(verb: str) -> str:
    """`restart` -> `restarting`, `stop` -> `stopping`: for log lines, spelt out."""
    return _DOING.get(verb, f"{verb}: running")


def values(kinds: tuple[AlertKind, ...]) -> tuple[str, ...]:
    return tuple(kind.value for kind in kinds)
