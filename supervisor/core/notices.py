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
    ROLLBACK = "rollback"
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


class MessageId(enum.Enum):
    """journald MESSAGE_ID= of the records people search for (`journalctl MESSAGE_ID=...`),
    each explained in the shipped catalog (packaging/host-supervisor.catalog). Generated
    once (128 random bits, as `systemd-id128 new` does) and never changed: scripts and
    monitoring match on them."""

    DETECTED = "e2d9979880f74a768a8d2f6386b877fd"  # a unit turned unhealthy
    REPAIRED = "a3a4abcc5bbc47fdb8fed417a8924ba7"  # healthy again after a repair
    EXHAUSTED = "b239ab4d9fbf489eb35764f396bc63d8"  # the ladder gave up
    FAILED_OVER = "ac43b4e763744b7db7bc9532dfc9e375"  # a backup serves in place of the unit
    FAILED_BACK = "1041e927b3fe4e6eb8694f249ae37d47"  # the unit serves again
    FROZEN = "1943f4a1b9414b44a7fee2095acda4af"  # the guard froze automation
    THAWED = "beda9c506f894efd9c06abc99ab22515"  # automation resumed
