"""journald's native protocol from the standard library, against a datagram socket
standing in for journald (the real one is in test_logs.py, in the lab)."""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.systemd.journal_send import JournalSender, encode, valid_field_name


def parse(data: bytes) -> dict[str, bytes]:
    """The fields of one native-protocol entry, as journald reads them."""
    fields: dict[str, bytes] = {}
    while data:
        line, sep, rest = data.partition(b"\n")
        assert sep, data
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = rest
        else:
            key = line
            (size,) = struct.unpack("<Q", rest[:8])
            value, data = rest[8 : 8 + size], rest[8 + size :]
            assert data[:1] == b"\n", data[:10]
            data = data[1:]
        fields[key.decode()] = value
    return fields


class FakeJournald:
    """The receiving end: plain datagrams, or an empty one carrying a memfd."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def receive(self) -> tuple[dict[str, bytes], int | None]:
        """One entry, and the seals of the memfd it came in (None: a plain datagram)."""
        fds = array.array("i")
        data, ancdata, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, payload in ancdata:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not fds:
            return parse(data), None
        assert data == b"" and len(fds) == 1  # journald refuses anything else
        [fd] = fds
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            with os.fdopen(os.dup(fd), "rb") as memfd:
                memfd.seek(0)
                return parse(memfd.read()), seals
        finally:
            os.close(fd)


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[FakeJournald]:
    fake = FakeJournald(tmp_path / "journal.sock")
    yield fake
    fake.sock.close()


def test_a_value_without_newline_is_key_equals_value() -> None:
    assert encode({"MESSAGE": "unit failed", "UNIT": "web.service"}) == (
        b"MESSAGE=unit failed\nUNIT=web.service\n"
    )


def test_a_value_with_newlines_is_sent_binary_safe() -> None:
    data = encode({"MESSAGE": "line 1\nline 2", "PRIORITY": "3"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 13) + b"line 1\nline 2\nPRIORITY=3\n"
    assert parse(data) == {"MESSAGE": b"line 1\nline 2", "PRIORITY": b"3"}


def test_utf8_and_bytes_values() -> None:
    data = encode({"MESSAGE": "ünïcödé → web@1.service", "BLOB": b"\x00\xff=\n"})
    assert parse(data) == {"MESSAGE": "ünïcödé → web@1.service".encode(), "BLOB": b"\x00\xff=\n"}


@pytest.mark.parametrize("name", ["", "message", "_PID", "1ST", "A-B", "A" * 65, "UNIT="])
def test_names_journald_would_drop_are_refused(name: str) -> None:
    assert not valid_field_name(name)
    with pytest.raises(ValueError, match="not a journal field name"):
        encode({name: "x"})


def test_names_journald_keeps() -> None:
    assert all(valid_field_name(n) for n in ("MESSAGE", "CODE_FILE", "A" * 64, "X1_2"))


def test_an_entry_is_one_datagram(journald: FakeJournald) -> None:
    send = JournalSender(journald.path)
    send(MESSAGE="restart finished", PRIORITY="6", UNIT="web.service", TRACEBACK="a\nb")
    fields, seals = journald.receive()
    assert seals is None
    assert fields == {
        "MESSAGE": b"restart finished",
        "PRIORITY": b"6",
        "UNIT": b"web.service",
        "TRACEBACK": b"a\nb",
    }
    send.close()


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(journald: FakeJournald) -> None:
    send = JournalSender(journald.path)
    big = "x" * 300_000 + "\nend"  # over the default socket buffer (about 208 KiB)
    send(MESSAGE="big", DUMP=big)
    fields, seals = journald.receive()
    assert fields == {"MESSAGE": b"big", "DUMP": big.encode()}
    assert seals is not None
    for seal in (fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_WRITE):
        assert seals & seal, seals
    send.close()


def test_no_journald_is_an_error_for_the_caller(tmp_path: Path) -> None:
    send = JournalSender(str(tmp_path / "nothing-here"))
    with pytest.raises(OSError):
        send(MESSAGE="lost?")
    send.close()
