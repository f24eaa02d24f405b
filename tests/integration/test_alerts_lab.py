"""Alerts from the daemon to a real SMTP server and a real HTTP receiver on the lab's
loopback, through apprise's mailto:// and json://: a failure then its recovery, a
burst across units grouped, and alerts spooled while the mail server is down and
each delivered once when it is back."""

from __future__ import annotations

import email
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import install_daemon, web_unit, write_config

pytestmark = pytest.mark.lab

ASSETS = Path(__file__).parent / "assets"
UNITS = [f"a{n}.service" for n in range(1, 8)]
MAIN = """\
guard:
  repair_budget: {max: 1000, window: 15m}
  breaker: {failures: 1000, open_for: 1m}
alerts:
  channels:
    mail:
      url: "mailto://127.0.0.1:2525?from=hs@example.com&to=ops@example.com&mode=insecure"
    hook: {url: "json://127.0.0.1:8599/alerts"}
"""
POLICY = """\
unit: {unit}
recovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}
alerts: [mail, hook]
"""


def mails(root: Path) -> list[str]:
    texts = []
    for path in sorted((root / "mail").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        parts = message.walk() if message.is_multipart() else [message]
        for part in parts:
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                texts.append(f"{message['Subject']}\n{payload.decode()}")
    return texts


def hooks(root: Path) -> list[str]:
    return [
        f"{doc['title']}\n{doc['message']}"
        for doc in (json.loads(p.read_text()) for p in sorted((root / "json").glob("*.json")))
    ]


def about(messages: list[str], unit: str) -> list[str]:
    return [m for m in messages if unit in m]


@pytest.fixture(scope="module")
def root(lab: Lab) -> Iterator[Path]:
    root = Path(lab.shared_dir)
    lab.install_unit(
        "smtp-sink.service",
        f"[Service]\nExecStart={sys.executable} {ASSETS / 'smtp_sink.py'} 2525 {root / 'mail'}\n",
    )
    lab.install_unit(
        "json-sink.service",
        f"[Service]\nExecStart=/usr/bin/python3 {ASSETS / 'json_sink.py'} 8599 {root / 'json'}\n",
    )
    lab.run("systemctl", "start", "smtp-sink.service", "json-sink.service")
    write_config(root / "etc", {f"{u}.yaml": POLICY.format(unit=u) for u in UNITS}, main=MAIN)
    for port, unit in enumerate(UNITS, start=8601):
        lab.install_unit(unit, web_unit(port))
        lab.run("systemctl", "start", unit)
    install_daemon(lab, root / "etc", root / "state")
    yield root


def test_a_failure_then_its_recovery_reach_both_channels(lab: Lab, root: Path) -> None:
    lab.run("systemctl", "kill", "-s", "KILL", "a1.service")
    for name, read in (("json", hooks), ("mail", mails)):
        lab.wait_for(
            lambda read=read: any("a1.service recovered" in m for m in read(root)),
            timeout=30,
            what=f"the recovery notice by {name}",
        )
        text = "\n".join(about(read(root), "a1.service"))
        assert text.index("a1.service failed") < text.index("a1.service recovered"), text
        assert "restart a1.service (attempt 1/3)" in text
        assert lab.run("hostname").stdout.strip() in text  # every message names the host
    for message in about(mails(root), "a1.service"):  # plain text, its line breaks kept
        assert len(message.splitlines()) >= 4, message


def test_a_burst_across_units_is_grouped(lab: Lab, root: Path) -> None:
    before = len(hooks(root))
    for unit in UNITS[1:5]:
        lab.run("systemctl", "kill", "-s", "KILL", unit)
    lab.wait_for(
        lambda: all(any(f"{u} recovered" in m for m in hooks(root)) for u in UNITS[1:5]),
        timeout=30,
        what="the burst's recovery notices",
    )
    burst = hooks(root)[before:]
    # 4 units x (failed, restart, result, recovered) = 16 alerts, in a few messages.
    assert len(burst) <= 4, burst
    assert any("alerts on" in m for m in burst)


@pytest.mark.parametrize(
    ("sink", "channel", "unit", "other"),
    [("smtp-sink", "mail", "a6.service", "hook"), ("json-sink", "hook", "a7.service", "mail")],
)
def test_alerts_are_spooled_while_a_channel_is_down_and_each_sent_once(
    lab: Lab, root: Path, sink: str, channel: str, unit: str, other: str
) -> None:
    read = {"mail": mails, "hook": hooks}
    lab.run("systemctl", "stop", f"{sink}.service")
    lab.run("systemctl", "kill", "-s", "KILL", unit)
    spool = root / "state" / "alerts" / channel
    lab.wait_for(
        lambda: any(spool.glob("*.json")), timeout=30, what=f"alerts spooled for {channel}"
    )
    assert about(read[channel](root), unit) == []
    lab.wait_for(  # the other channel is not held up by the broken one
        lambda: any(f"{unit} recovered" in m for m in read[other](root)),
        timeout=30,
        what=f"{other} delivering meanwhile",
    )
    lab.run("systemctl", "start", f"{sink}.service")
    lab.wait_for(
        lambda: (
            not any(spool.glob("*.json"))
            and any(f"{unit} recovered" in m for m in read[channel](root))
        ),
        timeout=90,
        what=f"the {channel} spool drained",
    )
    time.sleep(2.0)
    text = about(read[channel](root), unit)
    assert sum(m.count(f"{unit} failed") for m in text) == 1, text
    assert sum(m.count(f"{unit} recovered") for m in text) == 1, text


def test_test_alert_reports_each_channel_and_never_shows_a_secret(lab: Lab, root: Path) -> None:
    from tests.lab_units import daemon_cli

    good = lab.run(*daemon_cli(), "test-alert", "--config", str(root / "etc"), check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines() == ["mail: delivered", "hook: delivered"]
    lab.wait_for(
        lambda: any("test alert" in m for m in mails(root)), timeout=15, what="the test mail"
    )

    broken = root / "etc-broken"
    write_config(
        broken,
        {},
        main='alerts:\n  channels:\n    down: {url: "json://alice:s3cr3t@127.0.0.1:9/x"}\n',
    )
    result = lab.run(*daemon_cli(), "test-alert", "--config", str(broken), check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("down: NOT delivered: ")
    assert "s3cr3t" not in result.stdout + result.stderr
