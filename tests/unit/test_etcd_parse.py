"""The etcd gateway's JSON, read without an etcd: absent fields, int64 strings, base64.

The answers are copied from etcd 3.4.23's gateway (keys shortened).
"""

from __future__ import annotations

import base64
import json

import pytest

from supervisor.etcd import EtcdConfigError, EtcdProtocolError, EtcdTLS, KeyValue, WatchEvent, wire
from supervisor.etcd.transport import check_endpoints, first_json

HEADER = {"cluster_id": "15118495548433857066", "member_id": "13668033151171901709"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_key_with_every_field_reads_as_integers_and_text() -> None:
    raw = {
        "key": b64("/a/k"),
        "create_revision": "3",
        "mod_revision": "5",
        "version": "2",
        "value": b64("héllo"),
        "lease": "4111120295476850701",
    }
    assert wire.key_value(raw) == KeyValue("/a/k", "héllo", 3, 5, 2, 4111120295476850701)


def test_absent_fields_read_as_zero_and_empty() -> None:
    # An empty value and lease 0 are left out by the gateway; a delete event has only
    # the key and its mod_revision.
    assert wire.key_value({"key": b64("x"), "create_revision": "2", "mod_revision": "2"}) == (
        KeyValue("x", "", 2, 2, 0, 0)
    )
    assert wire.header_revision({}) == 0
    assert wire.range_kvs({"header": {**HEADER, "revision": "7"}}) == []


def test_int64_accepts_strings_and_numbers_and_refuses_the_rest() -> None:
    assert wire.int64({"n": "-12"}, "n") == -12
    assert wire.int64({"n": 12}, "n") == 12
    assert wire.int64({"n": "18446744073709551615"}, "n") == 2**64 - 1  # uint64 member ids
    for bad in ("12a", "", "1.5", 1.5, True, [1], {"x": 1}):
        with pytest.raises(EtcdProtocolError, match="field 'n': expected an integer"):
            wire.int64({"n": bad}, "n")


def test_camel_case_names_are_read_too() -> None:
    # etcd's gateway writes proto names; a gateway built with JSON names would not.
    assert wire.int64({"createRevision": "9"}, "create_revision") == 9


def test_bad_base64_and_bad_utf8_are_protocol_errors_naming_the_field() -> None:
    with pytest.raises(EtcdProtocolError, match="field 'key': not base64"):
        wire.key_value({"key": "!!notbase64"})
    with pytest.raises(EtcdProtocolError, match="field 'value': not base64-encoded UTF-8"):
        wire.key_value({"key": b64("k"), "value": base64.b64encode(b"\xff\xfe").decode()})


def test_a_successful_create_transaction() -> None:
    kv = {"key": b64("/l"), "create_revision": "3", "mod_revision": "3", "version": "1"}
    body = {
        "header": {**HEADER, "revision": "3"},
        "succeeded": True,
        "responses": [
            {"response_put": {"header": {"revision": "3"}}},
            {"response_range": {"header": {"revision": "3"}, "kvs": [kv], "count": "1"}},
        ],
    }
    assert wire.boolean(body, "succeeded") is True
    assert wire.txn_ranges(body) == [KeyValue("/l", "", 3, 3, 1, 0)]


def test_a_failed_transaction_leaves_succeeded_out() -> None:
    body = {"header": {**HEADER, "revision": "3"}}
    assert wire.boolean(body, "succeeded") is False
    assert wire.txn_ranges(body) == []
    with pytest.raises(EtcdProtocolError, match="field 'succeeded'"):
        wire.boolean({"succeeded": "true"}, "succeeded")


def test_status_and_members() -> None:
    status = {
        "header": {**HEADER, "revision": "1", "raft_term": "2"},
        "version": "3.4.23",
        "dbSize": "20480",
        "leader": "13668033151171901709",
        "raftIndex": "4",
        "raftTerm": "2",
    }
    got = wire.status("http://127.0.0.1:2379", status)
    assert (got.version, got.member_id, got.leader, got.raft_term, got.revision) == (
        "3.4.23",
        13668033151171901709,
        13668033151171901709,
        2,
        1,
    )
    members = {"members": [{"ID": "13668033151171901709", "name": "e1"}, {"ID": "5"}]}
    assert wire.member_names(members) == {13668033151171901709: "e1", 5: ""}


def test_watch_messages_put_delete_progress_and_compacted() -> None:
    message = {
        "result": {
            "header": {**HEADER, "revision": "6"},
            "events": [
                {"kv": {"key": b64("/b/k"), "create_revision": "5", "mod_revision": "5"}},
                {"type": "DELETE", "kv": {"key": b64("/b/k"), "mod_revision": "6"}},
            ],
        }
    }
    got = wire.watch_response(message)
    assert got.events == (
        WatchEvent("put", KeyValue("/b/k", "", 5, 5, 0, 0), revision=5),
        WatchEvent("delete", KeyValue("/b/k", "", 0, 6, 0, 0), revision=6),
    )
    created = wire.watch_response({"result": {"header": HEADER, "created": True}})
    assert created.created and not created.events
    progress = wire.watch_response({"result": {"header": {**HEADER, "revision": "9"}}})
    assert (progress.created, progress.canceled, progress.events) == (False, False, ())
    compacted = {"result": {"header": HEADER, "canceled": True, "compact_revision": "4"}}
    assert (
        wire.watch_response(compacted).canceled,
        wire.watch_response(compacted).compact_revision,
    ) == (
        True,
        4,
    )
    with pytest.raises(EtcdProtocolError, match="unknown watch event type 'MOVE'"):
        wire.watch_response({"result": {"events": [{"type": "MOVE", "kv": {}}]}})


def test_gateway_errors_unary_and_streamed() -> None:
    unary = {"error": "etcdserver: requested lease not found", "code": 5, "message": "x"}
    assert wire.gateway_error(unary) == wire.GatewayError(5, "x")
    streamed = {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}}
    error = wire.gateway_error(streamed)
    assert error == wire.GatewayError(14, "etcdserver: no leader")
    assert error.retryable(200)
    assert not wire.GatewayError(5, "etcdserver: requested lease not found").retryable(404)
    assert wire.GatewayError(2, "not a primary lessor").retryable(500)
    assert wire.GatewayError(3, "x").retryable(500)  # any 5xx
    assert wire.gateway_error({"header": HEADER}) is None


