"""The alert inbox: alerts taken but not yet delivered or spooled are on disk, so a
daemon killed in the grouping window (or between a send and its bookkeeping) loses
none and tells none twice. The killed alerter is a real process, killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.alerts import Alerter
from supervisor.alerts.spool import Spool, SpooledMessage
from supervisor.core.alerting import Severity
from tests.unit import test_alerts as shared
from tests.unit.test_alerts import (
    HOST,
    Mailbox,
    eventually,
    left_on_disk,
    mailto,
    make_alert,
    spooled,
)

# The SMTP server and alerter fixtures of the alert tests, shared.
mailbox = shared.mailbox
alerters = shared.alerters
new_alerter = shared.new_alerter

KILLED_ALERTER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from supervisor.alerts import Alerter
    from supervisor.config.main import AlertsConfig, Channel
    from supervisor.core.alerting import Alert, Severity

    async def main() -> None:
        spool, url, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        config = AlertsConfig(channels={"mail": Channel(url=url)})
        alerter = Alerter(config, spool, "web01.test", group_wait=3600.0, min_interval=0.0)
        await alerter.start()
        for n in range(count):
            alerter.submit(Alert(f"app{n}.service", "unhealthy", Severity.CRITICAL,
                                 f"app{n}.service failed", "restart next", ("mail",),
                                 time.time(), problem=True))
        print("submitted", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def pending(spool: Path, channel: str = "mail") -> list[Path]:
    return sorted((spool / channel / "pending").glob("*.json"))


async def test_alerts_in_the_grouping_window_survive_a_sigkill(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    proc = subprocess.Popen(  # noqa: ASYNC220  (a process to SIGKILL; it starts at once)
        [sys.executable, "-c", KILLED_ALERTER, str(spool), mailto(mailbox.port), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, "")
        assert any(line.strip() == "submitted" for line in lines)  # after its log lines
        await eventually(lambda: len(pending(spool)) == 3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert mailbox.messages == []  # killed inside its hour-long grouping window

    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool)
    await alerter.start()
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: left_on_disk(spool) == [])
    assert mailbox.subjects == [f"3 delayed alerts from {HOST}"]
    text = mailbox.text(0)
    assert all(text.count(f"app{n}.service failed") == 1 for n in range(3))


async def test_a_spooled_message_and_its_pending_alerts_are_told_once(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    """Killed after the message was spooled but before its alerts left the inbox."""
    spool = tmp_path / "spool"
    box = Spool(spool / "mail", 100)
    box.prepare()
    (spool / "mail" / "pending").mkdir()
    names = ["00000000000000000001.json", "00000000000000000002.json"]
    for n, name in enumerate(names):
        alone = SpooledMessage(f"a{n} failed", f"{HOST}: a{n}", Severity.CRITICAL, time.time())
        (spool / "mail" / "pending" / name).write_text(alone.to_json())
    group = SpooledMessage(
        "2 alerts on web01",
        "1. a0 failed\n2. a1 failed",
        Severity.CRITICAL,
        time.time(),
        covers=tuple(names),
    )
    box.write(group)
    assert json.loads(spooled(spool)[0].read_text())["covers"] == names

    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool)
    await alerter.start()
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: left_on_disk(spool) == [])
    assert mailbox.subjects == ["2 alerts on web01"]


async def test_an_alert_leaves_the_inbox_once_delivered_or_spooled(
    mailbox: Mailbox, new_alerter: Callable[..., Alerter], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    alerter = new_alerter({"mail": mailto(mailbox.port)}, spool=spool, group_wait=0.3)
    await alerter.start()
    alerter.submit(make_alert(title="delivered"))
    await eventually(lambda: len(pending(spool)) == 1)  # while it waits in its batch
    await eventually(lambda: len(mailbox.messages) == 1)
    await eventually(lambda: pending(spool) == [])

    mailbox.stop()
    alerter.submit(make_alert("db.service", title="spooled"))
    await eventually(lambda: len(spooled(spool)) == 1)
    await eventually(lambda: pending(spool) == [])
    doc = json.loads(spooled(spool)[0].read_text())
    assert doc["title"] == "spooled" and len(doc["covers"]) == 1
