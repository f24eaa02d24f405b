"""Who runs a clustered unit: a pure machine per unit, fed what etcd says and what this
host's lease and unit do, deciding when to take the unit, keep it, fence it and give
it up. etcd is an adapter (`supervisor.etcd`); the shell performs every action.

The rules, as etcd's own notes put them: the leader key is created in a transaction
that requires it not to exist, bound to a lease; its create revision is the fencing
token. A standby starts the unit only after its own transaction succeeded, never on a
watch event alone. The holder counts its fence deadline on the local monotonic clock
from the last keepalive it *sent* that etcd acknowledged (`ttl - margin` later), never
from etcd's view, and stops the unit when it passes. A holder that gives the unit up
stops it first and deletes the key after, so the next host never overlaps it.

`RULES` is the transition table; the README shows it (`render_table`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

__all__ = [
    "Acquire",
    "AcquireFailed",
    "Acquired",
    "ClusterSpec",
    "ClusterState",
    "Drop",
    "EtcdLost",
    "Exhausted",
    "Fence",
    "Handover",
    "KeepAlive",
    "Release",
    "RenewFailed",
    "Renewed",
    "Role",
    "Say",
    "Seen",
    "Start",
    "Stop",
    "Stopped",
    "Tick",
    "Unhealthy",
    "Wake",
    "render_table",
    "step",
]

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


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The unit's keys as etcd has them now (a read, or after a watch event)."""

    holder: str | None
    token: int = 0
    lease: int = 0
    alive: tuple[str, ...] = ()
    handover_to: str | None = None


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
    detail: str


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
    """Renew `lease` every ttl/3 and say how each renewal went."""

    lease: int
    ttl: float


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
class Wake:
    at: float | None


@dataclass(frozen=True)
class Say:
    """Log and record it; `alert` (a severity name) also tells a person."""

    kind: str
    message: str
    level: str = "info"
    alert: str | None = None


Action = Acquire | Start | Fence | KeepAlive | Drop | Stop | Release | Wake | Say
Result = tuple[ClusterState, list[Action]]


# -- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    roles: tuple[Role, ...]
    event: type
    does: str
    handler: Callable[[ClusterSpec, ClusterState, object, float], Result] = field(repr=False)
    label: str = ""
    """How the table names `roles` when listing them would be too long."""


def _to(state: ClusterState, role: Role, now: float, **changes: object) -> ClusterState:
    since = now if role is not state.role else state.since
    return replace(state, role=role, since=since, **changes)  # type: ignore[arg-type]


def _turn_delay(spec: ClusterSpec, state: ClusterState, now: float) -> float | None:
    """How long this host waits before it tries to take the free key (None: never)."""
    if not spec.eligible:
        return None
    up = [h for h in spec.hosts if (h == spec.me or h in state.alive) and h != state.last_holder]
    if spec.me not in up:  # we held it last: everyone else goes first
        up.append(spec.me)
    delay = up.index(spec.me) * RANK_STEP
    if state.handover_to is not None and state.handover_to != spec.me:
        delay += HANDOVER_WAIT
    elif state.handover_to == spec.me:
        delay = 0.0
    if state.released_at is not None:  # even alone: a unit given up does not bounce back
        delay = max(delay, state.released_at + spec.hold_off - now)
    return max(0.0, delay)


def _standby(spec: ClusterSpec, state: ClusterState, seen: Seen, now: float) -> Result:
    """What a host that does not hold the unit makes of the keys."""
    previous = state.holder
    last = state.holder if state.holder is not None else state.last_holder
    state = replace(
        state,
        holder=seen.holder,
        token=seen.token,
        alive=seen.alive,
        handover_to=seen.handover_to,
        etcd_error="",
        last_holder=last if seen.holder is None else seen.holder,
    )
    actions: list[Action] = []
    if seen.holder == spec.me and seen.lease:
        state = _to(state, Role.RECLAIMING, now, lease=seen.lease, try_at=None)
        actions += [
            Say("cluster", f"etcd names this host as holder (token {seen.token}): renewing"),
            KeepAlive(seen.lease, spec.ttl),
            Wake(None),
        ]
        return state, actions
    was_waiting = state.role is Role.WAITING
    if was_waiting:
        actions.append(Say("cluster", f"in touch with etcd: {_describe_holder(seen)}"))
        state = _to(state, Role.STANDBY, now)
    if seen.holder is not None and (was_waiting or seen.holder != previous):
        # Whatever runs here without the key stops (one left running from before).
        actions.append(Stop(f"standby: {seen.holder} holds it"))
    elif seen.holder is None and was_waiting:
        actions.append(Stop("nobody holds it yet: not run here until this host does"))
    if seen.holder is not None:
        return replace(state, try_at=None), [*actions, Wake(None)]
    if state.try_at is not None:
        return state, actions
    delay = _turn_delay(spec, state, now)
    if delay is None:
        return state, [*actions, Wake(None)]
    return replace(state, try_at=now + delay), [*actions, Wake(now + delay)]


