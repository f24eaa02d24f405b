"""Health checks in the daemon against real endpoints in the lab: exact state
transitions of HTTP, TCP, memory, disk and command checks, a hung probe that
delays no other check, and a critical check that sends its unit up the ladder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import (
    SOCKET,
    cli,
    daemon_cli,
    daemon_log,
    install_daemon,
    messages,
    wait_for_message,
    web_unit,
    write_config,
)
from tests.unit.test_check_plugin import parse_output

pytestmark = pytest.mark.lab

ASSETS = Path(__file__).parent / "assets"


@dataclass
class Setup:
    shared: Path

    def mode(self, name: str, word: str) -> None:
        (self.shared / f"{name}.mode").write_text(word)


def flaky_unit(port: int, mode_file: Path) -> str:
    server = ASSETS / "flaky_server.py"
    return f"[Service]\nExecStart=/usr/bin/python3 {server} {port} {mode_file}\n"


def policies(shared: Path) -> dict[str, str]:
    disk = shared / "disk"
    return {
        "flaky.yaml": """\
unit: flaky.service
checks:
  - name: http
    http: {url: "http://127.0.0.1:8201/", expect_status: 200}
    interval: 500ms
    timeout: 400ms
    failures: 2
    successes: 2
    critical: false
  - name: port
    tcp: {port: 8201}
    interval: 500ms
    timeout: 400ms
    failures: 2
    successes: 1
    critical: false
""",
        "steady.yaml": f"""\
unit: steady.service
checks:
  - name: witness
    tcp: {{port: 8202}}
    interval: 200ms
    timeout: 1s
  - name: disk
    disk: {{path: {disk}, max_used: 50%}}
    interval: 300ms
    failures: 1
    successes: 1
    critical: false
  - name: hang
    command: {{argv: [/usr/bin/sleep, "60"]}}
    interval: 2s
    timeout: 500ms
    failures: 1
    critical: false
""",
        "hog.yaml": """\
unit: hog.service
checks:
  - name: memory
    memory: {max_rss: 80MiB}
    interval: 300ms
    failures: 2
    successes: 1
    critical: false
""",
        "sick.yaml": """\
unit: sick.service
checks:
  - name: http
    http: {url: "http://127.0.0.1:8203/"}
    interval: 300ms
    timeout: 250ms
    failures: 2
    successes: 1
recovery:
  ladder: [restart]
  cooldown: 2s
  settle: 1s
