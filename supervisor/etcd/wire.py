"""The JSON of etcd's v3 gateway, read and written with types (no I/O here).

The gateway (grpc-gateway over etcd's protobuf API, the same in etcd 3.4 and 3.5) writes
keys and values as base64, 64-bit integers as decimal strings, and leaves out every field
whose value is the default: no ``value`` for an empty value, no ``lease`` for lease 0, no
``succeeded`` for a failed transaction, no ``kvs`` for an empty range. So an absent field
reads as 0, "" or False here, and a present one of the wrong type is an
:class:`EtcdProtocolError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from supervisor.etcd.errors import EtcdProtocolError

Json = Mapping[str, object]

_INT = re.compile(r"-?[0-9]+")

#: gRPC codes that mean "ask another member": DeadlineExceeded and Unavailable (no
#: leader, leader changed, request timed out).
RETRY_CODES = frozenset({4, 14})
#: Messages etcd sends with code 2 (Unknown) that are as transient (etcd-io/etcd#21671).
RETRY_MESSAGES = frozenset({"not a primary lessor", "etcdserver: not a primary lessor"})


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd stores it. ``create_revision`` of a lock key is its fencing token."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    """A change seen by a watch. For a delete, ``kv`` has the key and ``mod_revision`` (the
    delete's revision) and nothing else; ``revision`` is always the change's revision."""

    kind: Literal["put", "delete"]
    kv: KeyValue
    revision: int


@dataclass(frozen=True)
class EndpointStatus:
    """What one member says of itself (``/v3/maintenance/status``)."""

    endpoint: str
    version: str
    member_id: int
    leader: int
    raft_term: int
    revision: int


@dataclass(frozen=True)
class WatchResponse:
    """One message of a watch stream, before the client decides what it means."""

    created: bool
    canceled: bool
    compact_revision: int
    cancel_reason: str
    revision: int
    events: tuple[WatchEvent, ...]


@dataclass(frozen=True)
class GatewayError:
    """An error the gateway answered with: gRPC code (2, Unknown, when it gave none)."""

    code: int
    message: str

    def retryable(self, http_status: int) -> bool:
        """True when another member may well answer (a 5xx, or a transient gRPC code)."""
        return http_status >= 500 or self.code in RETRY_CODES or self.message in RETRY_MESSAGES


# -- reading ------------------------------------------------------------------------------


def field(obj: Json, name: str) -> object:
    """The field by its proto name, or by its lowerCamelCase JSON name, or None."""
    if name in obj:
        return obj[name]
    head, *rest = name.split("_")
    return obj.get(head + "".join(part.title() for part in rest))


def int64(obj: Json, name: str) -> int:
    """An integer field: a decimal string or a JSON number; absent (or null) means 0."""
    raw = field(obj, name)
    if raw is None:
        return 0
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and _INT.fullmatch(raw):
        return int(raw)
    raise EtcdProtocolError(f"field {name!r}: expected an integer, got {raw!r}")


def boolean(obj: Json, name: str) -> bool:
    raw = field(obj, name)
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    raise EtcdProtocolError(f"field {name!r}: expected true or false, got {raw!r}")


def text(obj: Json, name: str) -> str:
    raw = field(obj, name)
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    raise EtcdProtocolError(f"field {name!r}: expected a string, got {raw!r}")


def b64text(obj: Json, name: str) -> str:
    """A bytes field (base64) holding UTF-8 text; absent means ""."""
    raw = text(obj, name)
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise EtcdProtocolError(f"field {name!r}: not base64-encoded UTF-8: {raw[:40]!r}") from None


def obj(parent: Json, name: str) -> Json:
    """A nested object; absent means empty."""
    raw = field(parent, name)
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return raw
    raise EtcdProtocolError(f"field {name!r}: expected an object, got {raw!r}")


def objects(parent: Json, name: str) -> list[Json]:
    """A list of objects; absent means empty."""
    raw = field(parent, name)
    if raw is None:
        return []
    if isinstance(raw, list) and all(isinstance(item, Mapping) for item in raw):
        return list(raw)
    raise EtcdProtocolError(f"field {name!r}: expected a list of objects, got {raw!r}")


def header_revision(body: Json) -> int:
    """The store's revision when the request was served (``header.revision``)."""
    return int64(obj(body, "header"), "revision")


def key_value(raw: Json) -> KeyValue:
    return KeyValue(
        key=b64text(raw, "key"),
        value=b64text(raw, "value"),
        create_revision=int64(raw, "create_revision"),
        mod_revision=int64(raw, "mod_revision"),
        version=int64(raw, "version"),
        lease=int64(raw, "lease"),
    )


def range_kvs(body: Json) -> list[KeyValue]:
    """The keys of a range response (``/v3/kv/range`` or a txn's ``response_range``)."""
    return [key_value(raw) for raw in objects(body, "kvs")]


def txn_ranges(body: Json) -> list[KeyValue]:
    """The keys of the last ``response_range`` among a transaction's responses."""
    found: list[KeyValue] = []
    for response in objects(body, "responses"):
        if field(response, "response_range") is not None:
            found = range_kvs(obj(response, "response_range"))
    return found


def status(endpoint: str, body: Json) -> EndpointStatus:
    header = obj(body, "header")
    return EndpointStatus(
        endpoint=endpoint,
        version=text(body, "version"),
        member_id=int64(header, "member_id"),
        leader=int64(body, "leader"),
        raft_term=int64(body, "raftTerm") or int64(header, "raft_term"),
        revision=int64(header, "revision"),
    )


def member_names(body: Json) -> dict[int, str]:
    return {int64(member, "ID"): text(member, "name") for member in objects(body, "members")}


def watch_response(message: Json) -> WatchResponse:
    """One message of ``/v3/watch``: ``{"result": {...}}``."""
    result = obj(message, "result")
    events: list[WatchEvent] = []
    for raw in objects(result, "events"):
        kind = text(raw, "type") or "PUT"
        if kind not in ("PUT", "DELETE"):
            raise EtcdProtocolError(f"field 'type': unknown watch event type {kind!r}")
        kv = key_value(obj(raw, "kv"))
        events.append(
            WatchEvent("put" if kind == "PUT" else "delete", kv=kv, revision=kv.mod_revision)
        )
    return WatchResponse(
        created=boolean(result, "created"),
        canceled=boolean(result, "canceled"),
        compact_revision=int64(result, "compact_revision"),
        cancel_reason=text(result, "cancel_reason"),
        revision=header_revision(result),
        events=tuple(events),
    )


def gateway_error(body: object) -> GatewayError | None:
    """The error in a gateway answer, or None when it is not one.

    Unary calls answer ``{"error": "...", "message": "...", "code": 5}``; streams (watch,
    keepalive) send ``{"error": {"grpc_code": 5, "http_code": 404, "message": "..."}}``.
    """
    if not isinstance(body, Mapping) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, Mapping):
        detail: Json = error
        code = int64(detail, "grpc_code") or int64(detail, "code") or 2
    else:
        detail = body
        code = int64(body, "code") or 2
    message = text(detail, "message") or str(error)
    return GatewayError(code=code, message=message.strip())


# -- writing ------------------------------------------------------------------------------


def b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def prefix_range_end(prefix: str) -> str:
    """The ``range_end`` (base64) that makes a range cover every key starting with ``prefix``.

    As etcd's own client does: add one to the last byte that is not 0xff and cut after it;
    an empty prefix, or one of only 0xff bytes, gets "\\0" (every key from ``key`` on).
    """
    end = bytearray(prefix.encode("utf-8"))
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return b64(bytes(end[: i + 1]))
    return b64(b"\0")
