"""The cluster machine's vocabulary: roles, the spec and state of one clustered unit,
and the events it is fed and the actions it decides (`cluster.py` holds its rules)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RANK_STEP = 0.5
"""A standby waits this long per host before it in the preference order that is up,
so the most preferred one wins the race for a free key without a round of failures."""
HANDOVER_WAIT = 2.0
"""On an operator's handover, the other standbys leave the named host this head start."""
RETRY = 1.0
"""After a transaction that could not be made, a standby tries again this much later."""


class Role(Enum):
    WAITING = "waiting"
    """No word from etcd yet: the unit is not started here."""
    STANDBY = "standby"
    """Another host holds the unit, or nobody does and this host's turn has not come."""
    ACQUIRING = "acquiring"
    """Our create transaction is in flight."""
    RECLAIMING = "reclaiming"
    """The key names this host from before a restart: is its lease still alive?"""
    HOLDER = "holder"
    """This host holds the key and runs the unit."""
    RELEASING = "releasing"
    """Giving the unit up: stopping it, then deleting the key."""
    FENCED = "fenced"
    """The lease was lost: the unit is stopped; waiting for etcd to show the key gone."""


@dataclass(frozen=True)
class ClusterSpec:
    unit: str
    me: str
    hosts: tuple[str, ...]
    ttl: float
    failback: bool = False
    hold_off: float = 30.0
    release_on: str = "exhausted"

    @property
    def margin(self) -> float:
        """How long before etcd could expire the lease this host fences itself."""
        return max(1.0, self.ttl / 5)

    @property
    def silent_after(self) -> float:
        """A holder whose key has not been written for this long (as a standby saw it)
        has fenced itself: it stops `margin` before, counting from a write it sent before
        the standby saw it. Its key may then be deleted, without waiting for etcd to
        expire a lease its new leader refreshed to a full TTL when it took office."""
        return self.ttl

    @property
    def eligible(self) -> bool:
        return self.me in self.hosts


@dataclass(frozen=True)
class ClusterState:
    role: Role = Role.WAITING
    holder: str | None = None
    """Who holds the key, as last seen (None: nobody)."""
    token: int = 0
    """The key's create revision as last seen; this host's fencing token while it holds."""
    lease: int = 0
    """This host's lease while acquiring, holding or releasing (0: none)."""
    deadline: float = 0.0
    """While holding: when the unit must be stopped if no keepalive was acknowledged."""
    renewed_at: float | None = None
    """When the last acknowledged keepalive was sent."""
    renew_failures: int = 0
    since: float = 0.0
    """When the role last changed (for a holder: when it took the unit)."""
    released_at: float | None = None
    alive: tuple[str, ...] = ()
    """Hosts whose daemons are registered in etcd."""
    last_holder: str | None = None
    """Who held the key before it went (excluded from the race for it)."""
    handover_to: str | None = None
    try_at: float | None = None
    """When a standby tries to take the free key."""
    etcd_error: str = ""
    revision: int = 0
    """The newest etcd revision the machine has heard of (views older are stale)."""
    beat: int = 0
    """The holder's key's mod revision as last seen (it moves with each of its beats)."""
    beat_seen_at: float | None = None
    """When this host saw `beat` first: the holder was alive a moment before."""
    holder_beats: bool = False
    """The holder writes its key every ttl/3 (daemons before that did not: never evicted)."""
    evict_tries: int = 0
    """Deletes of the holder's key tried since its last beat (their answers come by the
    watch)."""
    evict_at: float | None = None
    """After a try: when the next one is due."""


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The unit's keys as etcd has them now (a read, or after a watch event)."""

    holder: str | None
    token: int = 0
    lease: int = 0
    alive: tuple[str, ...] = ()
    handover_to: str | None = None
    revision: int = 0
    """etcd's revision this view is of (0: unknown); an older view than one the machine
    has acted on is stale and ignored."""
    beat: int = 0
    """The key's mod revision: its holder writes it every ttl/3."""
    holder_beats: bool = False
    """The holder's daemon says it writes its key (its published view)."""


@dataclass(frozen=True)
class EtcdLost:
    error: str


@dataclass(frozen=True)
class Acquired:
    """Our create transaction ran: `ok` if it created the key (`token`, bound to `lease`,
    granted or kept alive at `sent_at`), else who holds it."""

    ok: bool
    holder: str | None
    token: int
    lease: int
    sent_at: float
    revision: int = 0
    """The transaction's revision."""


@dataclass(frozen=True)
class AcquireFailed:
    error: str


@dataclass(frozen=True)
class Renewed:
    """A keepalive sent at `sent_at` was answered; `ttl_left` <= 0: the lease is gone."""

    sent_at: float
    ttl_left: float


@dataclass(frozen=True)
class RenewFailed:
    error: str


@dataclass(frozen=True)
class Tick:
    """A timer this machine asked for (`Wake`) fired."""


@dataclass(frozen=True)
class Exhausted:
    """This host cannot repair the unit: its ladder gave up, or a hold keeps it down."""

    detail: str
    why: str = "its repairs are exhausted"


@dataclass(frozen=True)
class Unhealthy:
    detail: str


@dataclass(frozen=True)
class Stopped:
    """The stop this machine asked for is done (or failed: the unit is down either way,
    or systemd's own BindsTo takes it down with the lease unit)."""


@dataclass(frozen=True)
class Handover:
    to_host: str
    caller: str = ""


Event = (
    Seen
    | EtcdLost
    | Acquired
    | AcquireFailed
    | Renewed
    | RenewFailed
    | Tick
    | Exhausted
    | Unhealthy
    | Stopped
    | Handover
)


# -- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Acquire:
    """Grant a lease of `ttl` seconds and create the key bound to it, if absent."""

    ttl: float


@dataclass(frozen=True)
class Start:
    """Hand the unit its fencing token (drop-in environment and file), then start it."""

    token: int


@dataclass(frozen=True)
class Fence:
    """The lease unit may let the unit run until `deadline` (monotonic)."""

    deadline: float


@dataclass(frozen=True)
class KeepAlive:
    """Every ttl/3, renew `lease` and write the key again if it is still `token`'s (a
    beat the standbys see); say how each round went."""

    lease: int
    ttl: float
    token: int


@dataclass(frozen=True)
class Drop:
    """Stop renewing the lease (it is released, lost, or revoked)."""


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class Release:
    """Delete the key if it is still ours (`token`), revoke `lease`; leave a handover
    note for `to_host` first when an operator named one."""

    token: int
    lease: int
    to_host: str | None = None


@dataclass(frozen=True)
class Evict:
    """Delete the key if it is still `token`'s and unwritten since `beat`."""

    token: int
    beat: int
    holder: str


@dataclass(frozen=True)
class Wake:
    at: float | None


@dataclass(frozen=True)
class Say:
    """Log and record it; `alert` (a severity name) also tells a person."""

    kind: str
    message: str
    level: str = "info"
    alert: str | None = None


Action = Acquire | Start | Fence | KeepAlive | Drop | Stop | Release | Evict | Wake | Say
Result = tuple[ClusterState, list[Action]]
