"""The alert shell against real receivers on loopback: aiosmtpd for mailto://, aiohttp
for json://. apprise is the real one; nothing of the Alerter is mocked.

apprise's email plugin refuses a From address without a dot in its domain
(`from=a@x`) and silently drops such a To address, so the tests use example.com ones.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from supervisor.alerts import Alerter, Delivery, Redactor
from supervisor.config.main import AlertsConfig, Channel
from supervisor.core.alerting import Alert, Severity

HOST = "web01.test"
PASSWORD = "S3cretPassw0rd"
FAST = {
    "group_wait": 0.05,
    "send_timeout": 2.0,
    "backoff": 0.1,
    "backoff_max": 0.4,
    "min_interval": 0.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mailto(port: int, *, password: str | None = None) -> str:
    auth = f"alerts:{password}@" if password else ""
    return f"mailto://{auth}127.0.0.1:{port}?from=hs@example.com&to=ops@example.com&mode=insecure"


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def make_alert(
    unit: str | None = "web.service",
    event: str = "unhealthy",
    *,
    severity: Severity = Severity.CRITICAL,
    channels: tuple[str, ...] = ("mail",),
    title: str | None = None,
    body: str | None = None,
    resolves: tuple[str, ...] = (),
    problem: bool = False,
) -> Alert:
    return Alert(
        unit=unit,
        event=event,
        severity=severity,
        title=title or f"{unit} {event}",
        body=body or f"{unit} is {event}; restart tried; next: reload",
        channels=channels,
        time=time.time(),
        resolves=resolves,
        problem=problem,
    )


def config(channels: dict[str, str], **kwargs: Any) -> AlertsConfig:
    return AlertsConfig(
        channels={name: Channel(url=url) for name, url in channels.items()}, **kwargs
    )


def spooled(spool: Path, channel: str = "mail") -> list[Path]:
    return sorted((spool / channel).glob("*.json"))


def left_on_disk(spool: Path, channel: str = "mail") -> list[Path]:
    """Every file in the channel's spool and inbox (empty directories are fine)."""
    return sorted(p for p in (spool / channel).rglob("*") if p.is_file())


# --- an SMTP server ----------------------------------------------------------------------


