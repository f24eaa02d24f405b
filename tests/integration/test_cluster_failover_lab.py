"""Cross-host failover in the three-host lab: one trial of each fault against the host
that holds the clustered unit (tests/cluster/rig.py), judged from the units' own logs
and the witness. The runner (`tests/bench/run cluster`) runs many for the figures."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tests.cluster.rig import TTL, Rig
from tests.cluster.units import CLIENT_UNIT

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    from tests.conftest import skip_without_lab

    skip_without_lab()
    booted = Rig().boot()
    try:
        yield booted
    finally:
        booted.poweroff()


def test_one_host_holds_and_every_host_sees_it(rig: Rig) -> None:
    current = rig.holder()
    assert current is not None
    holder, token = current
    for host in ("host-a", "host-b", "host-c"):
        section = rig.daemon_status(host)["cluster"]
        assert section["holder"] == holder and section["token"] == token
        assert section["role"] == ("holder" if host == holder else "standby")
        assert section["unregistered"] == []
        assert set(section["hosts"]) == {"host-a", "host-b", "host-c"}
    messages = [e["message"] for e in rig.history(holder)]
    assert any(m.startswith(f"acquired {CLIENT_UNIT} (fencing token {token})") for m in messages)


def test_a_sigstopped_daemons_unit_is_stopped_by_pid1_before_another_starts(rig: Rig) -> None:
    outcome = rig.trial("sigstop", random.Random(1))
    assert outcome.new is not None and outcome.new_token > outcome.old_token
    assert outcome.overlaps == 0 and outcome.stale_accepted == 0
    last_old = max(at for at, t in rig.writes(outcome.old) if t == outcome.old_token)
    assert last_old - outcome.fault_at <= TTL  # PID 1 stopped it within the TTL
    assert outcome.gap_s is not None and outcome.gap_s > 0  # before the other host started
    messages = [e["message"] for e in rig.history(outcome.old)]
    assert any(m.startswith("fenced:") for m in messages)


def test_an_exhausted_ladder_hands_the_unit_over(rig: Rig) -> None:
    outcome = rig.trial("exhausted", random.Random(2))
    assert outcome.new is not None and outcome.new_token > outcome.old_token
    assert outcome.overlaps == 0 and outcome.stale_accepted == 0
    messages = [e["message"] for e in rig.history(outcome.old)]
    assert any(
        m.startswith("giving witness-client.service up: its repairs are exhausted")
        for m in messages
    )
    assert any(m.startswith("released ") for m in messages)


def test_a_partitioned_holder_fences_itself_and_another_takes_over(rig: Rig) -> None:
    outcome = rig.trial("partition", random.Random(3))
    assert outcome.new is not None and outcome.new_token > outcome.old_token
    assert outcome.overlaps == 0 and outcome.stale_accepted == 0
    # Healed, the old holder is a standby: exactly one host writes.
    assert rig.holder() == (outcome.new, outcome.new_token)


def test_killing_etcds_leader_never_runs_the_unit_twice(rig: Rig) -> None:
    """Usually the unit stays where it is; when etcd has no leader for longer than the
    fence allows (the holder cannot renew for ttl - margin), the holder stops it and
    another host takes it, with a newer token and no overlap."""
    outcome = rig.trial("etcd-leader", random.Random(4))
    assert outcome.overlaps == 0 and outcome.stale_accepted == 0
    end = rig.holder()
    assert end is not None
    if outcome.new is None:
        assert end == (outcome.old, outcome.old_token)
    else:
        assert end[1] > outcome.old_token
        assert outcome.gap_s is not None and outcome.gap_s > 0


def test_a_dead_host_is_replaced(rig: Rig) -> None:
    """Last: a killed host is gone for the rest of this cluster's life. An operator's
    handover moves the unit off the witness's host first, when it is there."""
    rig.move_off_witness()
    outcome = rig.trial("kill-host", random.Random(5))
    assert outcome.new is not None and outcome.new_token > outcome.old_token
    assert outcome.overlaps == 0 and outcome.stale_accepted == 0
