"""The cluster machine with a fake clock: who takes the unit, when it is fenced, and
that no host starts it on a watch event alone or frees the key before the unit stops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from supervisor.core import cluster
from supervisor.core.cluster import (
    Acquire,
    Acquired,
    AcquireFailed,
    ClusterSpec,
    ClusterState,
    Drop,
    EtcdLost,
    Evict,
    Exhausted,
    Fence,
    Handover,
    KeepAlive,
    Release,
    Renewed,
    RenewFailed,
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

HOSTS = ("a", "b", "c")
CLUSTER_DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


def spec(me: str = "a", **kw: object) -> ClusterSpec:
    return ClusterSpec(unit="db.service", me=me, hosts=HOSTS, ttl=5.0, **kw)  # type: ignore[arg-type]


class Run:
    """One machine driven through events at given times; keeps every action."""

    def __init__(self, s: ClusterSpec, state: ClusterState | None = None) -> None:
        self.spec = s
        self.state = state or ClusterState()
        self.actions: list[tuple[float, object]] = []

    def feed(self, t: float, event: cluster.Event) -> list[object]:
        self.state, out = cluster.step(self.spec, self.state, event, t)
        self.actions += [(t, a) for a in out]
        return list(out)

    def kinds(self, out: list[object]) -> list[type]:
        return [type(a) for a in out if not isinstance(a, Say)]

    def hold(self, t: float = 0.0, token: int = 7, lease: int = 99) -> None:
        """Bring the machine to HOLDER at `t`."""
        self.feed(t, Seen(None, alive=HOSTS))
        self.feed(t + self.wake(), Tick())
        self.feed(t + self.wake(), Acquired(True, self.spec.me, token, lease, t + self.wake()))
        assert self.state.role is Role.HOLDER

    def wake(self) -> float:
        return self.state.try_at - 0 if self.state.try_at is not None else 0.0


def test_the_most_preferred_host_tries_at_once_the_next_waits_its_turn() -> None:
    a, b = Run(spec("a")), Run(spec("b"))
    out = a.feed(0.0, Seen(None, alive=HOSTS))
    assert a.state.role is Role.STANDBY and a.state.try_at == 0.0
    assert Stop in a.kinds(out)  # a unit left running without the key is stopped first
    b.feed(0.0, Seen(None, alive=HOSTS))
    assert b.state.try_at == cluster.RANK_STEP
    # A host that is not up does not delay the ones after it.
    c = Run(spec("c"))
    c.feed(0.0, Seen(None, alive=("b", "c")))
    assert c.state.try_at == cluster.RANK_STEP


def test_a_standby_starts_only_after_its_own_transaction_succeeded() -> None:
    b = Run(spec("b"))
    b.feed(0.0, Seen("a", token=5, alive=HOSTS))
    out = b.feed(3.0, Seen(None, alive=HOSTS))  # the watch says the key went
    assert Start not in b.kinds(out) and b.state.role is Role.STANDBY
    out = b.feed(b.state.try_at or 0.0, Tick())
    assert b.kinds(out) == [Acquire, Wake] and b.state.role is Role.ACQUIRING
    out = b.feed(3.1, Acquired(False, "c", 9, 0, 3.1))  # c won the race
    assert b.state.role is Role.STANDBY and b.state.holder == "c"
    assert not any(isinstance(x, Start) for _, x in b.actions)


def test_the_dead_holder_does_not_hold_up_the_next_in_line() -> None:
    b = Run(spec("b"))
    b.feed(0.0, Seen("a", token=5, alive=HOSTS))
    b.feed(6.0, Seen(None, alive=HOSTS))  # a's lease expired; its registration lingers
    assert b.state.try_at == 6.0  # a excluded: b goes first


def test_acquiring_holds_with_a_deadline_counted_from_the_send() -> None:
    a = Run(spec("a"))
    a.feed(0.0, Seen(None, alive=HOSTS))
    a.feed(0.0, Tick())
    out = a.feed(0.2, Acquired(True, "a", 42, 99, sent_at=0.1))
    assert a.state.role is Role.HOLDER and a.state.token == 42
    fence = next(x for x in out if isinstance(x, Fence))
    assert fence.deadline == 0.1 + 5.0 - a.spec.margin
    kinds = a.kinds(out)
    assert kinds.index(Fence) < kinds.index(Start)  # the lease unit may run before it starts
    assert Start(42) in out and KeepAlive(99, 5.0, 42) in out


def test_renewals_move_the_deadline_failures_do_not_and_it_fences_at_the_deadline() -> None:
    a = Run(spec("a"))
    a.hold()
    out = a.feed(1.7, Renewed(sent_at=1.6, ttl_left=5))
    assert Fence(1.6 + 5.0 - a.spec.margin) in out
    deadline = a.state.deadline
    out = a.feed(3.3, RenewFailed("timeout"))
    out += a.feed(5.0, RenewFailed("timeout"))
    assert a.state.deadline == deadline and not any(isinstance(x, Fence) for x in out)
    said = [x for x in out if isinstance(x, Say)]
    assert len(said) == 1 and "renewal failed" in said[0].message  # said once
    out = a.feed(deadline, Tick())
    assert a.state.role is Role.FENCED
    assert Drop in a.kinds(out) and Stop in a.kinds(out)
    assert any(isinstance(x, Say) and x.alert == "critical" for x in out)


def test_a_lease_etcd_no_longer_has_or_another_holder_fences_at_once() -> None:
    a = Run(spec("a"))
    a.hold()
    out = a.feed(1.0, Renewed(sent_at=0.9, ttl_left=0))
    assert a.state.role is Role.FENCED and Stop in a.kinds(out)
    a2 = Run(spec("a"))
    a2.hold()
    out = a2.feed(1.0, Seen("b", token=12, alive=HOSTS))
    assert a2.state.role is Role.FENCED and Stop in a2.kinds(out)
    # Fenced, it is a standby again once etcd shows the key gone or taken.
    a2.feed(2.0, Seen("b", token=12, alive=HOSTS))
    assert a2.state.role is Role.STANDBY


def test_release_stops_the_unit_before_it_frees_the_key() -> None:
    a = Run(spec("a"))
    a.hold(token=7, lease=99)
    out = a.feed(10.0, Exhausted("3 attempts"))
    assert a.state.role is Role.RELEASING
    assert Stop in a.kinds(out) and Release not in a.kinds(out)
    out = a.feed(10.4, Stopped())
    assert Release(7, 99, None) in out and a.state.role is Role.STANDBY
    # A released host leaves the others hold_off before it takes the unit again...
    a.feed(10.5, Seen(None, alive=HOSTS))
    assert a.state.try_at == 10.4 + a.spec.hold_off
    # ...and so even when no other host is up: a unit given up does not bounce back.
    alone = Run(spec("a"))
    alone.hold(token=7, lease=99)
    alone.feed(10.0, Exhausted("3 attempts"))
    alone.feed(10.4, Stopped())
    alone.feed(10.5, Seen(None, alive=("a",)))
    assert alone.state.try_at == 10.4 + alone.spec.hold_off
    # A fence is not a release: once the key is gone the host may take it at its turn.
    fenced = Run(spec("a"))
    fenced.hold(token=7, lease=99)
    fenced.feed(10.0, Tick())
    fenced.feed(12.0, Seen(None, alive=("a",)))
    assert fenced.state.role is Role.STANDBY and fenced.state.try_at == 12.0


def test_unhealthy_releases_only_when_the_policy_says_so() -> None:
    a = Run(spec("a"))
    a.hold()
    assert a.feed(1.0, Unhealthy("failed")) == [] and a.state.role is Role.HOLDER
    u = Run(spec("a", release_on="unhealthy"))
    u.hold()
    u.feed(1.0, Unhealthy("failed"))
    assert u.state.role is Role.RELEASING


def test_an_operator_handover_names_the_host_that_goes_first() -> None:
    a = Run(spec("a"))
    a.hold(token=7, lease=99)
    refused = a.feed(1.0, Handover("z", "alice"))
    assert a.state.role is Role.HOLDER and "refused" in refused[0].message  # type: ignore[attr-defined]
    a.feed(2.0, Handover("c", "alice"))
    out = a.feed(2.3, Stopped())
    assert Release(7, 99, "c") in out
    b, c = Run(spec("b")), Run(spec("c"))
    b.feed(0.0, Seen("a", token=7, alive=HOSTS))
    c.feed(0.0, Seen("a", token=7, alive=HOSTS))
    b.feed(2.4, Seen(None, alive=HOSTS, handover_to="c"))
    c.feed(2.4, Seen(None, alive=HOSTS, handover_to="c"))
    assert c.state.try_at == 2.4
    assert b.state.try_at == 2.4 + cluster.HANDOVER_WAIT
    standby = Run(spec("b"))
    standby.feed(0.0, Seen("a", token=7, alive=HOSTS))
    out = standby.feed(1.0, Handover("c"))
    assert "does not hold" in out[0].message  # type: ignore[attr-defined]


def test_after_a_restart_the_holder_renews_its_lease_and_keeps_its_token() -> None:
    a = Run(spec("a"))
    out = a.feed(0.0, Seen("a", token=7, lease=99, alive=HOSTS))
    assert a.state.role is Role.RECLAIMING and KeepAlive(99, 5.0, 7) in out
    assert Stop not in a.kinds(out)  # the unit keeps running while the lease is checked
    out = a.feed(0.1, Renewed(sent_at=0.05, ttl_left=4))
    assert a.state.role is Role.HOLDER and Start(7) in out
    gone = Run(spec("a"))
    gone.feed(0.0, Seen("a", token=7, lease=99, alive=HOSTS))
    gone.feed(0.1, Renewed(sent_at=0.05, ttl_left=0))
    assert gone.state.role is Role.FENCED


def test_etcd_unreachable_at_start_starts_nothing_and_stops_a_unit_left_running() -> None:
    a = Run(spec("a"))
    out = a.feed(0.0, EtcdLost("10.0.0.1:2379: connection refused"))
    out += a.feed(1.0, EtcdLost("10.0.0.1:2379: connection refused"))
    said = [x for x in out if isinstance(x, Say)]
    assert len(said) == 1 and said[0].level == "error"
    assert Wake(5.0) in out
    out = a.feed(5.0, Tick())
    assert Stop in a.kinds(out) and Start not in a.kinds(out)


def test_failback_hands_the_unit_to_the_preferred_host_after_hold_off() -> None:
    b = Run(spec("b", failback=True, hold_off=30.0))
    b.feed(0.0, Seen(None, alive=("b", "c")))
    b.feed(0.0, Tick())
    b.feed(0.0, Acquired(True, "b", 8, 77, 0.0))
    b.feed(10.0, Seen("b", token=8, alive=HOSTS))  # a is back
    out = b.feed(29.0, Renewed(sent_at=29.0, ttl_left=5))
    assert Wake(30.0) in out and b.state.role is Role.HOLDER  # hold_off comes before the deadline
    b.feed(30.0, Renewed(sent_at=30.0, ttl_left=5))
    out = b.feed(30.0, Tick())
    assert b.state.role is Role.RELEASING and b.state.handover_to == "a"
    nopreempt = Run(spec("b"))
    nopreempt.feed(0.0, Seen(None, alive=("b",)))
    nopreempt.feed(0.0, Tick())
    nopreempt.feed(0.0, Acquired(True, "b", 8, 77, 0.0))
    nopreempt.feed(40.0, Seen("b", token=8, alive=HOSTS))
    nopreempt.feed(40.0, Renewed(sent_at=40.0, ttl_left=5))
    assert nopreempt.feed(40.5, Tick()) == [Wake(nopreempt.state.deadline)]


def test_a_host_not_in_the_list_never_tries() -> None:
    z = Run(spec("z"))
    z.feed(0.0, Seen(None, alive=HOSTS))
    assert z.state.try_at is None and z.state.role is Role.STANDBY


def test_a_failed_transaction_retries() -> None:
    a = Run(spec("a"))
    a.feed(0.0, Seen(None, alive=HOSTS))
    a.feed(0.0, Tick())
    out = a.feed(0.5, AcquireFailed("timeout"))
    assert a.state.role is Role.STANDBY and Wake(0.5 + cluster.RETRY) in out


def test_a_fenced_holder_whose_key_survived_frees_it() -> None:
    a = Run(spec("a"))
    a.hold(token=7, lease=99)
    a.feed(10.0, Tick())  # deadline passed: partitioned
    assert a.state.role is Role.FENCED
    out = a.feed(12.0, Seen("a", token=7, lease=99, alive=HOSTS))  # healed before etcd expired it
    assert Release(7, 99, None) in out


def test_unknown_events_in_a_role_change_nothing() -> None:
    a = Run(spec("a"))
    state = replace(a.state)
    assert cluster.step(a.spec, state, Stopped(), 1.0) == (state, [])


def test_the_docs_show_the_table_the_machine_runs() -> None:
    assert cluster.render_table().strip() in CLUSTER_DOC.read_text()


def test_a_view_older_than_the_transaction_is_stale_and_ignored() -> None:
    """Found in the lab: a read made before our create arrived after it, and the new
    holder fenced itself on 'nobody holds the key'."""
    c = Run(spec("c"))
    c.feed(0.0, Seen(None, alive=HOSTS, revision=180))
    c.feed(c.state.try_at or 0.0, Tick())
    c.feed(2.0, Acquired(True, "c", 195, 77, 2.0, revision=195))
    assert c.state.role is Role.HOLDER
    assert c.feed(2.01, Seen(None, alive=HOSTS, revision=190)) == []
    assert c.state.role is Role.HOLDER
    c.feed(2.02, Seen("c", token=195, lease=77, alive=HOSTS, revision=195))
    assert c.state.role is Role.HOLDER
    c.feed(3.0, Seen("a", token=200, alive=HOSTS, revision=200))  # a newer view: fence
    assert c.state.role is Role.FENCED


def test_our_own_key_read_before_we_deleted_it_is_stale() -> None:
    """Found in the lab: right after a release, a view still naming this host made it
    reclaim the revoked lease and fence itself."""
    a = Run(spec("a"))
    a.hold(token=288, lease=99)
    a.feed(10.0, Exhausted("1 attempt"))
    a.feed(10.2, Stopped())
    assert a.state.role is Role.STANDBY
    assert a.feed(10.21, Seen("a", token=288, lease=99, alive=HOSTS)) == []
    assert a.state.role is Role.STANDBY
    a.feed(10.3, Seen("b", token=301, alive=HOSTS))
    assert a.state.holder == "b"


def _watching(me: str = "b") -> Run:
    """A standby that saw holder a (token 7) write its key at revision 10, at t=0."""
    run = Run(spec(me))
    run.feed(0.0, Seen("a", token=7, lease=99, alive=HOSTS, beat=10, holder_beats=True))
    return run


def test_a_holder_silent_for_a_ttl_has_its_key_freed_if_unchanged() -> None:
    """etcd's new leader refreshes every lease to a full TTL when it takes office, so a
    dead holder that ran etcd's leader would keep its key for a TTL more: the standby
    frees it a TTL after it last saw the key written, with the write as the compare."""
    b = _watching()
    out = b.feed(0.0, Tick())
    assert Wake(5.0) in out and Evict not in b.kinds(out)
    b.feed(1.6, Seen("a", token=7, lease=99, alive=HOSTS, beat=11, holder_beats=True))
    assert b.state.beat == 11 and b.state.beat_seen_at == 1.6
    assert b.kinds(b.feed(5.0, Tick())) == [Wake]  # written at 1.6: not silent yet
    out = b.feed(6.6, Tick())
    assert Evict(7, 11, "a") in out
    assert b.state.role is Role.STANDBY  # it takes the key only by its own create


def test_the_holder_fences_before_a_standby_may_free_its_key() -> None:
    """The holder's deadline counts from a beat it sent, which the standby saw after."""
    a, b = Run(spec("a")), _watching()
    a.hold(token=7, lease=99)
    a.feed(0.0, Renewed(sent_at=0.0, ttl_left=5))
    b.feed(0.05, Seen("a", token=7, lease=99, alive=HOSTS, beat=12, holder_beats=True))
    fenced = a.feed(a.state.deadline, Tick())
    assert Stop in a.kinds(fenced)
    assert a.state.deadline < b.state.beat_seen_at + b.spec.silent_after  # type: ignore[operator]
    assert Evict not in b.kinds(b.feed(a.state.deadline, Tick()))


