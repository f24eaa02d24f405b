"""The part of `validate` that concerns clustered policies: is this host in each
unit's `cluster.hosts` (an error: the unit would never run here), is etcd reachable,
and has every listed host's daemon registered (warnings: a host may be down now)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import yaml

from supervisor.config.documents import find_node, format_path, position
from supervisor.config.loader import ConfigIssue, LoadedConfig
from supervisor.etcd import EtcdClient, EtcdError, EtcdTLS

__all__ = ["cluster_issues"]

ETCD_TIMEOUT = 2.0


def _node(path: Path, loc: tuple[str | int, ...]) -> tuple[int, int]:
    try:
        return position(find_node(yaml.compose(path.read_text()), loc))
    except (OSError, yaml.YAMLError):
        return 1, 1


def cluster_issues(loaded: LoadedConfig) -> tuple[list[ConfigIssue], list[str]]:
    """Errors and warnings about clustered policies; asks etcd when it answers."""
    config = loaded.main.cluster
    clustered = {u: p for u, p in sorted(loaded.policies.items()) if p.cluster is not None}
    if config is None or not clustered:
        return [], []
    me = config.host or socket.gethostname()
    errors: list[ConfigIssue] = []
    for unit, policy in clustered.items():
        assert policy.cluster is not None
        if me not in policy.cluster.hosts:
            path = loaded.sources[unit]
            line, col = _node(path, ("cluster", "hosts"))
            listed = ", ".join(policy.cluster.hosts)
            message = f"this host ({me}) is not listed ({listed}): {unit} would never run here"
            errors.append(ConfigIssue(path, line, col, message, "cluster.hosts"))
    warnings: list[str] = []
    try:
        registered = asyncio.run(_registered(loaded))
    except EtcdError as exc:
        warnings.append(f"warning: etcd not reached, cluster not checked: {exc}")
        return errors, warnings
    for unit, policy in clustered.items():
        assert policy.cluster is not None
        path = loaded.sources[unit]
        for index, host in enumerate(policy.cluster.hosts):
            if host in registered or host == me:
                continue
            loc = ("cluster", "hosts", index)
            line, col = _node(path, loc)
            warnings.append(
                f"{path}:{line}:{col}: {format_path(loc)}: warning: no host-supervisor on "
                f"{host!r} is registered in etcd (not running, or named otherwise there)"
            )
    return errors, warnings


async def _registered(loaded: LoadedConfig) -> set[str]:
    config = loaded.main.cluster
    assert config is not None
    tls = None
    if config.tls is not None:
        tls = EtcdTLS(
            ca=Path(config.tls.ca) if config.tls.ca else None,
            cert=Path(config.tls.cert) if config.tls.cert else None,
            key=Path(config.tls.key) if config.tls.key else None,
        )
    start = f"{config.prefix}hosts/"
    async with EtcdClient(
        config.endpoints, tls, timeout=min(config.timeout, ETCD_TIMEOUT)
    ) as client:
        _, kvs = await client.get_prefix(start)
    return {kv.key[len(start) :] for kv in kvs}
