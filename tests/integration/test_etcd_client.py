"""The etcd client against a real etcd (Debian's, 3.4 on bookworm) on loopback.

One member serves most tests (each under a key prefix of its own); TLS and failover get
members of their own. Without /usr/bin/etcd these tests skip, except in CI (CI=true or
HOST_SUPERVISOR_REQUIRE_LAB=1), where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from supervisor.etcd import (
    EtcdClient,
    EtcdConfigError,
    EtcdError,
    EtcdTLS,
    EtcdUnavailable,
    WatchCompacted,
    WatchEvent,
)
from supervisor.testing.etcd_server import (
    EtcdServer,
    TlsFiles,
    etcd_cluster,
    etcd_unavailable_reason,
    make_tls,
)


def require_etcd() -> None:
    reason = etcd_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true" or os.environ.get("HOST_SUPERVISOR_REQUIRE_LAB") == "1":
        pytest.fail(f"in CI the real-etcd tests must run, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server() -> Iterator[EtcdServer]:
    require_etcd()
    with EtcdServer("solo") as member:
        yield member


@pytest.fixture
async def client(server: EtcdServer) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([server.endpoint]) as etcd:
        yield etcd


async def take(events: AsyncIterator[WatchEvent], count: int, within: float) -> list[WatchEvent]:
    """The next ``count`` events of a watch, failing the test if they take too long."""
    got: list[WatchEvent] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got.append(await anext(events))
    return got


# -- leases and transactions ----------------------------------------------------------


async def test_create_gives_one_holder_a_fencing_token(client: EtcdClient) -> None:
    key = "/t/create/lock"
    lease_a, _ = await client.lease_grant(30)
    lease_b, _ = await client.lease_grant(30)

    created, revision, kv = await client.create(key, "host-a", lease_a)
    assert created and kv is not None
    token = kv.create_revision
    assert (token, kv.value, kv.lease) == (revision, "host-a", lease_a)

    # Another lease cannot take it, and learns who holds it.
    created, _, holder = await client.create(key, "host-b", lease_b)
    assert not created and holder == kv

    # The holder asking again (a retry after a lost answer) keeps its token.
    created, _, again = await client.create(key, "host-a", lease_a)
    assert created and again is not None and again.create_revision == token

    # A stale token deletes nothing; the right one does.
    assert not await client.delete_if_created(key, token + 1000)
    assert (await client.get(key))[1] == kv
    assert await client.delete_if_created(key, token)
    assert (await client.get(key))[1] is None

    # B takes it now with a new token, and A's old token cannot delete B's key.
    created, _, taken = await client.create(key, "host-b", lease_b)
    assert created and taken is not None and taken.create_revision > token
    assert not await client.delete_if_created(key, token)
    assert (await client.get(key))[1] == taken


async def test_keepalive_keeps_a_key_past_its_ttl(client: EtcdClient) -> None:
    lease, granted = await client.lease_grant(2)
    assert granted == 2
    created, _, _ = await client.create("/t/alive/key", "v", lease)
    assert created
    deadline = time.monotonic() + 4.0  # twice the TTL
    while time.monotonic() < deadline:
        assert await client.lease_keepalive(lease) == 2
        await asyncio.sleep(0.5)
    assert (await client.get("/t/alive/key"))[1] is not None

    await client.lease_revoke(lease)
    assert (await client.get("/t/alive/key"))[1] is None  # revoking deletes its keys
    assert await client.lease_keepalive(lease) == 0
    await client.lease_revoke(lease)  # an unknown lease is fine


async def test_without_keepalive_the_key_expires_and_a_watch_sees_it(client: EtcdClient) -> None:
    lease, _ = await client.lease_grant(2)
    created, revision, _ = await client.create("/t/expire/key", "v", lease)
    assert created
    started = time.monotonic()
    events = client.watch("/t/expire/", revision + 1, idle_timeout=10)
    try:
        (event,) = await take(events, 1, within=8)
    finally:
        await events.aclose()
    waited = time.monotonic() - started
    assert event.kind == "delete" and event.kv.key == "/t/expire/key"
    assert event.revision > revision and event.kv.mod_revision == event.revision
    assert 1.0 < waited < 6.0, waited  # expired by its TTL, not at once
    assert (await client.get("/t/expire/key"))[1] is None
    assert await client.lease_keepalive(lease) == 0


async def test_a_beat_moves_the_mod_revision_and_keeps_the_token(client: EtcdClient) -> None:
    key = "/t/beat/leader"
    lease, _ = await client.lease_grant(30)
    created, _, kv = await client.create(key, "host-a", lease)
    assert created and kv is not None
    assert await client.beat(key, "host-a", kv.create_revision, lease)
    _, after = await client.get(key)
    assert after is not None and after.create_revision == kv.create_revision
    assert after.mod_revision > kv.mod_revision and after.lease == lease
    assert not await client.beat(key, "host-a", kv.create_revision + 1000, lease)
    await client.lease_revoke(lease)
    assert not await client.beat(key, "host-a", kv.create_revision, lease)  # gone: no put
    assert (await client.get(key))[1] is None


async def test_a_silent_key_is_deleted_only_if_unwritten_since(client: EtcdClient) -> None:
    key = "/t/evict/leader"
    lease, _ = await client.lease_grant(30)
    _, _, kv = await client.create(key, "host-a", lease)
    assert kv is not None
    seen = kv.mod_revision
    assert await client.beat(key, "host-a", kv.create_revision, lease)  # alive after all
    assert not await client.delete_if_unchanged(key, kv.create_revision, seen)
    _, now = await client.get(key)
    assert now is not None
    assert not await client.delete_if_unchanged(key, kv.create_revision + 1, now.mod_revision)
    assert await client.delete_if_unchanged(key, kv.create_revision, now.mod_revision)
    assert (await client.get(key))[1] is None
    await client.lease_revoke(lease)


async def test_compact_drops_history_and_again_is_fine(client: EtcdClient) -> None:
    old = await client.put("/t/compact2/k", "1")
    latest = await client.put("/t/compact2/k", "2")
    await client.compact(latest)
    await client.compact(old)  # already compacted past it: not an error
    with pytest.raises(WatchCompacted):
        await take(client.watch("/t/compact2/", old), 1, within=5)


# -- watches ------------------------------------------------------------------------------


async def test_watch_replays_from_a_revision_in_order_and_by_prefix(client: EtcdClient) -> None:
    start = await client.put("/t/watch/a", "1")
    await client.put("/t/watch0", "beyond the prefix's range end")
    await client.put("/t/watchful", "another prefix")
    await client.put("/t/watch/b", "2")
    _, kvs = await client.get_prefix("/t/watch/")
    assert [kv.key for kv in kvs] == ["/t/watch/a", "/t/watch/b"]
    async with EtcdClient([client.endpoint]) as other:  # a delete from elsewhere
        assert await other.delete_if_created("/t/watch/a", kvs[0].create_revision)

    events = client.watch("/t/watch/", start)
    try:
        got = await take(events, 3, within=5)
        # Nothing more is waiting: the next event is one made now.
        await client.put("/t/watch/c", "3")
        (later,) = await take(events, 1, within=5)
    finally:
        await events.aclose()
    assert [(e.kind, e.kv.key, e.kv.value) for e in got] == [
        ("put", "/t/watch/a", "1"),
        ("put", "/t/watch/b", "2"),
        ("delete", "/t/watch/a", ""),
    ]
    assert got[0].revision == start
    assert got[0].revision < got[1].revision < got[2].revision < later.revision
    assert later.kv.key == "/t/watch/c"


async def test_watch_from_a_compacted_revision_raises(client: EtcdClient) -> None:
    old = await client.put("/t/compact/k", "1")
    latest = await client.put("/t/compact/k", "2")
    url = client.endpoint + "/v3/kv/compaction"
    async with aiohttp.ClientSession() as http, http.post(url, json={"revision": str(latest)}):
        pass
    events = client.watch("/t/compact/", old)
    with pytest.raises(WatchCompacted) as caught:
        await take(events, 1, within=5)
    assert caught.value.compact_revision == latest
    assert client.endpoint in str(caught.value)


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    require_etcd()
    return make_tls(tmp_path_factory.mktemp("etcd-tls"))


@pytest.fixture(scope="module")
def tls_server(tls: TlsFiles) -> Iterator[EtcdServer]:
    with EtcdServer("secure", tls=tls) as member:
        yield member


async def test_mtls_with_ca_cert_and_key_works(tls: TlsFiles, tls_server: EtcdServer) -> None:
    assert tls_server.endpoint.startswith("https://")
    settings = EtcdTLS(ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
    async with EtcdClient([tls_server.endpoint], settings) as etcd:
        revision = await etcd.put("/t/tls/k", "over mTLS")
        _, kv = await etcd.get("/t/tls/k")
        assert kv is not None and (kv.value, kv.mod_revision) == ("over mTLS", revision)
        assert (await etcd.status()).revision >= revision


async def test_tls_without_a_client_cert_is_refused(tls: TlsFiles, tls_server: EtcdServer) -> None:
    async with EtcdClient([tls_server.endpoint], EtcdTLS(ca=tls.ca)) as etcd:
        with pytest.raises(EtcdError, match="TLS handshake failed") as caught:
            await etcd.status()
    assert tls_server.endpoint in str(caught.value)


async def test_tls_with_an_untrusted_server_is_refused(
    tls: TlsFiles, tls_server: EtcdServer
) -> None:
    settings = EtcdTLS(cert=tls.client_cert, key=tls.client_key)  # the system's CAs only
    async with EtcdClient([tls_server.endpoint], settings) as etcd:
        with pytest.raises(EtcdError, match="server certificate not trusted"):
            await etcd.status()


def test_bad_tls_files_are_named(tls: TlsFiles, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    with pytest.raises(EtcdConfigError, match=f"client key {missing} does not exist"):
        EtcdClient(["https://127.0.0.1:1"], EtcdTLS(ca=tls.ca, cert=tls.client_cert, key=missing))

    garbage = tmp_path / "garbage-ca.pem"
    garbage.write_text("this is not a certificate\n")
    with pytest.raises(EtcdConfigError, match=f"CA file {garbage}: no PEM certificate"):
        EtcdClient(["https://127.0.0.1:1"], EtcdTLS(ca=garbage))

    broken = tmp_path / "broken-ca.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(EtcdConfigError, match=f"CA file {broken}: not a valid certificate"):
        EtcdTLS(ca=broken).ssl_context()

    with pytest.raises(EtcdConfigError, match=f"client key {tls.server_key} does not belong"):
        EtcdTLS(cert=tls.client_cert, key=tls.server_key).ssl_context()


# -- failover -------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[list[EtcdServer]]:
    require_etcd()
    with etcd_cluster(3) as members:
        yield members


async def test_failover_to_the_next_endpoint_then_unavailable(cluster: list[EtcdServer]) -> None:
    # Followers first: killing the member in use then tests failover, not a leader election.
    ids: dict[str, int] = {}
    for member in cluster:
        async with EtcdClient([member.endpoint]) as one:
            ids[member.endpoint] = (await one.status()).member_id
    async with EtcdClient([cluster[0].endpoint]) as one:
        leader = (await one.status()).leader
    ordered = sorted(cluster, key=lambda member: ids[member.endpoint] == leader)
    endpoints = [member.endpoint for member in ordered]

    async with EtcdClient(endpoints, timeout=1.0) as etcd:
        first = await etcd.put("/t/failover/k", "before")
        assert etcd.endpoint == endpoints[0]
        watch = etcd.watch("/t/failover/", first, idle_timeout=10)
        assert (await take(watch, 1, within=5))[0].kv.value == "before"

        ordered[0].kill()
        with pytest.raises(EtcdError):  # the watch on it breaks instead of hanging
            await take(watch, 1, within=5)
        await watch.aclose()

        revision = await etcd.put("/t/failover/k", "after")
        assert etcd.endpoint == endpoints[1]
        assert (await etcd.get("/t/failover/k"))[1] is not None
        rewatch = etcd.watch("/t/failover/", first)  # opens on a live member
        async with contextlib.aclosing(rewatch):
            got = await take(rewatch, 2, within=5)
        assert [(e.kv.value, e.revision) for e in got] == [("before", first), ("after", revision)]

        ordered[1].kill()
        ordered[2].pause()  # keeps its socket, answers nothing: only the timeout ends it
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable) as caught:
            await etcd.get("/t/failover/k")
        elapsed = time.monotonic() - started
    assert elapsed < 3 * 1.0 + 1.0, elapsed
    message = str(caught.value)
    for endpoint in endpoints:
        assert endpoint in message
    assert "no answer within 1 s" in message and "cannot connect" in message
