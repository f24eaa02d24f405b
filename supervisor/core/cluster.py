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

`RULES` is the transition table; docs/cluster.md shows it (`render_table`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "Acquire",
    "AcquireFailed",
    "Acquired",
    "Action",
    "ClusterSpec",
    "ClusterState",
    "Drop",
    "EtcdLost",
    "Event",
    "Evict",
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

from supervisor.core.cluster_model import (
    HANDOVER_WAIT,
    RANK_STEP,
    RETRY,
    Acquire,
    Acquired,
    AcquireFailed,
    Action,
    ClusterSpec,
    ClusterState,
    Drop,
    EtcdLost,
    Event,
    Evict,
    Exhausted,
    Fence,
    Handover,
    KeepAlive,
    Release,
    Renewed,
    RenewFailed,
    Result,
    Role,
    Say,
    Seen,
    Start,
    Stop,
    Stopped,
    Tick,
    Unhealthy,
    Wake,
)

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
    before = state
    previous, released_token = state.holder, state.token
    last = state.holder if state.holder is not None else state.last_holder
    state = replace(
        state,
        holder=seen.holder,
        token=seen.token,
        alive=seen.alive,
        handover_to=seen.handover_to,
        etcd_error="",
        last_holder=last if seen.holder is None else seen.holder,
        holder_beats=seen.holder_beats,
    )
    if seen.holder is None:
        state = replace(state, beat=0, beat_seen_at=None)
    elif seen.holder != previous or seen.token != released_token or seen.beat != before.beat:
        state = replace(state, beat=seen.beat, beat_seen_at=now, evict_tries=0, evict_at=None)
    actions: list[Action] = []
    if seen.holder == spec.me and seen.token == released_token and state.released_at is not None:
        return before, []  # our own key, read before we deleted it: stale
    if seen.holder == spec.me and seen.lease:
        state = _to(state, Role.RECLAIMING, now, lease=seen.lease, try_at=None)
        actions += [
            Say("cluster", f"etcd names this host as holder (token {seen.token}): renewing"),
            KeepAlive(seen.lease, spec.ttl, seen.token),
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
        return replace(state, try_at=None), [*actions, Wake(_evict_at(spec, state))]
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


def _evict_at(spec: ClusterSpec, state: ClusterState) -> float | None:
    """When the holder's key, unwritten since, is freed by this host (None: never)."""
    if not (spec.eligible and state.holder_beats and state.beat) or state.beat_seen_at is None:
        return None
    if state.evict_tries:
        return state.evict_at
    return state.beat_seen_at + spec.silent_after


def _standby_tick(spec: ClusterSpec, state: ClusterState, event: object, now: float) -> Result:
    holder = state.holder
    if holder is None:
        return _try(spec, state, event, now)
    at = _evict_at(spec, state)
    if at is None or now < at:
        return state, [Wake(at)]
    assert state.beat_seen_at is not None
    silent = now - state.beat_seen_at
    # An answer that frees the key (or shows a new beat) comes by the watch. Without one,
    # the delete failed: once more a RETRY later (etcd electing a leader, a member gone
    # from under this host's client), then every TTL, said once.
    tries = state.evict_tries + 1
    again = now + (RETRY if tries == 1 else spec.silent_after)
    state = replace(state, evict_tries=tries, evict_at=again)
    said: list[Action] = []
    if tries == 1:
        said.append(
            Say(
                "cluster",
                f"{holder} has not written its key for {silent:.1f}s "
                f"(token {state.token}): freeing it",
                "warning",
            )
        )
    return state, [*said, Evict(state.token, state.beat, holder), Wake(again)]


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
        KeepAlive(lease, spec.ttl, token),
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
    return _release(spec, state, f"{event.why} ({event.detail})", None, now)


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
    Rule(
        (Role.STANDBY,),
        Tick,
        "its turn and the key still free: try to create it; the holder's key unwritten "
        "for a TTL since this host saw it change: delete it if still unchanged",
        _standby_tick,
    ),
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
    seen_at = getattr(event, "revision", 0)
    if isinstance(event, Seen) and seen_at and seen_at < state.revision:
        return state, []  # read before what the machine already acted on: stale
    rule = _TABLE.get((state.role, type(event)))
    if rule is None:
        return replace(state, revision=max(state.revision, seen_at)), []
    new, actions = rule.handler(spec, state, event, now)
    return replace(new, revision=max(new.revision, seen_at)), actions


def render_table(width: int = 100) -> str:
    """The transition table as Markdown, `width` characters at most (for docs/cluster.md)."""
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
