"""The HTTP listener of a real daemon in the lab: /metrics scraped with curl and parsed by
prometheus_client's parser after a real SIGKILL and repair, the node_exporter textfile,
status --json against the API document, and the status page in a real headless
Chromium (Debian's), whose DOM is checked and whose screenshot is kept as an artifact.

The listener binds 127.0.0.1 inside the lab's own network namespace, so curl and
Chromium run inside the lab too (`lab.run`)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.testing.lab import Lab
from tests.lab_units import (
    ROOMY_GUARD,
    SOCKET,
    cli,
    daemon_cli,
    install_daemon,
    kill_and_wait_restarted,
    wait_for_message,
    web_unit,
    write_config,
)
from tests.unit.test_openapi import assert_valid

pytestmark = pytest.mark.lab

UNIT = "web-metrics.service"
OTHER = "idle-metrics.service"
LISTEN = "127.0.0.1:9810"
ARTIFACTS = Path(__file__).parents[2] / ".cache" / "artifacts"
CHROMIUM = shutil.which("chromium")


@dataclass
class Setup:
    root: Path
    textfile: Path


@pytest.fixture(scope="module")
def setup(lab: Lab) -> Iterator[Setup]:
    root = Path(lab.shared_dir)
    textfile = root / "collector" / "host-supervisor.prom"
    textfile.parent.mkdir()
    policy = (
        f"unit: {UNIT}\n"
        "checks:\n  - {name: port, tcp: {port: 8411}, interval: 500ms}\n"
        "recovery: {cooldown: 1s, settle: 1s}\n"
    )
    idle = f"unit: {OTHER}\nrecovery: {{cooldown: 1s, settle: 1s}}\n"
    main = ROOMY_GUARD + (
        f"http: {{listen: '{LISTEN}'}}\nnode_exporter: {{textfile: {textfile}, interval: 1s}}\n"
    )
    write_config(root / "etc", {"web.yaml": policy, "idle.yaml": idle}, main)
    lab.install_unit(UNIT, web_unit(8411))
    lab.install_unit(OTHER, web_unit(8412))
    lab.run("systemctl", "start", UNIT, OTHER)
    install_daemon(lab, root / "etc", root / "state")
    lab.wait_for(
        lambda: lab.run("curl", "-sf", f"http://{LISTEN}/metrics", check=False).returncode == 0,
        timeout=15,
        what=f"the daemon's listener on {LISTEN}",
    )
    yield Setup(root, textfile)


def scrape(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = lab.run("curl", "-sf", f"http://{LISTEN}/metrics").stdout
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("host_supervisor_"), family.name
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metric(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:  # fmt: skip
    return found.get((f"host_supervisor_{name}", tuple(sorted(labels.items()))))


def test_metrics_after_a_sigkill_and_its_repair(lab: Lab, setup: Setup) -> None:
    wait_for_message(lab, UNIT, "unit state", timeout=15)
    kill_and_wait_restarted(lab, UNIT, timeout=20)  # the daemon restarts it: Restart=no

    def repaired() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = scrape(lab)
        done = metric(found, "repairs_total", unit=UNIT, rung="restart", result="done")
        healthy = metric(found, "unit_health", unit=UNIT, health="healthy")
        settled = metric(found, "unit_phase", unit=UNIT, phase="idle")  # after `settle`
        return found if done and healthy == 1 and settled == 1 else None

    found = lab.wait_for(repaired, timeout=20, interval=0.3, what="the repair in /metrics")
    assert metric(found, "repairs_total", unit=UNIT, rung="restart", result="done") == 1
    assert metric(found, "unit_active_state", unit=UNIT, state="active") == 1
    assert metric(found, "unit_active_state", unit=UNIT, state="failed") == 0
    assert metric(found, "unit_attempts", unit=UNIT) == 1
    assert metric(found, "unit_phase", unit=UNIT, phase="idle") == 1
    assert metric(found, "unit_paused", unit=UNIT) == 0
    assert (metric(found, "check_runs_total", unit=UNIT, check="port", result="ok") or 0) >= 1
    runs = sum(
        value
        for (name, labels), value in found.items()
        if name == "host_supervisor_check_runs_total" and ("unit", UNIT) in labels
    )
    assert metric(found, "check_duration_seconds_count", unit=UNIT, check="port") == runs
    assert (metric(found, "check_lateness_seconds_count") or 0) >= runs
    assert metric(found, "check_state", unit=UNIT, check="port", state="ok") == 1
    assert metric(found, "guard_budget_left") == 999  # ROOMY_GUARD's 1000, one spent
    assert metric(found, "guard_breaker_state", state="closed") == 1
    assert metric(found, "guard_frozen") == 0
    assert metric(found, "unit_health", unit=OTHER, health="healthy") == 1
    assert metric(found, "state_saved") == 1

    text = lab.wait_for(
        lambda: (t := setup.textfile.read_text()) and 'result="done"' in t and t,
        timeout=10,
        what="the repair in the node_exporter textfile",
    )
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "host_supervisor_repairs" in names and "host_supervisor_unit_health" in names
    assert oct(setup.textfile.stat().st_mode & 0o777) == "0o644"


def test_status_and_history_json_are_what_the_api_document_says(lab: Lab, setup: Setup) -> None:
    status = json.loads(cli(lab, "status", "--json", "--socket", SOCKET))
    assert_valid("Status", status)
    history = lab.run(*daemon_cli(), "history", "--json", "--socket", SOCKET).stdout
    assert_valid("History", json.loads(history))
    page = json.loads(lab.run("curl", "-sf", f"http://{LISTEN}/status.json").stdout)
    assert_valid("PageStatus", page)
    missing = lab.run(
        "curl", "-s", "-w", "\n%{http_code}", f"http://{LISTEN}/status.json?unit=nope.service"
    ).stdout.splitlines()
    assert missing[-1] == "404"
    assert json.loads(missing[0]) == {"error": "no policy for unit nope.service"}


class _Rows(HTMLParser):
    """The units table of a dumped DOM: unit -> the text of each of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._unit: str | None = None
        self._cell: list[str] | None = None
        self.badges: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-unit"):
            self._unit = found["data-unit"]
            self.rows[self._unit] = []
        elif tag == "td" and self._unit is not None:
            self._cell = []
        elif tag == "span" and self._unit and "badge" in (found.get("class") or ""):
            self.badges[self._unit] = (found.get("class") or "").split()[-1]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._unit is not None and self._cell is not None:
            self.rows[self._unit].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._unit = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium(lab: Lab, setup: Setup, *flags: str) -> str:
    profile = setup.root / "chromium"
    profile.mkdir(exist_ok=True)
    proc = lab.run(
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--virtual-time-budget=6000", "--window-size=1500,640", *flags, f"http://{LISTEN}/",
        env={"HOME": str(profile)}, timeout=90,
    )  # fmt: skip
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (tests/setup-env)")
def test_the_status_page_in_a_real_browser(lab: Lab, setup: Setup) -> None:
    lab.run(*daemon_cli(), "pause", OTHER, "--socket", SOCKET)
    dom = chromium(lab, setup, "--dump-dom")
    assert 'data-loaded="yes"' in dom, "the page's script did not render status.json"
    rows = _Rows()
    rows.feed(dom)
    assert set(rows.rows) == {UNIT, OTHER}
    unit, health, state, phase, attempts, nxt, checks, _, events = rows.rows[UNIT]
    assert (unit, health, state) == (UNIT, "healthy", "active/running")
    assert phase == "idle" and attempts == "1/3"
    assert nxt.startswith("attempts reset in ")
    assert checks == "port ok"
    assert "restart" in events.lower()  # the SIGKILL's repair among its last events
    assert rows.badges[UNIT] == "h-healthy"
    assert rows.rows[OTHER][5] == "paused: no repair"
    guard = re.sub(r"<[^>]+>", " ", dom[dom.index('id="guard"') : dom.index('id="units"')])
    assert "999 of 1000 left" in " ".join(guard.split())
    banner = re.search(r'<div[^>]*id="error"[^>]*>', dom)
    assert banner and "shown" not in banner.group(0), "the page says it cannot reach the daemon"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = setup.root / "status-page.png"
    chromium(lab, setup, f"--screenshot={shot}", "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    shutil.copyfile(shot, ARTIFACTS / "status-page.png")
    os.chmod(ARTIFACTS / "status-page.png", 0o644)
    lab.run(*daemon_cli(), "resume", OTHER, "--socket", SOCKET)
