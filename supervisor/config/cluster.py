"""Cross-host failover through etcd: the main config's `cluster:` (where etcd is, this
host's name) and a policy's `cluster:` (the hosts that may run its unit)."""

from __future__ import annotations

import re
import ssl
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from supervisor.config.tls_files import cert_pair_problems
from supervisor.config.types import AbsolutePath, FrozenModel, located_error
from supervisor.config.values import Duration, PositiveDuration

__all__ = ["MIN_TTL", "ClusterConfig", "ClusterTLS", "Clustered", "HostName"]

MIN_TTL = 2.0
"""etcd's own floor for a lease's TTL (its minimum lease TTL is the election timeout)."""
MAX_TTL = 3600.0

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253})$")
_ENDPOINT = re.compile(r"^https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}/?$")
_PREFIX = re.compile(r"^/[A-Za-z0-9._/-]*/$")


def _host(value: str) -> str:
    if not _HOST.match(value):
        raise ValueError(f"expected a host name (letters, digits, '.', '_', '-'), got {value!r}")
    return value


def _endpoint(value: str) -> str:
    if not _ENDPOINT.match(value):
        raise ValueError(f"expected an etcd client URL like https://10.0.0.1:2379, got {value!r}")
    port = int(value.rstrip("/").rsplit(":", 1)[1])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not between 1 and 65535")
    return value.rstrip("/")


HostName = Annotated[str, AfterValidator(_host)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]


class ClusterTLS(FrozenModel):
    """TLS to etcd: the CA that signed its certificates, and a client certificate and key
    when etcd asks for one (`--client-cert-auth`)."""

    ca: AbsolutePath | None = Field(
        default=None,
        description="CA certificate file (PEM) that signed etcd's server certificates. "
        "Default: the system's CAs.",
        examples=["/etc/host-supervisor/etcd/ca.pem"],
    )
    cert: AbsolutePath | None = Field(
        default=None,
        description="Client certificate file (PEM), with key. Default none.",
        examples=["/etc/host-supervisor/etcd/client.pem"],
    )
    key: AbsolutePath | None = Field(
        default=None,
        description="Client private key file (PEM), with cert; root's, mode 0600. Default none.",
        examples=["/etc/host-supervisor/etcd/client-key.pem"],
    )

    @model_validator(mode="after")
    def _pair(self) -> ClusterTLS:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise located_error((), f"cert and key go together: {missing} is missing")
        return self


class ClusterConfig(FrozenModel):
    """Where etcd is, and who this host is in it."""

    endpoints: tuple[Endpoint, ...] = Field(
        max_length=32,
        description="etcd client URLs, tried in order when one does not answer. Required.",
        examples=[["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]],
    )
    tls: ClusterTLS | None = Field(
        default=None,
        description="TLS material for https endpoints. Default: the system's CAs, no client "
        "certificate.",
        examples=[{"ca": "/etc/host-supervisor/etcd/ca.pem"}],
    )
    prefix: str = Field(
        default="/host-supervisor/",
        pattern=_PREFIX.pattern,
        max_length=200,
        description="Key prefix of every key host-supervisor writes. Default /host-supervisor/.",
        examples=["/host-supervisor/"],
    )
    host: HostName | None = Field(
        default=None,
        description="This host's name in policies' cluster.hosts. Default: the host name.",
        examples=["db1"],
    )
    timeout: PositiveDuration = Field(
        default="2s",
        validate_default=True,
        description="How long one request to one endpoint may take, 1ms to 30s. Default 2s.",
        examples=["2s"],
    )
    compact: Duration = Field(
        default="1h",
        validate_default=True,
        description="Every this long, drop etcd's history older than this long, as "
        "kube-apiserver does: each held unit's key is written every ttl/3, and etcd keeps "
        "every version until compacted. 0 turns it off (for an etcd run with "
        "--auto-compaction-retention). Default 1h.",
        examples=["1h", "0"],
    )

    @model_validator(mode="after")
    def _check(self) -> ClusterConfig:
        if not self.endpoints:
            raise located_error(("endpoints",), "list at least one etcd endpoint")
        if self.timeout > 30:
            raise located_error(("timeout",), f"timeout must be at most 30s, got {self.timeout:g}s")
        for index, endpoint in enumerate(self.endpoints):
            if endpoint in self.endpoints[:index]:
                raise located_error(("endpoints", index), f"endpoint {endpoint} is listed twice")
        return self


class Clustered(FrozenModel):
    """Run the unit on exactly one of several hosts, elected through etcd."""

    hosts: tuple[HostName, ...] = Field(
        min_length=1,
        max_length=64,
        description="Hosts that may run the unit, most preferred first. Required.",
        examples=[["db1", "db2", "db3"]],
    )
    ttl: Duration = Field(
        default="5s",
        validate_default=True,
        description=f"Lease time-to-live in whole seconds, {MIN_TTL:g}s (etcd's floor) to 1h: "
        "a host that stops renewing loses the unit after this long, and stops it itself "
        "before. Default 5s.",
        examples=["5s"],
    )
    failback: bool = Field(
        default=False,
        description="Hand the unit back to a more preferred host when one is up again "
        "(after hold_off). Default false (no preemption, like keepalived's nopreempt).",
        examples=[False],
    )
    hold_off: Duration = Field(
        default="30s",
        validate_default=True,
        description="After a takeover, the least time the unit stays before a failback moves "
        "it; after a voluntary release, the least time before this host takes it again "
        "(when another can). 0s to 365d. Default 30s.",
        examples=["30s"],
    )
    release_on: Literal["exhausted", "unhealthy"] = Field(
        default="exhausted",
        description="When the holder gives the unit up to the next host: exhausted (its "
        "ladder gave up) or unhealthy (at once). Default exhausted.",
        examples=["exhausted"],
    )

    @model_validator(mode="after")
    def _check(self) -> Clustered:
        if not MIN_TTL <= self.ttl <= MAX_TTL:
            raise located_error(
                ("ttl",), f"ttl must be from {MIN_TTL:g}s (etcd's floor) to 1h, got {self.ttl:g}s"
            )
        if self.ttl != int(self.ttl):
            raise located_error(("ttl",), f"etcd leases count whole seconds, got {self.ttl:g}s")
        for index, host in enumerate(self.hosts):
            if host in self.hosts[:index]:
                raise located_error(("hosts", index), f"host {host!r} is listed twice")
        return self


def tls_problems(tls: ClusterTLS) -> list[tuple[str, str]]:
    """(field, message) for each TLS file that cannot be used, naming the file: missing,
    unreadable, or not what it should be (one error for a cert and key that do not
    load together, at the key)."""
    problems: list[tuple[str, str]] = []
    context = ssl.create_default_context()
    if tls.ca is not None:
        try:
            context.load_verify_locations(cafile=tls.ca)
        except FileNotFoundError:
            problems.append(("ca", f"CA file {tls.ca} does not exist"))
        except PermissionError:
            problems.append(("ca", f"CA file {tls.ca} cannot be read"))
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(("ca", f"CA file {tls.ca} is not a PEM certificate ({exc})"))
    if tls.cert is not None and tls.key is not None:
        problems += cert_pair_problems(tls.cert, tls.key, context, "client certificate")
    return problems
