"""The cluster tests' witness, its book driven with a pinned clock and its parser."""

from __future__ import annotations

import pytest

from tests.cluster.witness import Witness, parse_write


def test_increasing_tokens_are_accepted_and_a_lower_one_refused() -> None:
    book = Witness()
    assert book.write("a", 1, 0.0)[0] == 200
    assert book.write("b", 2, 1.0)[0] == 200
    status, body = book.write("a", 1, 2.0)
    assert (status, body["ok"], body["highest_token"]) == (409, False, 2)
    report = book.report(3.0)
    assert report["highest_token"] == 2
    assert report["highest_token_host"] == "b"
    assert report["rejected_stale"] == 1
    assert report["rejected_stale_by_host"] == {"a": 1}
    assert report["writes_by_host"] == {"a": 2, "b": 1}
    assert report["accepted_by_host"] == {"a": 1, "b": 1}
    assert report["same_token_two_hosts"] == []


def test_the_same_token_from_a_second_host_is_a_violation() -> None:
    book = Witness()
    assert book.write("a", 7, 0.0)[0] == 200
    assert book.write("a", 7, 1.0)[0] == 200  # the holder again: fine
    assert book.write("b", 7, 2.0)[0] == 409
    assert book.write("b", 7, 3.0)[0] == 409
    (seen,) = book.report(4.0)["same_token_two_hosts"]
    assert seen == {"token": 7, "hosts": ["a", "b"], "count": 2, "first": 2.0, "last": 3.0}


def test_two_hosts_writing_within_the_window_are_one_overlap_episode() -> None:
    book = Witness(window=0.15)
    for i in range(10):  # a alone: no overlap
        book.write("a", 1, i * 0.05)
    assert book.report(1.0)["overlaps"] == []
    t = 0.45
    book.write("b", 2, t)  # a wrote at 0.45 too
    book.write("a", 1, t + 0.05)
    book.write("b", 2, t + 0.1)
    # both quiet for longer than the window, then b alone, then a again with b
    book.write("b", 2, 2.0)
    book.write("a", 1, 2.1)
    overlaps = book.report(3.0)["overlaps"]
    assert [(o["start"], o["end"], o["hosts"]) for o in overlaps] == [
        (0.45, pytest.approx(0.55), ["a", "b"]),
        (2.1, 2.1, ["a", "b"]),
    ]
    assert overlaps[0]["tokens"] == {"a": [1], "b": [2]}
    assert overlaps[0]["writes"] == 3


def test_writes_further_apart_than_the_window_do_not_overlap() -> None:
    book = Witness(window=0.15)
    book.write("a", 1, 0.0)
    book.write("b", 2, 0.2)
    book.write("a", 3, 0.4)
    assert book.report(1.0)["overlaps"] == []


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        (b'{"host": "h", "token": 3, "t": 1.5}', "", ("h", 3)),
        (b"", "host=h&token=12", ("h", 12)),
        (b"{}", "host=h&token=-1", ("h", -1)),
        (b'{"token": 4}', "host=h&token=1", ("h", 4)),
    ],
)
def test_parse_write(body: bytes, query: str, expected: tuple[str, int]) -> None:
    assert parse_write(body, query) == expected


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"[1]", ""),
        (b"{", ""),
        (b'{"token": 1}', ""),
        (b'{"host": "h", "token": true}', ""),
        (b"", "host=h&token=x"),
    ],
)
def test_parse_write_refuses(body: bytes, query: str) -> None:
    with pytest.raises(ValueError):
        parse_write(body, query)
