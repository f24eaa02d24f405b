"""Exceptions of the etcd adapter, each with the reason it exists.

Every message names the endpoint it is about (scheme, host and port: endpoints never carry
credentials, the client refuses them) so an operator can tell which member misbehaved.
"""

from __future__ import annotations

from collections.abc import Sequence

from supervisor.errors import SupervisorError


class EtcdError(SupervisorError):
    """etcd answered with an error, or a request or a watch broke; names the endpoint.

    ``code`` is the gRPC status code the gateway reported (5 not found, 14 unavailable...),
    or None when the failure was not an answer from etcd (a broken stream, say).
    """

    def __init__(self, detail: str, *, endpoint: str | None = None, code: int | None = None):
        self.detail = detail
        self.endpoint = endpoint
        self.code = code
        super().__init__(f"etcd {endpoint}: {detail}" if endpoint else f"etcd: {detail}")


class EtcdUnavailable(EtcdError):
    """No endpoint answered; names every endpoint tried and why each failed."""

    def __init__(self, failures: Sequence[tuple[str, str]]):
        self.failures = tuple(failures)
        tried = "; ".join(f"{endpoint} ({reason})" for endpoint, reason in self.failures)
        super().__init__(f"no endpoint answered: {tried}")


class EtcdConfigError(EtcdError):
    """The client cannot be set up as configured (TLS material, endpoints); names the file
    or the endpoint that is wrong."""


class EtcdProtocolError(EtcdError):
    """The gateway answered something this client cannot read (a field of the wrong type,
    bad base64, not JSON): a version mismatch or a proxy in the way, never a retryable
    condition."""


class WatchCompacted(EtcdError):
    """The watch's start revision has been compacted away: the events since then are lost.

    The caller re-reads the keys (a fresh revision) and watches again from there.
    """

    def __init__(self, compact_revision: int, *, endpoint: str | None = None):
        self.compact_revision = compact_revision
        super().__init__(
            f"watch start revision was compacted (compacted up to {compact_revision})",
            endpoint=endpoint,
        )