def _describe_holder(seen: Seen) -> str:
    if seen.holder is None:
        return "nobody holds the unit"
    return f"{seen.holder} holds the unit (token {seen.token})"


def _on_seen(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Seen)
    return _standby(spec, state, event, now)


def _waiting_lost(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, EtcdLost)
    actions: list[Action] = []
    if not state.etcd_error:
        actions.append(
            Say("cluster", f"etcd unreachable: {event.error}; unit not started here", "error")
        )
        if state.role is Role.WAITING:
            actions.append(Wake(now + spec.ttl))  # a unit left running is stopped then
    return replace(state, etcd_error=event.error), actions


def _waiting_tick(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    return state, [Stop("no word from etcd: not this host's to run"), Wake(None)]


def _standby_lost(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, EtcdLost)
    if state.etcd_error:
        return replace(state, etcd_error=event.error), []
    return replace(state, etcd_error=event.error), [
        Say("cluster", f"etcd unreachable: {event.error}", "warning")
    ]


def _try(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    if state.try_at is None or now < state.try_at:
        return state, [Wake(state.try_at)]
    if state.holder is not None:
        return replace(state, try_at=None), [Wake(None)]
    state = _to(state, Role.ACQUIRING, now, try_at=None)
    return state, [Acquire(spec.ttl), Wake(None)]


def _took(
    spec: ClusterSpec,
    state: ClusterState,
    token: int,
    lease: int,
    sent: float,
    now: float,
    how: str,
) -> Result:
    deadline = sent + spec.ttl - spec.margin
    state = _to(
        state,
        Role.HOLDER,
        now,
        holder=spec.me,
        token=token,
        lease=lease,
        deadline=deadline,
        renewed_at=sent,
        renew_failures=0,
        try_at=None,
        handover_to=None,
        released_at=None,
        etcd_error="",
    )
    message = f"{how} {spec.unit} (fencing token {token}); starting it"
    return state, [
        Say(
            "cluster",
            message,
            "warning" if how == "took over" else "info",
            "warning" if how == "took over" else None,
        ),
        Fence(deadline),
        KeepAlive(lease, spec.ttl),
        Start(token),
        Wake(deadline),
    ]


def _acquired(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Acquired)
    if event.ok:
        how = "took over" if state.last_holder not in (None, spec.me) else "acquired"
        return _took(spec, state, event.token, event.lease, event.sent_at, now, how)
    state = _to(state, Role.STANDBY, now, holder=event.holder, token=event.token, try_at=None)
    return state, [Say("cluster", f"{event.holder} took the unit first (token {event.token})")]


def _acquire_failed(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, AcquireFailed)
    state = _to(state, Role.STANDBY, now, try_at=now + RETRY)
    return state, [
        Say("cluster", f"could not try for the unit: {event.error}", "warning"),
        Wake(now + RETRY),
    ]


def _reclaimed(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Renewed)
    if event.ttl_left <= 0:
        return _fence(spec, state, "its lease expired while the daemon was away", now)
    return _took(spec, state, state.token, state.lease, event.sent_at, now, "kept")


def _reclaim_failed(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, RenewFailed)
    return _fence(spec, state, f"its lease could not be renewed: {event.error}", now)


def _fence(spec: ClusterSpec, state: ClusterState, why: str, now: float) -> Result:
    state = _to(state, Role.FENCED, now, try_at=None, lease=0)
    message = f"fenced: {spec.unit} stopped on this host: {why}"
    return state, [
        Drop(),
        Stop(f"fenced: {why}"),
        Say("fence", message, "error", "critical"),
        Wake(None),
    ]


def _renewed(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Renewed)
    if event.ttl_left <= 0:
        return _fence(spec, state, "etcd says its lease is gone", now)
    deadline = max(state.deadline, event.sent_at + spec.ttl - spec.margin)
    actions: list[Action] = []
    if state.renew_failures:
        actions.append(Say("lease", f"lease renewed after {state.renew_failures} failures"))
    state = replace(state, deadline=deadline, renewed_at=event.sent_at, renew_failures=0)
    return state, [*actions, Fence(deadline), *_holder_wake(spec, state, now)]


def _holder_wake(spec: ClusterSpec, state: ClusterState, now: float) -> list[Action]:
    at = state.deadline
    if _preferred_up(spec, state) is not None:
        at = min(at, max(now, state.since + spec.hold_off))
    return [Wake(at)]


def _renew_failed(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, RenewFailed)
    actions: list[Action] = []
    if state.renew_failures == 0:
        left = max(0.0, state.deadline - now)
        actions.append(
            Say("lease", f"lease renewal failed: {event.error}; fence in {left:.1f}s", "warning")
        )
    return replace(state, renew_failures=state.renew_failures + 1), actions


def _holder_tick(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    if now >= state.deadline:
        since = f"{now - state.renewed_at:.1f}s" if state.renewed_at is not None else "ever"
        return _fence(spec, state, f"no keepalive acknowledged for {since}", now)
    preferred = _preferred_up(spec, state)
    if preferred is not None and now >= state.since + spec.hold_off:
        return _release(spec, state, f"failback to the preferred host {preferred}", preferred, now)
    return state, _holder_wake(spec, state, now)


def _preferred_up(spec: ClusterSpec, state: ClusterState) -> str | None:
    """With failback on: the most preferred host that is up and before this one."""
    if not spec.failback or spec.me not in spec.hosts:
        return None
    for host in spec.hosts[: spec.hosts.index(spec.me)]:
        if host in state.alive:
            return host
    return None


def _holder_seen(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Seen)
    if event.holder != spec.me or event.token != state.token:
        state = replace(state, last_holder=spec.me)
        who = "nobody" if event.holder is None else event.holder
        fenced = _fence(spec, state, f"etcd shows {who} holding the key", now)
        return replace(fenced[0], holder=event.holder, token=event.token), fenced[1]
    state = replace(state, alive=event.alive, etcd_error="")
    return state, _holder_wake(spec, state, now)


def _release(
    spec: ClusterSpec, state: ClusterState, why: str, to: str | None, now: float
) -> Result:
    state = _to(state, Role.RELEASING, now, handover_to=to)
    return state, [
        Say(
            "release",
            f"giving {spec.unit} up: {why}; stopping it, then freeing the key",
            "warning",
            "warning",
        ),
        Stop(f"released: {why}"),
    ]


def _exhausted(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Exhausted)
    return _release(spec, state, f"its repairs are exhausted ({event.detail})", None, now)


def _unhealthy(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Unhealthy)
    if spec.release_on != "unhealthy":
        return state, []
    return _release(spec, state, f"unhealthy ({event.detail})", None, now)


def _handover(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Handover)
    if event.to_host == spec.me or event.to_host not in spec.hosts:
        listed = ", ".join(h for h in spec.hosts if h != spec.me) or "none"
        why = "this host holds it" if event.to_host == spec.me else f"hosts: {listed}"
        return state, [Say("operator", f"handover to {event.to_host} refused: {why}", "warning")]
    by = f" by {event.caller}" if event.caller else ""
    return _release(spec, state, f"handover to {event.to_host}{by}", event.to_host, now)


def _not_holder_handover(
    spec: ClusterSpec, state: ClusterState, event: object, now: float
) -> Result:
    assert isinstance(event, Handover)
    who = state.holder or "nobody"
    return state, [
        Say(
            "operator",
            f"handover refused: this host does not hold {spec.unit} ({who} does)",
            "warning",
        )
    ]


def _released(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    token, lease, to = state.token, state.lease, state.handover_to
    state = _to(
        state,
        Role.STANDBY,
        now,
        holder=None,
        lease=0,
        released_at=now,
        last_holder=spec.me,
        try_at=None,
    )
    return state, [
        Drop(),
        Release(token, lease, to),
        Say("release", f"released {spec.unit} (token {token})"),
        Wake(None),
    ]


def _releasing_tick(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    if now >= state.deadline:  # the stop is under way; the key is etcd's to expire
        return _to(state, Role.FENCED, now, lease=0), [Drop(), Wake(None)]
    return state, [Wake(state.deadline)]


def _fenced_seen(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    assert isinstance(event, Seen)
    if event.holder == spec.me and event.token == state.token and event.lease:
        # Our key outlived our fence (a partition that healed): free it for the others.
        state = replace(state, alive=event.alive)
        return state, [Release(event.token, event.lease, None)]
    state = _to(state, Role.STANDBY, now, try_at=None)
    return _standby(spec, state, event, now)


def _nothing(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    return state, []


ALL = tuple(Role)
_NOT_HOLDING = (Role.WAITING, Role.STANDBY, Role.ACQUIRING, Role.RECLAIMING, Role.FENCED)

RULES: tuple[Rule, ...] = (
    Rule(
        (Role.WAITING, Role.STANDBY),
        Seen,
        "record the keys; a free key is tried after this "
        "host's turn (0.5 s per preferred host up before it; hold_off after a release); the "
        "key naming this host from before a restart is renewed (reclaiming)",
        _on_seen,
    ),
    Rule((Role.WAITING,), EtcdLost, "say so once; the unit is not started here", _waiting_lost),
    Rule(
        (Role.WAITING,),
        Tick,
        "no word from etcd for a TTL: stop a unit left running",
        _waiting_tick,
    ),
    Rule((Role.STANDBY,), EtcdLost, "say so once", _standby_lost),
    Rule((Role.STANDBY,), Tick, "its turn and the key still free: try to create it", _try),
    Rule(
        (Role.ACQUIRING,),
        Acquired,
        "created: hold (fence deadline, keepalives, token, start); else standby",
        _acquired,
    ),
    Rule((Role.ACQUIRING,), AcquireFailed, "standby; try again in 1 s", _acquire_failed),
    Rule(
        (Role.RECLAIMING,),
        Renewed,
        "lease alive: hold (the unit keeps its token); else fence",
        _reclaimed,
    ),
    Rule((Role.RECLAIMING,), RenewFailed, "fence", _reclaim_failed),
    Rule(
        (Role.HOLDER, Role.RELEASING),
        Renewed,
        "move the fence deadline to sent + ttl - margin; a lease etcd no longer has: fence",
        _renewed,
    ),
    Rule(
        (Role.HOLDER, Role.RELEASING), RenewFailed, "say so once; the deadline stays", _renew_failed
    ),
    Rule(
        (Role.HOLDER,),
        Tick,
        "deadline passed: fence (stop the unit); failback due: release",
        _holder_tick,
    ),
    Rule((Role.HOLDER,), Seen, "the key is no longer ours: fence", _holder_seen),
    Rule((Role.HOLDER,), Exhausted, "release: stop the unit, then free the key", _exhausted),
    Rule((Role.HOLDER,), Unhealthy, "with release_on: unhealthy, release", _unhealthy),
    Rule((Role.HOLDER,), Handover, "release to the named host (it goes first)", _handover),
    Rule(
        _NOT_HOLDING,
        Handover,
        "refused: this host does not hold the unit",
        _not_holder_handover,
        "any other",
    ),
    Rule(
        (Role.RELEASING,),
        Stopped,
        "free the key (if still ours), revoke the lease; standby for hold_off",
        _released,
    ),
    Rule((Role.RELEASING,), Tick, "deadline passed while stopping: fenced", _releasing_tick),
    Rule((Role.FENCED,), Seen, "the key still ours: free it; else standby", _fenced_seen),
    Rule(
        (Role.RELEASING, Role.ACQUIRING, Role.RECLAIMING),
        Seen,
        "nothing: the answer in flight decides",
        _nothing,
    ),
)

_TABLE: dict[tuple[Role, type], Rule] = {}
for _rule in RULES:
    for _role in _rule.roles:
        _TABLE.setdefault((_role, _rule.event), _rule)


def step(spec: ClusterSpec, state: ClusterState, event: Event, now: float) -> Result:
    """Decide what `event` at `now` changes: the new state and the actions to perform."""
    rule = _TABLE.get((state.role, type(event)))
    if rule is None:
        return state, []
    return rule.handler(spec, state, event, now)


def render_table(width: int = 100) -> str:
    """The transition table as Markdown, `width` characters at most (for the README)."""
    header = ("role", "event", "what happens")
    rows = [
        (rule.label or ", ".join(r.value for r in rule.roles), rule.event.__name__, rule.does)
        for rule in RULES
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    widths.append(width - sum(widths) - 10)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(header), line(["-" * w for w in widths])]
    for role, event, does in rows:
        for i, part in enumerate(textwrap.wrap(does, widths[2])):
            lines.append(line([role, event, part] if i == 0 else ["", "", part]))
    return "\n".join(lines)
