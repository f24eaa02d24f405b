"""The cluster adapter: an asyncio etcd v3 client (leases, transactions, watches).

A thin typed client over etcd's v3 JSON gateway on aiohttp, with TLS/mTLS and failover
between endpoints. Nothing here decides anything: ``core.cluster`` does, and the daemon
carries its actions out through :class:`EtcdClient`.
"""

from __future__ import annotations

from supervisor.etcd.client import EtcdClient
from supervisor.etcd.errors import (
    EtcdConfigError,
    EtcdError,
    EtcdProtocolError,
    EtcdUnavailable,
    WatchCompacted,
)
from supervisor.etcd.tls import EtcdTLS
from supervisor.etcd.wire import EndpointStatus, KeyValue, WatchEvent

__all__ = [
    "EndpointStatus",
    "EtcdClient",
    "EtcdConfigError",
    "EtcdError",
    "EtcdProtocolError",
    "EtcdTLS",
    "EtcdUnavailable",
    "KeyValue",
    "WatchCompacted",
    "WatchEvent",
]