def test_first_json_reads_the_first_line_of_a_stream() -> None:
    lines = [{"result": {"TTL": "5"}}, {"result": {"TTL": "4"}}]
    raw = "\n".join(json.dumps(line) for line in lines).encode()
    assert first_json(raw, 200, "http://e") == {"result": {"TTL": "5"}}
    assert first_json(b"404 page not found", 404, "http://e") is None
    with pytest.raises(EtcdProtocolError, match="etcd http://e: not JSON"):
        first_json(b"<html>", 200, "http://e")


def test_prefix_range_end_as_etcds_own_client() -> None:
    def end(prefix: str) -> bytes:
        return base64.b64decode(wire.prefix_range_end(prefix))

    assert end("/a/") == b"/a0"
    assert end("a\xff") == b"a\xc3\xc0"  # 'ÿ' is c3 bf in UTF-8: the bf becomes c0
    assert end("") == b"\0"


def test_endpoints_are_checked_without_echoing_a_password() -> None:
    assert check_endpoints(["http://127.0.0.1:2379/"], None) == ("http://127.0.0.1:2379",)
    with pytest.raises(EtcdConfigError) as caught:
        check_endpoints(["https://root:s3cret@10.0.0.1:2379"], None)
    assert "s3cret" not in str(caught.value) and "10.0.0.1:2379" in str(caught.value)
    for bad in ([], "http://127.0.0.1:2379", ["127.0.0.1:2379"], ["http://h:1/v3"]):
        with pytest.raises(EtcdConfigError):
            check_endpoints(bad, None)
    with pytest.raises(EtcdConfigError, match="TLS settings are given but this endpoint is http"):
        check_endpoints(["http://h:1"], EtcdTLS())
