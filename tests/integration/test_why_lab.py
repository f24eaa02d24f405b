"""`why` and the journal's MESSAGE_ID=s against a real systemd: a unit killed by a
signal, and a unit whose HTTP check fails, are repaired; `why` names each restart and
its cause, and `journalctl MESSAGE_ID=...` finds the detected and repaired records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.core.notices import MessageId
from supervisor.testing.lab import Lab
from tests.lab_units import (
    DAEMON_UNIT,
    SOCKET,
    cli,
    install_daemon,
    web_unit,
    write_config,
)

pytestmark = pytest.mark.lab

CRASHY = "why-crash.service"
CHECKED = "why-check.service"
LADDER = "recovery: {ladder: [restart], cooldown: 1s, settle: 1s}\n"
POLICIES = {
    "why-crash.yaml": f"unit: {CRASHY}\n{LADDER}",
    "why-check.yaml": f"""\
unit: {CHECKED}
checks:
  - name: http
    http: {{url: "http://127.0.0.1:8502/why-ok", expect_status: 200}}
    interval: 300ms
    timeout: 250ms
    failures: 2
    successes: 1
recovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}
""",
}


def hs(lab: Lab, *args: str) -> str:
    return cli(lab, *args, "--socket", SOCKET)


def recovered(lab: Lab, unit: str) -> bool:
    entries = json.loads(hs(lab, "history", unit, "--json"))["entries"]
    return any(str(e["message"]).startswith("recovered:") for e in entries)


def journal(lab: Lab, *matches: str) -> list[dict[str, str]]:
    out = lab.run(
        "journalctl", "-q", "--no-pager", "-o", "json", f"_SYSTEMD_UNIT={DAEMON_UNIT}", *matches,
        check=False,
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def served(lab: Lab) -> Iterator[Path]:
    """The directory the checked unit serves; its why-ok file is what the check asks for."""
    root = Path(lab.shared_dir)
    docroot = root / "www"
    docroot.mkdir()
    (docroot / "why-ok").write_text("ok\n")
    write_config(root / "etc", POLICIES)
    lab.install_unit(CRASHY, web_unit(8501))
    lab.install_unit(
        CHECKED,
        web_unit(8502).replace("--directory /", f"--directory {docroot}"),
    )
    for unit in (CRASHY, CHECKED):
        lab.run("systemctl", "start", unit)
    install_daemon(lab, root / "etc", root / "state")
    yield docroot


@pytest.fixture(scope="module")
def crashed(lab: Lab, served: Path) -> None:
    """CRASHY killed by SIGKILL once, and repaired."""
    lab.wait_for(lambda: bool(hs(lab, "status", CRASHY)), timeout=10, what="the daemon's status")
    lab.run("systemctl", "kill", "-s", "KILL", CRASHY)
    lab.wait_for(lambda: recovered(lab, CRASHY), timeout=20, what=f"{CRASHY} recovered")


def test_why_names_the_restart_after_a_crash_and_its_cause(lab: Lab, crashed: None) -> None:
    text = hs(lab, "why", CRASHY)
    lines = text.splitlines()
    assert lines[0] == f"{CRASHY}: the last 1 chain(s) of events and decisions, oldest first"
    assert lines[2].endswith("unit failed (failed/failed (signal)) -> unhealthy"), text
    assert any(
        line.endswith("-> ladder rung 1 of 1: restart (attempt 1 of 3, cooldown 1s)")
        for line in lines
    ), text
    assert any("-> restart done: job done" in line for line in lines), text
    assert lines[-1].endswith("-> recovered: healthy after attempt 1"), text

    [chain] = json.loads(hs(lab, "why", CRASHY, "--json"))["chains"]
    roles = [link["role"] for link in chain["links"]]
    # A hold may come first (the daemon observes for a moment after it starts), and
    # "healthy" before the job's "done" (the unit is active before systemd reports the
    # job finished): the chain keeps the order things happened in.
    assert roles[0] == "event" and roles[-1] == "outcome", roles
    assert set(roles[1 : roles.index("action")]) <= {"decision"}, roles
    assert roles.index("action") < roles.index("result"), roles
    rule = chain["links"][roles.index("action")]["rule"]
    assert rule.startswith("ladder rung 1 of 1 (restart), attempt 1 of 3"), rule


def test_why_names_the_failing_check_and_its_threshold(lab: Lab, served: Path) -> None:
    (served / "why-ok").unlink()
    lab.wait_for(
        lambda: "restart (attempt 1/3)" in hs(lab, "history", CHECKED),
        timeout=20,
        what=f"{CHECKED} restarted for its failing check",
    )
    (served / "why-ok").write_text("ok\n")
    lab.wait_for(lambda: recovered(lab, CHECKED), timeout=20, what=f"{CHECKED} recovered")

    text = hs(lab, "why", CHECKED)
    assert "http check critical after 2 result(s) in a row (threshold 2): " in text, text
    assert "-> unhealthy (failing checks http)" in text, text
    assert "-> ladder rung 1 of 1: restart (attempt 1 of 3, cooldown 1s)" in text, text
    assert "stopped cleanly" not in text, text  # the restart's own stop is no news
    chain = json.loads(hs(lab, "why", CHECKED, "--json", "--last", "100"))["chains"][0]
    roles = [link["role"] for link in chain["links"]]
    assert roles[:2] == ["event", "decision"] and "action" in roles, roles


def test_journalctl_finds_the_detected_and_repaired_records_by_message_id(
    lab: Lab, crashed: None
) -> None:
    detected = journal(lab, f"MESSAGE_ID={MessageId.DETECTED.value}", f"UNIT={CRASHY}")
    assert detected, "no record with the detected MESSAGE_ID"
    first = detected[0]
    assert first["MESSAGE"].startswith("unit failed ")
    assert f"unit={CRASHY}" in first["MESSAGE"]
    assert "message_id" not in first["MESSAGE"].lower()
    assert first["STATE"] == "failed/failed (signal)"
    assert first["ACTION"] == "detect"
    assert first["PRIORITY"] == "4"
    repaired = journal(lab, f"MESSAGE_ID={MessageId.REPAIRED.value}", f"UNIT={CRASHY}")
    assert [r["DETAIL"] for r in repaired] == ["healthy after attempt 1"]
    assert float(repaired[0]["__REALTIME_TIMESTAMP"]) > float(first["__REALTIME_TIMESTAMP"])