@dataclass
class Mailbox:
    """What an aiosmtpd server on 127.0.0.1:port received; can be stopped and started."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def text(self, index: int) -> str:
        part = self.messages[index].get_body(("plain",))
        assert isinstance(part, EmailMessage)
        content: str = part.get_content()
        return content


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
async def alerters() -> AsyncIterator[list[Alerter]]:
    """Alerters a test makes; closed at the end even if the test fails."""
    made: list[Alerter] = []
    yield made
    for alerter in made:
        await alerter.close(timeout=0.5)


@pytest.fixture
def new_alerter(alerters: list[Alerter], tmp_path: Path) -> Callable[..., Alerter]:
    def make(channels: dict[str, str], spool: Path | None = None, **kwargs: Any) -> Alerter:
        settings = {**FAST, **kwargs}
        repeat = settings.pop("repeat_interval", 3600)
        spool_max = settings.pop("spool_max", 1000)
        alerter = Alerter(
            config(channels, repeat_interval=repeat, spool_max=spool_max),
            spool or tmp_path / "spool",
            HOST,
            **settings,
        )
        alerters.append(alerter)
        return alerter

    return make


# --- email -------------------------------------------------------------------------------


async def test_a_single_alert_arrives_with_host_title_and_body(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)})
    await alerter.start()
    alerter.submit(
        make_alert(title="web.service failed (signal)", body="killed by SIGKILL; restarting")
    )
    await eventually(lambda: len(mailbox.messages) == 1)
    assert mailbox.subjects == ["web.service failed (signal)"]
    text = mailbox.text(0)
    assert text.startswith(f"{HOST}: critical, web.service, ")
    assert "killed by SIGKILL; restarting" in text
    await asyncio.sleep(0.2)
    assert len(mailbox.messages) == 1


async def test_a_burst_across_units_arrives_as_one_message(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)}, group_wait=0.4)
    await alerter.start()
    units = [f"app{i}.service" for i in range(10)]
    for unit in units:
        alerter.submit(make_alert(unit))
    await eventually(lambda: len(mailbox.messages) == 1)
    await asyncio.sleep(0.3)
    assert mailbox.subjects == [f"10 alerts on {HOST}"]
    text = mailbox.text(0)
    assert text.startswith(f"{HOST}: 10 alerts")
    for unit in units:
        assert f"{unit} unhealthy" in text


async def test_duplicates_are_suppressed_and_recovery_follows_failure(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)})
    await alerter.start()
    failure = make_alert(title="web.service failed", problem=True)
    alerter.submit(failure)
    await asyncio.sleep(0.1)  # beyond group_wait: separate messages
    alerter.submit(failure)  # same unit and event within repeat_interval
    alerter.submit(
        make_alert(
            event="recovered",
            severity=Severity.INFO,
            title="web.service recovered",
            resolves=("unhealthy",),
        )
    )
    await eventually(lambda: len(mailbox.messages) == 2)
    await asyncio.sleep(0.2)
    assert mailbox.subjects == ["web.service failed", "web.service recovered"]


async def test_a_recovery_out_of_the_blue_is_not_sent(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)})
    await alerter.start()
    alerter.submit(make_alert(event="recovered", title="recovered?", resolves=("unhealthy",)))
    alerter.submit(make_alert("db.service", event="action", title="db restarted"))
    await eventually(lambda: len(mailbox.messages) == 1)
    await asyncio.sleep(0.2)
    assert mailbox.subjects == ["db restarted"]


async def test_min_severity_filters_per_channel(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    alerter = Alerter(
        AlertsConfig(
            channels={
                "mail": Channel(url=mailto(mailbox.port), min_severity="critical"),
            }
        ),
        tmp_path / "spool",
        HOST,
        group_wait=0.05,
        min_interval=0.0,
    )
    try:
        await alerter.start()
        alerter.submit(make_alert("a.service", severity=Severity.WARNING, title="just a warning"))
        alerter.submit(make_alert("b.service", severity=Severity.CRITICAL, title="critical one"))
        await eventually(lambda: len(mailbox.messages) == 1)
        await asyncio.sleep(0.2)
        assert mailbox.subjects == ["critical one"]
    finally:
        await alerter.close()


async def test_reminder_for_a_problem_still_open(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)}, repeat_interval=0.5)
    await alerter.start()
    alerter.submit(make_alert(title="web.service down", problem=True))
    await eventually(lambda: len(mailbox.messages) == 2, within=3)
    assert mailbox.subjects[0] == "web.service down"
    assert mailbox.subjects[1].startswith("web.service down (still unhealthy since ")
    assert mailbox.subjects[1].endswith("; reminder)")


async def test_sends_are_paced_outside_the_send_timeout(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    """apprise's email plugin sleeps 5.5 s between sends inside the send; the Alerter
    waits before the send instead, so a healthy channel never times out on it."""
    # The pause (2.5 s) is longer than a send may take (2 s): were it inside the send,
    # the send would time out. Both are long enough for a send on a loaded host.
    alerter = new_alerter({"mail": mailto(mailbox.port)}, min_interval=2.5, send_timeout=2.0)
    await alerter.start()
    arrived: list[float] = []

    alerter.submit(make_alert("a.service", title="first"))
    await eventually(lambda: len(mailbox.messages) == 1)
    arrived.append(time.monotonic())
    alerter.submit(make_alert("b.service", title="second"))
    await eventually(lambda: len(mailbox.messages) == 2, within=15)
    arrived.append(time.monotonic())
    assert mailbox.subjects == ["first", "second"]
    assert arrived[1] - arrived[0] >= 2.4
    assert not spooled(tmp_path / "spool")


# --- the spool ---------------------------------------------------------------------------


async def test_spooled_while_the_server_is_down_then_delivered_once_as_a_digest(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool)
    await alerter.start()
    mailbox.stop()
    titles = [f"alert {n}" for n in range(3)]
    for title in titles:
        alerter.submit(make_alert(f"{title.replace(' ', '')}.service", title=title))
        await asyncio.sleep(0.1)  # separate batches, separate messages
    await eventually(lambda: len(spooled(spool)) == 3)
    first = json.loads(spooled(spool)[0].read_text())
    assert first["title"] == "alert 0"
    assert first["body"].startswith(HOST)

    mailbox.start()
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: spooled(spool) == [])
    await asyncio.sleep(0.5)  # more than backoff_max: any duplicate would be here by now
    assert mailbox.subjects == [f"3 delayed alerts from {HOST}"]
    text = mailbox.text(0)
    assert [text.index(f"CRITICAL  {title}  (") for title in titles] == sorted(
        text.index(f"CRITICAL  {title}  (") for title in titles
    )  # oldest first
    assert all(text.count(title) == 1 for title in titles)
    assert left_on_disk(spool) == []


async def test_what_an_earlier_run_spooled_is_sent_on_start(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    mailbox.stop()
    first = new_alerter({"mail": mailto(mailbox.port)}, spool=spool)
    await first.start()
    first.submit(make_alert(title="from the first run"))
    await eventually(lambda: len(spooled(spool)) == 1)
    await first.close()

    mailbox.start()
    second = new_alerter({"mail": mailto(mailbox.port)}, spool=spool)
    await second.start()
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: spooled(spool) == [])
    assert mailbox.subjects == ["from the first run"]


async def test_spool_keeps_at_most_spool_max_and_says_how_many_were_dropped(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    mailbox.stop()
    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool, spool_max=2)
    await alerter.start()
    for n in range(4):
        alerter.submit(make_alert(f"u{n}.service", title=f"alert {n}"))
        await asyncio.sleep(0.1)
    await eventually(lambda: (spool / "mail" / ".dropped").exists())
    await eventually(lambda: len(spooled(spool)) == 2)
    await asyncio.sleep(0.1)
    assert len(spooled(spool)) == 2

    mailbox.start()
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: spooled(spool) == [])
    assert mailbox.subjects == [f"2 delayed alerts from {HOST}"]
    text = mailbox.text(0)
    assert "alert 2" in text and "alert 3" in text and "alert 1" not in text
    assert "2 older alerts were dropped" in text
    assert not (spool / "mail" / ".dropped").exists()
    alerter.submit(make_alert("u9.service", title="alert 9"))
    await eventually(lambda: len(mailbox.messages) == 2)
    assert "dropped" not in mailbox.text(1)
    await eventually(lambda: alerter.delivery_counts()["mail"]["sent"] == 2)
    counts = alerter.delivery_counts()["mail"]  # what /metrics exports
    assert (counts["sent"], counts["spooled"], counts["dropped"]) == (2, 4, 2)
    assert counts["failed"] >= 1


async def test_a_server_that_never_answers_times_out_and_the_alert_is_spooled(
    new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accept, then say nothing at all

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spool = tmp_path / "spool"
    try:
        alerter = new_alerter(
            {"mail": mailto(port)}, spool=spool, send_timeout=0.5, backoff=30, group_wait=0.01
        )
        await alerter.start()
        started = time.monotonic()
        alerter.submit(make_alert(title="into the void"))
        assert time.monotonic() - started < 0.05  # submit returned at once
        await eventually(lambda: len(spooled(spool)) == 1, within=3)
        elapsed = time.monotonic() - started
        assert connections  # it did connect
        assert 0.5 <= elapsed < 1.5
        assert json.loads(spooled(spool)[0].read_text())["title"] == "into the void"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_close_sends_open_batches_and_spools_what_it_cannot(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    alerter = new_alerter({"mail": mailto(mailbox.port)}, group_wait=60)
    await alerter.start()
    alerter.submit(make_alert(title="daemon stopping"))
    await alerter.close(timeout=3)
    assert mailbox.subjects == ["daemon stopping"]

    mailbox.stop()
    spool = tmp_path / "other-spool"
    down = new_alerter({"mail": mailto(mailbox.port)}, spool=spool, group_wait=60)
    await down.start()
    down.submit(make_alert(title="nobody listens"))
    await down.close(timeout=3)
    assert [json.loads(p.read_text())["title"] for p in spooled(spool)] == ["nobody listens"]


# --- test() and secrets ------------------------------------------------------------------


async def test_test_reports_per_channel_and_never_shows_the_password(
    mailbox: Mailbox,
    new_alerter: Callable[..., Alerter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = free_port()
    alerter = new_alerter(
        {
            "good": mailto(mailbox.port),
            "bad": mailto(closed, password=PASSWORD),
            "unusable": f"nonsense://alerts:{PASSWORD}@somewhere",
        }
    )
    with structlog.testing.capture_logs() as logs:
        await alerter.start()
        results = {d.channel: d for d in await alerter.test()}
        just_bad = await alerter.test("bad")
        missing = await alerter.test("nope")

    assert results["good"] == Delivery("good", True, "delivered")
    assert mailbox.subjects == [f"host-supervisor test alert from {HOST}"]
    assert mailbox.text(0).startswith(HOST)

    bad = results["bad"]
    assert not bad.ok
    assert "connection" in bad.detail.lower()
    assert just_bad[0].channel == "bad" and not just_bad[0].ok

    unusable = results["unusable"]
    assert not unusable.ok
    assert "apprise cannot use the URL nonsense://****" in unusable.detail

    configured = "no channel named 'nope' (configured: bad, good, unusable)"
    assert missing == [Delivery("nope", False, configured)]

    everything = " ".join(
        [repr(results), repr(just_bad), repr(logs), caplog.text, *capsys.readouterr()]
    )
    assert PASSWORD not in everything
    assert "mailto://****" in repr(logs)  # the masked URL is what logs show
    assert sum(1 for entry in logs if "apprise refused" in entry["event"]) == 1
    assert not spooled(tmp_path / "spool", "bad")  # test() bypasses the spool


def test_redactor_removes_every_part_of_the_url() -> None:
    redact = Redactor("slack://T0AB12/B0CD34/XyzTokenValue?footer=no")
    assert redact("posting to T0AB12/B0CD34/XyzTokenValue failed") == (
        "posting to ****/****/**** failed"
    )
    mail = Redactor(f"mailtos://alerts:{PASSWORD}@smtp.example.com:587?to=ops@example.com")
    text = mail(
        f"login as alerts with {PASSWORD} at smtp.example.com:587 for "
        "mailtos://a...s:****@s...m failed"
    )
    assert PASSWORD not in text and "smtp.example.com" not in text
    assert ":587" in text and "mailtos://****" in text
    assert Redactor("json://127.0.0.1:8080/hook")("refused by 127.0.0.1:8080") == (
        "refused by 127.0.0.1:8080"
    )
    # Query keys are words, not secrets; their values are.
    query = Redactor("mailto://127.0.0.1?from=hs@corp.example&mode=insecure")
    assert query("mail from hs@corp.example, mode insecure") == "mail from ****, mode ****"


# --- json:// -----------------------------------------------------------------------------


@dataclass
class Receiver:
    base: str
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def titles(self, path: str = "/all") -> list[str]:
        return [str(payload["title"]) for got, payload in self.posts if got == path]

    def bodies(self, path: str = "/all") -> list[str]:
        return [str(payload["message"]) for got, payload in self.posts if got == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        found.posts.append((request.path, await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{name}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.base = f"json://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


async def test_json_single_burst_and_recovery(
    receiver: Receiver, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    alerter = Alerter(
        AlertsConfig(
            channels={
                "all": Channel(url=f"{receiver.base}/all"),
                "critical": Channel(url=f"{receiver.base}/critical", min_severity="critical"),
            }
        ),
        tmp_path / "spool",
        HOST,
        group_wait=0.3,
        backoff=0.1,
        min_interval=0.0,
    )
    both = ("all", "critical")
    try:
        await alerter.start()
        alerter.submit(
            make_alert(title="web.service failed", body="exit code 3", channels=both, problem=True)
        )
        await eventually(lambda: len(receiver.posts) == 2)
        assert receiver.titles("/all") == ["web.service failed"]
        assert receiver.titles("/critical") == ["web.service failed"]
        assert receiver.bodies()[0].startswith(f"{HOST}: critical, web.service")
        assert "exit code 3" in receiver.bodies()[0]
        assert receiver.posts[0][1]["type"] == "failure"

        for n in range(10):
            alerter.submit(make_alert(f"app{n}.service", severity=Severity.WARNING, channels=both))
        await eventually(lambda: len(receiver.titles("/all")) == 2)
        await asyncio.sleep(0.4)
        assert receiver.titles("/all")[1] == f"10 alerts on {HOST}"
        assert all(f"app{n}.service unhealthy" in receiver.bodies()[1] for n in range(10))
        assert receiver.titles("/critical") == ["web.service failed"]  # warnings filtered

        alerter.submit(
            make_alert(
                event="recovered",
                severity=Severity.INFO,
                title="web.service recovered",
                channels=both,
                resolves=("unhealthy",),
            )
        )
        await eventually(lambda: len(receiver.titles("/critical")) == 2)
        await asyncio.sleep(0.1)
        # The recovery reaches the critical-only channel because the failure did.
        assert receiver.titles("/critical") == ["web.service failed", "web.service recovered"]
        assert receiver.titles("/all")[-1] == "web.service recovered"
        assert len(receiver.titles("/all")) == 3
    finally:
        await alerter.close()


async def test_mail_is_plain_text_and_keeps_its_line_breaks(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter]
) -> None:
    """apprise called without a body format treats the text as HTML: a mail's lines
    were run together. The body is plain text, sent as text/plain, lines intact."""
    alerter = new_alerter({"mail": mailto(mailbox.port)})
    await alerter.start()
    body = "restart tried: job done\nreload tried: failed\n\nnext: restore <nginx.conf> & retry"
    alerter.submit(make_alert(title="web.service exhausted", body=body))
    await eventually(lambda: len(mailbox.messages) == 1)
    message = mailbox.messages[0]
    assert [part.get_content_type() for part in message.walk()] == ["text/plain"]
    text = mailbox.text(0)
    assert body in text.replace("\r\n", "\n")


def plant_spool(spool: Path, count: int, channel: str = "mail") -> list[str]:
    """`count` alerts left in the spool by an earlier run, as it writes them; titles."""
    from supervisor.alerts.spool import Spool, SpooledMessage

    box = Spool(spool / channel, 1000)
    box.prepare()
    titles = []
    for n in range(count):
        title = f"app{n:03d}.service failed"
        detail = "restart tried: job done; the unit failed again within the settle time"
        body = f"{HOST}: critical, app{n:03d}.service, now\n{title}\n\nexit code {n}\n{detail}"
        box.write(SpooledMessage(title, body, Severity.CRITICAL, time.time()))
        titles.append(title)
    return titles


async def test_a_backlog_of_200_goes_out_as_one_digest_once(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    """One mail per 5.5 s made 1,000 spooled alerts take an hour and a half: a backlog
    is one digest, sent once, and its files leave the spool only once it went."""
    spool = tmp_path / "spool"
    titles = plant_spool(spool, 200)
    mailbox.stop()
    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool, backoff=0.2)
    await alerter.start()
    await asyncio.sleep(0.5)  # the digest fails at least once: every alert is kept
    assert len(spooled(spool)) == 200

    mailbox.start()
    await eventually(lambda: len(mailbox.messages) == 1, within=10)
    await eventually(lambda: spooled(spool) == [])
    await asyncio.sleep(0.6)  # more than backoff_max: a second copy would be here by now
    assert mailbox.subjects == [f"200 delayed alerts from {HOST}"]
    text = mailbox.text(0).replace("\r\n", "\n")
    assert len(text) < 25_000  # bounded
    shown = [title for title in titles if title in text]
    assert shown == titles[: len(shown)]  # oldest first
    assert all(text.count(title) == 1 for title in shown)  # none twice
    assert f"... and {200 - len(shown)} more alerts" in text
    assert "exit code 0" in text
    assert left_on_disk(spool) == []


async def test_a_backlog_keeps_every_alert_and_counts_true_repeats(
    receiver: Receiver, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    from supervisor.alerts.spool import Spool, SpooledMessage

    spool = tmp_path / "spool"
    box = Spool(spool / "hook", 1000)
    box.prepare()
    for n in range(50):
        box.write(SpooledMessage("db.service down (reminder)", "still down", Severity.WARNING, n))
    for n in range(3):
        box.write(SpooledMessage("3 alerts on host1", f"burst line {n}", Severity.WARNING, 60 + n))
    box.write(SpooledMessage("db.service recovered", "back", Severity.INFO, 100.0))
    alerter = new_alerter({"hook": f"{receiver.base}/hook"}, spool=spool)
    await alerter.start()
    await eventually(lambda: len(receiver.posts) == 1)
    await eventually(lambda: spooled(spool, "hook") == [])
    (body,) = receiver.bodies("/hook")
    assert receiver.titles("/hook") == [f"54 delayed alerts from {HOST}"]
    assert "WARNING  db.service down (reminder)  (50 times, " in body  # true repeats
    assert body.count("still down") == 1
    # Alerts under one title with other texts (bursts) are each kept, never merged away.
    assert all(f"burst line {n}" in body for n in range(3))
    assert body.index("db.service down") < body.index("db.service recovered")
    assert receiver.posts[0][1]["type"] == "warning"  # the highest severity
