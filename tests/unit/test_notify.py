"""Notifier against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.systemd.notify import Notifier


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it goes into NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    def messages(self) -> list[dict[str, str]]:
        """Every datagram received so far, parsed into VAR -> value."""
        found: list[dict[str, str]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return found
            lines = data.decode("utf-8").split("\n")
            found.append(dict(line.split("=", 1) for line in lines))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeSystemd]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"@host-supervisor-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield fake
    fake.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("up")
    notifier.status("x")
    notifier.reloading()
    notifier.stopping()
    notifier.watchdog()
    assert notifier.watchdog_interval() is None
    asyncio.run(asyncio.wait_for(notifier.watchdog_loop(), 1))  # returns at once


def test_ready_status_stopping(systemd: FakeSystemd) -> None:
    notifier = Notifier()
    assert notifier.enabled
    notifier.ready("supervising 3 units")
    notifier.status("web.service failed;\nrestarting")
    notifier.status("ünïcödé → web@1.service")
    notifier.stopping()
    assert systemd.messages() == [
        {"READY": "1", "STATUS": "supervising 3 units"},
        {"STATUS": "web.service failed; restarting"},
        {"STATUS": "ünïcödé → web@1.service"},
        {"STOPPING": "1"},
    ]


def test_reloading_carries_the_monotonic_time(systemd: FakeSystemd) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [message] = systemd.messages()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 1.0),
        ("30000000", "self", 15.0),
        ("2000000", "1", None),  # meant for another process
        ("2000000", "nonsense", None),
        ("", None, None),
        ("0", None, None),
        ("abc", None, None),
    ],
)
def test_watchdog_interval(
    systemd: FakeSystemd,
    monkeypatch: pytest.MonkeyPatch,
    usec: str,
    pid: str | None,
    expected: float | None,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert Notifier().watchdog_interval() == expected


def test_watchdog_pings_come_from_the_event_loop(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier()
    assert notifier.watchdog_interval() == 0.05

    async def scenario() -> tuple[int, int, int]:
        task = asyncio.create_task(notifier.watchdog_loop())
        await asyncio.sleep(0.275)
        running = len(systemd.messages())
        time.sleep(0.3)  # noqa: ASYNC251  (on purpose: the loop stalls; no ping may go out)
        stalled = len(systemd.messages())
        await asyncio.sleep(0.125)
        resumed = len(systemd.messages())
        task.cancel()
        return running, stalled, resumed

    running, stalled, resumed = asyncio.run(scenario())
    assert 4 <= running <= 7
    assert stalled == 0
    assert resumed >= 2


def test_pings_are_watchdog_1(systemd: FakeSystemd) -> None:
    Notifier().watchdog()
    assert systemd.messages() == [{"WATCHDOG": "1"}]


def test_explicit_environment_and_unsetting_it(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    notifier = Notifier(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert notifier.watchdog_interval() == 2.0
    notifier.status("still talking")
    assert systemd.messages() == [{"STATUS": "still talking"}]

    other = Notifier({"NOTIFY_SOCKET": systemd.address})
    other.ready("ok")
    assert systemd.messages() == [{"READY": "1", "STATUS": "ok"}]
    assert "NOTIFY_SOCKET" not in os.environ