""",
    }


@pytest.fixture(scope="module")
def setup(lab: Lab) -> Iterator[Setup]:
    shared = Path(lab.shared_dir)
    (shared / "disk").mkdir()
    lab.run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(shared / "disk"))
    config = shared / "etc"
    write_config(config, policies(shared))
    lab.install_unit("flaky.service", flaky_unit(8201, shared / "flaky.mode"))
    lab.install_unit("sick.service", flaky_unit(8203, shared / "sick.mode"))
    lab.install_unit("steady.service", web_unit(8202))
    lab.install_unit("hog.service", f"[Service]\nExecStart=/usr/bin/python3 {ASSETS / 'hog.py'}\n")
    for unit in ("flaky", "sick", "steady"):
        lab.run("systemctl", "start", f"{unit}.service")
    install_daemon(lab, config, shared / "state")
    yield Setup(shared)
    lab.run("umount", str(shared / "disk"), check=False)


def transitions(lab: Lab, unit: str, check: str) -> list[tuple[str, str]]:
    return [
        (entry["BEFORE"], entry["AFTER"])
        for entry in daemon_log(lab, unit)
        if entry.get("MESSAGE", "").startswith("check state changed") and entry["CHECK"] == check
    ]


def wait_transitions(lab: Lab, unit: str, check: str, count: int, timeout: float = 15) -> None:
    lab.wait_for(
        lambda: len(transitions(lab, unit, check)) >= count,
        timeout=timeout,
        what=f"{count} transitions of {unit}/{check} (have {transitions(lab, unit, check)})",
    )


def unit_status(lab: Lab, unit: str) -> dict[str, object]:
    out = cli(lab, "status", unit, "--socket", SOCKET, "--json")
    rows: list[dict[str, object]] = json.loads(out)["units"]
    return rows[0]


def check_status(lab: Lab, unit: str, check: str) -> dict[str, object]:
    checks = unit_status(lab, unit)["checks"]
    assert isinstance(checks, list)
    return next(c for c in checks if c["name"] == check)


def test_http_200_then_500_then_hung_then_recovered(lab: Lab, setup: Setup) -> None:
    wait_transitions(lab, "flaky.service", "http", 1)
    assert transitions(lab, "flaky.service", "http") == [("pending", "ok")]

    setup.mode("flaky", "error")
    wait_transitions(lab, "flaky.service", "http", 2)
    assert "HTTP 500" in str(check_status(lab, "flaky.service", "http")["message"])
    assert unit_status(lab, "flaky.service")["condition"] == "degraded"  # non-critical

    setup.mode("flaky", "hang")
    lab.wait_for(
        lambda: "no answer" in str(check_status(lab, "flaky.service", "http")["message"]),
        timeout=10,
        what="the hung endpoint reported as no answer",
    )
    # While it hangs, the other checks keep their own schedule: the 200 ms
    # witness runs about 15 times in 3 s, not once per hung request.
    before = check_status(lab, "steady.service", "witness")["runs"]
    time.sleep(3.0)
    after = check_status(lab, "steady.service", "witness")["runs"]
    assert isinstance(before, int) and isinstance(after, int)
    assert after - before >= 12, f"witness ran {after - before} times in 3 s"
    assert check_status(lab, "steady.service", "witness")["state"] == "ok"

    setup.mode("flaky", "ok")
    wait_transitions(lab, "flaky.service", "http", 3)
    assert transitions(lab, "flaky.service", "http") == [
        ("pending", "ok"),
        ("ok", "critical"),
        ("critical", "ok"),
    ]
    assert unit_status(lab, "flaky.service")["condition"] == "healthy"


def test_a_tcp_port_that_closes(lab: Lab, setup: Setup) -> None:
    wait_transitions(lab, "flaky.service", "port", 1)
    setup.mode("flaky", "closed")
    wait_transitions(lab, "flaky.service", "port", 2)
    assert "refused" in str(check_status(lab, "flaky.service", "port")["message"])
    setup.mode("flaky", "ok")
    wait_transitions(lab, "flaky.service", "port", 3)
    assert transitions(lab, "flaky.service", "port") == [
        ("pending", "ok"),
        ("ok", "critical"),
        ("critical", "ok"),
    ]
    assert lab.show("flaky.service", "NRestarts")["NRestarts"] == "0"  # only degraded


def test_memory_growing_past_max_rss(lab: Lab, setup: Setup) -> None:
    lab.run("systemctl", "start", "hog.service")
    wait_transitions(lab, "hog.service", "memory", 2, timeout=30)
    assert transitions(lab, "hog.service", "memory") == [("pending", "ok"), ("ok", "critical")]
    message = str(check_status(lab, "hog.service", "memory")["message"])
    assert "80" in message  # names the limit
    lab.run("systemctl", "stop", "hog.service")


def test_disk_check_on_a_small_tmpfs_that_fills(lab: Lab, setup: Setup) -> None:
    disk = setup.shared / "disk"
    wait_transitions(lab, "steady.service", "disk", 1)
    lab.run("dd", "if=/dev/zero", f"of={disk}/fill", "bs=1M", "count=6")
    wait_transitions(lab, "steady.service", "disk", 2)
    assert "used" in str(check_status(lab, "steady.service", "disk")["message"])
    lab.run("rm", f"{disk}/fill")
    wait_transitions(lab, "steady.service", "disk", 3)
    assert transitions(lab, "steady.service", "disk") == [
        ("pending", "ok"),
        ("ok", "critical"),
        ("critical", "ok"),
    ]


def test_a_command_that_hangs_past_its_timeout_is_killed(lab: Lab, setup: Setup) -> None:
    wait_transitions(lab, "steady.service", "hang", 1)
    assert transitions(lab, "steady.service", "hang") == [("pending", "critical")]
    assert "timed out" in str(check_status(lab, "steady.service", "hang")["message"])
    # Between runs (every 2 s, each killed after 0.5 s) no sleep is left running.
    lab.wait_for(
        lambda: lab.run("pgrep", "-x", "sleep", check=False).returncode == 1,
        timeout=5,
        what="no hung command left between runs",
    )
    assert check_status(lab, "steady.service", "witness")["state"] == "ok"


def test_a_critical_check_failing_sends_the_unit_up_the_ladder(lab: Lab, setup: Setup) -> None:
    wait_transitions(lab, "sick.service", "http", 1)
    pid = lab.show("sick.service", "MainPID")["MainPID"]
    setup.mode("sick", "error")
    wait_for_message(lab, "sick.service", "restarting unit")
    setup.mode("sick", "ok")
    wait_for_message(lab, "sick.service", "recovered", timeout=15)
    events = ("unit unhealthy", "restarting unit", "recovered")
    said = [e for m in messages(lab, "sick.service") for e in events if m.startswith(e)]
    assert said[:3] == ["unit unhealthy", "restarting unit", "recovered"]
    unhealthy = next(
        e for e in daemon_log(lab, "sick.service") if e["MESSAGE"].startswith("unit unhealthy")
    )
    assert unhealthy["CHECKS"] == "http" and unhealthy["ACTION"] == "detect"
    assert lab.show("sick.service", "MainPID")["MainPID"] != pid


def test_check_command_works_as_a_monitoring_plugin(lab: Lab, setup: Setup) -> None:
    config = setup.shared / "etc"
    healthy = lab.run(*daemon_cli(), "check", "sick.service", "--config", str(config), check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    state, text, _, details = parse_output(healthy.stdout, healthy.returncode)
    assert (state, text.split(":")[0]) == ("OK", "sick.service") and details

    plugin = setup.shared / "plugin.yaml"
    plugin.write_text(
        "unit: steady.service\n"
        "checks:\n"
        "  - {name: up, tcp: {port: 8202}}\n"
        "  - {name: pid, process: {}}\n"
        "  - {name: gone, tcp: {port: 8299}, critical: false}\n"
    )
    degraded = lab.run(*daemon_cli(), "check", str(plugin), "--json", check=False)
    assert degraded.returncode == 1, degraded.stdout + degraded.stderr
    body = json.loads(degraded.stdout)
    statuses = {c["name"]: c["status"] for c in body["checks"]}
    assert statuses == {"up": "ok", "pid": "ok", "gone": "critical"}  # pid from systemd's MainPID
    assert body["health"] == "degraded"

    plugin.write_text("unit: steady.service\nchecks:\n  - {name: gone, tcp: {port: 8299}}\n")
    unhealthy = lab.run(*daemon_cli(), "check", str(plugin), check=False)
    assert unhealthy.returncode == 2
    state, text, perf, _ = parse_output(unhealthy.stdout, unhealthy.returncode)
    assert state == "CRITICAL" and text.startswith("steady.service: gone critical (")
    assert "refused" in text and "gone_ms" not in perf  # a refused connect measured nothing
    plugin.write_text("unit: steady.service\nchecks:\n  - {name: pid, process: {}}\n")
    up = lab.run(*daemon_cli(), "check", str(plugin), "--critical", "pid_threads=@0:1000",
                 check=False)  # fmt: skip
    state, _, perf, _ = parse_output(up.stdout, up.returncode)
    assert state == "CRITICAL" and perf["pid_threads"]["crit"] == "@0:1000"


def test_status_text_counts_check_states(lab: Lab, setup: Setup) -> None:
    out = cli(lab, "status", "--socket", SOCKET, "--json")
    units = json.loads(out)["units"]
    counts: dict[str, int] = {}
    for unit in units:
        for check in unit["checks"]:
            counts[check["state"]] = counts.get(check["state"], 0) + 1

    def status_counts() -> str:
        return lab.show("host-supervisor.service", "StatusText")["StatusText"]

    expected = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    lab.wait_for(
        lambda: f"checks: {expected};" in status_counts(),
        timeout=5,
        what=f"STATUS= with 'checks: {expected}' (have {status_counts()!r})",
    )
