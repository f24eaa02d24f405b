"""A held unit's lease and beats, and the history they leave in etcd.

The holder renews its lease and writes its key again (a beat) every ttl/3; a standby
frees the key of a holder it has not seen write for a TTL (the machine decides when,
on the reducer's clock; `Beats` checks it again on the monotonic clock); every daemon
compacts etcd's history the beats leave behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from supervisor.core import cluster
from supervisor.etcd import EtcdClient, EtcdError

__all__ = ["RENEW_RETRY", "Beats", "compact_history", "keep_lease"]

log = structlog.get_logger("host-supervisor")

RENEW_RETRY = 0.1
"""How soon a failed renewal is tried again."""


class Beats:
    """When this host first saw each unit's key at its current mod revision, on the
    monotonic clock (a step of the wall clock cannot make a live holder look silent)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: dict[str, tuple[int, float]] = {}

    def note(self, unit: str, beat: int) -> None:
        if self._seen.get(unit, (None, 0.0))[0] != beat:
            self._seen[unit] = (beat, self._monotonic())

    def silent_for(self, unit: str, beat: int) -> float:
        """How long the key has been seen unwritten at `beat` (0: not at that beat)."""
        seen = self._seen.get(unit)
        if seen is None or seen[0] != beat:
            return 0.0
        return self._monotonic() - seen[1]


async def evict(
    client: EtcdClient, key: str, token: int, beat: int, holder: str, silent: float, ttl: float
) -> bool:
    """Delete `key` if it is still `token`'s, unwritten since `beat`, and was seen silent
    for a TTL; True if deleted."""
    if silent < ttl:
        log.warning("cluster: not freeing the key; the clock moved", key=key, holder=holder)
        return False
    try:
        freed = await client.delete_if_unchanged(key, token, beat)
    except EtcdError as exc:
        log.warning("cluster: could not free the key", key=key, error=str(exc))
        return False
    log.warning(
        "cluster: freed the key of a silent holder" if freed else "cluster: the holder wrote",
        key=key,
        holder=holder,
        token=token,
        silent=round(silent, 2),
    )
    return freed


async def keep_lease(
    client: EtcdClient,
    key: str,
    me: str,
    token: int,
    lease: int,
    ttl: float,
    patience: float,
    clock: Callable[[], float],
    tell: Callable[[cluster.Event], object],
) -> None:
    """Renew now, then every ttl/3, each answer (or failure) told to the machine. A
    renewal is a keepalive and a beat (the key written again, so the standbys see this
    host alive even after etcd's new leader refreshed every lease); it waits at most
    `patience` (a member without a leader holds requests until there is one) and a
    failed one is tried again at once (every RENEW_RETRY): an etcd leader election takes
    a second or two, and the fence deadline is ttl - margin after the last renewal
    acknowledged."""
    loop = asyncio.get_running_loop()
    every = ttl / 3
    while True:
        sent, paced = clock(), loop.time()
        try:
            async with asyncio.timeout(patience):
                left = await client.lease_keepalive(lease)
                mine = left <= 0 or await client.beat(key, me, token, lease)
            if not mine:
                tell(cluster.RenewFailed("the key is not ours"))
                return
            tell(cluster.Renewed(sent, float(left)))
            if left <= 0:
                return
            await asyncio.sleep(max(0.0, paced + every - loop.time()))
        except (EtcdError, TimeoutError) as exc:
            tell(cluster.RenewFailed(str(exc) or f"no answer within {patience:.2f}s"))
            await asyncio.sleep(max(0.0, paced + RENEW_RETRY - loop.time()))


async def compact_history(client: EtcdClient, every: float, revision: Callable[[], int]) -> None:
    """Every `every` seconds, drop the history before the revision seen `every` ago."""
    mark = 0
    while True:
        await asyncio.sleep(every)
        if mark:
            try:
                await client.compact(mark)
            except EtcdError as exc:
                log.info("cluster: etcd's history not compacted", error=str(exc))
        mark = revision()