def test_a_holder_that_does_not_beat_is_left_to_its_lease() -> None:
    """A daemon from before beats (a rolling upgrade) is never taken for dead."""
    b = Run(spec("b"))
    b.feed(0.0, Seen("a", token=7, lease=99, alive=HOSTS, beat=10, holder_beats=False))
    out = b.feed(60.0, Tick())
    assert Evict not in b.kinds(out) and b.state.holder == "a"


def test_a_failed_eviction_is_tried_again_soon_then_every_ttl_said_once() -> None:
    """Found in the trials: a partition took 9.8 s when the first delete failed (etcd
    electing a leader) and the next try came a whole TTL later."""
    b = _watching()
    out = b.feed(5.0, Tick())
    assert Evict(7, 10, "a") in out and Say in [type(x) for x in out]
    out = b.feed(5.0 + cluster.RETRY, Tick())
    assert Evict(7, 10, "a") in out and Say not in [type(x) for x in out]  # not said again
    assert b.kinds(b.feed(8.0, Tick())) == [Wake]  # then every TTL
    assert Evict(7, 10, "a") in b.feed(6.0 + 5.0, Tick())
    b.feed(11.5, Seen("a", token=7, lease=99, alive=HOSTS, beat=14, holder_beats=True))
    assert b.state.evict_tries == 0  # the holder wrote: a new count
    assert b.kinds(b.feed(14.0, Tick())) == [Wake]
    assert Evict(7, 14, "a") in b.feed(16.5, Tick())


def test_a_host_not_in_the_list_never_frees_the_key() -> None:
    d = Run(spec("d"))
    d.feed(0.0, Seen("a", token=7, lease=99, alive=HOSTS, beat=10, holder_beats=True))
    assert Evict not in d.kinds(d.feed(30.0, Tick()))


def test_once_freed_the_preferred_standby_takes_it_by_its_own_create() -> None:
    b = _watching()
    b.feed(5.0, Tick())
    out = b.feed(5.1, Seen(None, alive=("b", "c")))
    assert b.state.try_at is not None and Acquire not in b.kinds(out)
    out = b.feed(b.state.try_at, Tick())
    assert Acquire(5.0) in out
