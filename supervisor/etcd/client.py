"""The etcd v3 client host-supervisor uses: leases, lease-bound transactions, watches.

A thin client over etcd's v3 JSON gateway (grpc-gateway, served on the client port of
every etcd since 3.4 at ``/v3/...``) on the aiohttp the daemon already ships, as Patroni
does. See :mod:`supervisor.etcd.transport` for endpoint failover and timeouts and
:mod:`supervisor.etcd.wire` for the JSON.

Lease keepalive: ``POST /v3/lease/keepalive`` is a bidirectional stream in gRPC; through
the gateway, one request body makes one answer and the stream ends, so a keepalive is a
plain request here reading the first ``{"result": ...}`` (etcd 3.4 and 3.5 both answer
TTL 0, the field left out, for a lease that no longer exists).

Retries: a request that timed out on one endpoint is sent to the next, so a write may be
applied twice. Both transactions below are safe under that: :meth:`create` recognises its
own earlier success (the key is bound to the caller's lease), and :meth:`delete_if_created`
can never delete a key created since (its compare fails), though a retried delete answers
False when the lost first attempt had deleted the key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from types import TracebackType
from typing import Self

import supervisor.etcd.wire as wire
from supervisor.etcd.errors import EtcdError, EtcdProtocolError
from supervisor.etcd.tls import EtcdTLS
from supervisor.etcd.transport import Transport
from supervisor.etcd.watch import watch_prefix
from supervisor.etcd.wire import EndpointStatus, KeyValue, WatchEvent, b64, prefix_range_end

#: gRPC NotFound, as for "etcdserver: requested lease not found".
NOT_FOUND = 5


@contextlib.contextmanager
def _reading(endpoint: str) -> Iterator[None]:
    """Name the endpoint in a protocol error raised while reading its answer."""
    try:
        yield
    except EtcdProtocolError as e:
        if e.endpoint is not None:
            raise
        raise EtcdProtocolError(e.detail, endpoint=endpoint) from None


def _range(prefix: str) -> dict[str, str]:
    if prefix == "":
        return {"key": b64(b"\0"), "range_end": b64(b"\0")}  # every key
    return {"key": b64(prefix), "range_end": prefix_range_end(prefix)}


class EtcdClient:
    """An asyncio etcd v3 client over the JSON gateway, with failover between endpoints.

    ``endpoints`` are ``http://host:port`` or ``https://host:port`` (no credentials);
    ``tls`` applies to https ones (with it, http ones are refused); ``timeout`` bounds each
    request to each endpoint, in seconds. Make it inside the event loop that uses it (the
    session is opened on the first request) and :meth:`close` it, or use ``async with``.
    """

    def __init__(
        self, endpoints: Sequence[str], tls: EtcdTLS | None = None, *, timeout: float = 2.0
    ) -> None:
        self._transport = Transport(endpoints, tls, timeout)

    async def close(self) -> None:
        """Close the session; watches still open end with EtcdError. Idempotent."""
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def endpoint(self) -> str:
        """The endpoint in use: the one that answered last."""
        return self._transport.endpoint

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._transport.endpoints

    # -- cluster ----------------------------------------------------------------------

    async def status(self) -> EndpointStatus:
        """The answering member's view: its id, the leader's id, raft term, revision."""
        endpoint, body = await self._transport.post("/maintenance/status", {})
        with _reading(endpoint):
            return wire.status(endpoint, body)

    async def member_names(self) -> dict[int, str]:
        """Member id to name ("" for a member added but not started yet)."""
        endpoint, body = await self._transport.post("/cluster/member/list", {})
        with _reading(endpoint):
            return wire.member_names(body)

    # -- leases -----------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (its id, the TTL granted, which etcd may raise to its minimum)."""
        if ttl <= 0:
            raise ValueError(f"a lease needs a positive TTL, not {ttl!r}")
        endpoint, body = await self._transport.post("/lease/grant", {"TTL": str(ttl)})
        with _reading(endpoint):
            lease, granted = wire.int64(body, "ID"), wire.int64(body, "TTL")
        if lease == 0 or granted <= 0:
            raise EtcdProtocolError(f"lease grant answered {dict(body)!r}", endpoint=endpoint)
        return lease, granted

    async def lease_keepalive(self, lease: int) -> int:
        """Renew the lease; its TTL from now, or 0 when the lease no longer exists."""
        try:
            endpoint, body = await self._transport.post("/lease/keepalive", {"ID": str(lease)})
        except EtcdError as e:
            if e.code == NOT_FOUND:  # as a stream error, should a version send it so
                return 0
            raise
        with _reading(endpoint):
            return max(0, wire.int64(wire.obj(body, "result"), "TTL"))

    async def lease_revoke(self, lease: int) -> None:
        """Revoke the lease, deleting its keys. An unknown (expired) lease is fine."""
        try:
            await self._transport.post("/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if e.code != NOT_FOUND:
                raise

    # -- keys -------------------------------------------------------------------------

    async def get(self, key: str) -> tuple[int, KeyValue | None]:
        """(The store's revision, the key or None), read linearizably."""
        endpoint, body = await self._transport.post("/kv/range", {"key": b64(key)})
        with _reading(endpoint):
            kvs = wire.range_kvs(body)
            return wire.header_revision(body), (kvs[0] if kvs else None)

    async def get_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """(The store's revision, every key starting with ``prefix``, in key order)."""
        endpoint, body = await self._transport.post("/kv/range", _range(prefix))
        with _reading(endpoint):
            return wire.header_revision(body), wire.range_kvs(body)

    async def put(self, key: str, value: str, lease: int = 0) -> int:
        """Write the key (bound to ``lease`` unless 0); the revision of the write."""
        request: dict[str, str] = {"key": b64(key), "value": b64(value)}
        if lease:
            request["lease"] = str(lease)
        endpoint, body = await self._transport.post("/kv/put", request)
        with _reading(endpoint):
            return wire.header_revision(body)

    async def create(self, key: str, value: str, lease: int) -> tuple[bool, int, KeyValue | None]:
        """Create the key bound to ``lease`` if it does not exist, in one transaction.

        Returns (created, the store's revision, the key as it is now). When created, the
        key's ``create_revision`` is the fencing token; when not, the key is the holder's.
        A key already bound to this same lease counts as created: it is this caller's own
        (a retry after a lost answer, or a second call), and it keeps its token.
        """
        if lease == 0:
            raise ValueError("create() binds the key to a lease; lease 0 is none")
        compare = {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        read = {"request_range": {"key": b64(key)}}
        put = {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}
        txn = {"compare": [compare], "success": [put, read], "failure": [read]}
        endpoint, body = await self._transport.post("/kv/txn", txn)
        with _reading(endpoint):
            succeeded = wire.boolean(body, "succeeded")
            kvs = wire.txn_ranges(body)
            revision = wire.header_revision(body)
        current = kvs[0] if kvs else None
        if not succeeded and current is not None and current.lease == lease:
            succeeded = True
        return succeeded, revision, current

    async def delete_if_created(self, key: str, create_revision: int) -> bool:
        """Delete the key if its ``create_revision`` is still this one (the fencing token),
        in one transaction. True if this call deleted it; False if the key is gone or was
        created again since (someone else's now)."""
        compare = _created(key, create_revision)
        txn = {"compare": [compare], "success": [{"request_delete_range": {"key": b64(key)}}]}
        endpoint, body = await self._transport.post("/kv/txn", txn)
        with _reading(endpoint):
            return wire.boolean(body, "succeeded")

    async def beat(self, key: str, value: str, create_revision: int, lease: int) -> bool:
        """Write the key again, unchanged, if its ``create_revision`` is still this one:
        its ``mod_revision`` moves, which tells the other hosts its holder is alive. True
        if written; False if the key is gone or someone else's."""
        compare = _created(key, create_revision)
        put = {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}
        txn = {"compare": [compare], "success": [put]}
        endpoint, body = await self._transport.post("/kv/txn", txn)
        with _reading(endpoint):
            return wire.boolean(body, "succeeded")

    async def delete_if_unchanged(self, key: str, create_revision: int, mod_revision: int) -> bool:
        """Delete the key if it is still the one created at ``create_revision`` and not
        written since ``mod_revision``, in one transaction: True if this call deleted it."""
        if mod_revision <= 0:
            raise ValueError(f"a mod revision is positive, not {mod_revision!r}")
        modified = {
            "key": b64(key),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(mod_revision),
        }
        txn = {
            "compare": [_created(key, create_revision), modified],
            "success": [{"request_delete_range": {"key": b64(key)}}],
        }
        endpoint, body = await self._transport.post("/kv/txn", txn)
        with _reading(endpoint):
            return wire.boolean(body, "succeeded")

    async def compact(self, revision: int) -> None:
        """Drop the history before ``revision`` (etcd-wide). A revision already compacted
        is fine."""
        try:
            await self._transport.post("/kv/compaction", {"revision": str(revision)})
        except EtcdError as e:
            if "compacted" not in str(e):
                raise

    # -- watches ----------------------------------------------------------------------

    def watch(
        self, prefix: str, start_revision: int, *, idle_timeout: float | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change to keys under ``prefix`` from ``start_revision`` on, in order.

        Raises WatchCompacted when the start revision has been compacted, and EtcdError
        when the stream breaks or (with ``idle_timeout``) stays silent that many seconds:
        the caller then re-reads (:meth:`get_prefix`) and watches again from the revision
        after the read. Close it with ``aclose()`` (or ``contextlib.aclosing``).
        """
        if start_revision <= 0:
            raise ValueError(f"a watch starts at a positive revision, not {start_revision!r}")
        request = {**_range(prefix), "start_revision": str(start_revision), "progress_notify": True}
        return watch_prefix(self._transport, request, idle_timeout)


def _created(key: str, create_revision: int) -> dict[str, str]:
    """The compare: the key is still the one created at ``create_revision``."""
    if create_revision <= 0:
        raise ValueError(f"a create revision is positive, not {create_revision!r}")
    return {
        "key": b64(key),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": str(create_revision),
    }
