"""The shell's check of a holder's silence: on the monotonic clock, from the first time
this host saw the key at a mod revision, and nothing deleted when it was not silent."""

from __future__ import annotations

from typing import Any, cast

from supervisor.cluster.leases import Beats, evict
from supervisor.etcd import EtcdClient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Etcd:
    def __init__(self) -> None:
        self.deletes: list[tuple[str, int, int]] = []

    async def delete_if_unchanged(self, key: str, token: int, beat: int) -> bool:
        self.deletes.append((key, token, beat))
        return True


def test_silence_counts_from_the_first_sight_of_a_revision() -> None:
    clock = Clock()
    beats = Beats(clock)
    beats.note("db.service", 10)
    clock.now += 3.0
    beats.note("db.service", 10)  # seen again (a read): still silent since the first
    assert beats.silent_for("db.service", 10) == 3.0
    beats.note("db.service", 11)
    assert beats.silent_for("db.service", 11) == 0.0
    assert beats.silent_for("db.service", 10) == 0.0  # not at that revision any more
    assert beats.silent_for("other.service", 11) == 0.0


async def test_a_key_not_silent_on_the_monotonic_clock_is_left_alone() -> None:
    etcd = Etcd()
    client = cast(EtcdClient, cast(Any, etcd))
    assert not await evict(client, "/k", 7, 10, "a", silent=4.9, ttl=5.0)
    assert etcd.deletes == []
    assert await evict(client, "/k", 7, 10, "a", silent=5.0, ttl=5.0)
    assert etcd.deletes == [("/k", 7, 10)]
