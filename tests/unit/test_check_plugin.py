"""`host-supervisor check` as a monitoring plugin, read the way Nagios and Icinga read it
(the Monitoring Plugins development guidelines): the status line first, perfdata after
'|' in 'label'=value[UOM];[warn];[crit];[min];[max], exit codes 0-3, UNKNOWN on stdout
for usage errors and an unreachable bus; thresholds in the guidelines' range format."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.checks.result import CheckResult, Measure, ProbeContext, Status
from supervisor.commands.check import (
    Range,
    apply_thresholds,
    parse_thresholds,
    perfdata,
    render_plugin,
    run_policy_once,
)
from supervisor.config.check import Check
from supervisor.config.policy import Policy

STATUS_LINE = re.compile(
    r"^HOST-SUPERVISOR (?P<state>OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|]+?)"
    r"(?:\|(?P<perf>.*))?$"
)
PERF_ITEM = re.compile(
    r"^'(?P<label>[^'=]+)'=(?P<value>-?[0-9.]+)(?P<uom>s|ms|us|%|B|KB|MB|GB|TB|c)?"
    r"(?:;(?P<warn>[@~0-9.:-]*))?(?:;(?P<crit>[@~0-9.:-]*))?"
    r"(?:;(?P<min>-?[0-9.]*))?(?:;(?P<max>-?[0-9.]*))?$"
)
CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def parse_output(stdout: str, code: int) -> tuple[str, str, dict[str, dict[str, str]], list[str]]:
    """(state, text, perfdata by label, long output) as a monitoring server reads them."""
    first, *rest = stdout.splitlines()
    match = STATUS_LINE.match(first)
    assert match, f"not a plugin status line: {first!r}"
    assert CODES[match["state"]] == code, (first, code)
    perf: dict[str, dict[str, str]] = {}
    for item in (match["perf"] or "").split():
        parsed = PERF_ITEM.match(item)
        assert parsed, f"not perfdata per the guidelines: {item!r}"
        perf[parsed["label"]] = parsed.groupdict()
    return match["state"], match["text"], perf, rest


@pytest.mark.parametrize(
    ("text", "alerts", "quiet"),
    [
        ("10", [-1, 11], [0, 10, 5.5]),
        ("10:", [9.9, -5], [10, 1e9]),
        ("~:10", [10.1], [-1e9, 10]),
        ("10:20", [9, 21], [10, 20]),
        ("@10:20", [10, 15, 20], [9, 21]),
        ("0.5", [0.6], [0.5]),
    ],
)
def test_ranges_follow_the_guidelines(text: str, alerts: list[float], quiet: list[float]) -> None:
    limit = Range.parse(text)
    assert all(limit.alerts(v) for v in alerts)
    assert not any(limit.alerts(v) for v in quiet)


@pytest.mark.parametrize("text", ["", "x", "10:5", "@", ":", "1:2:3"])
def test_bad_ranges_say_what_would_work(text: str) -> None:
    with pytest.raises(ValueError, match="range"):
        Range.parse(text)


def _policy(tmp_path: Path) -> Policy:
    return Policy.model_validate(
        {
            "unit": "web.service",
            "checks": [
                {"name": "http", "http": {"url": "http://127.0.0.1:1/"}},
                {"name": "disk", "disk": {"path": str(tmp_path), "max_used": "90%"}},
            ],
        }
    )


def test_perfdata_carries_the_policys_limit_as_critical(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    http, disk = policy.checks
    results = [
        (http, CheckResult(Status.OK, "HTTP 200", 0.011, (Measure("ms", 11.1, "ms", low=0),))),
        (
            disk,
            CheckResult(
                Status.OK,
                "22% used",
                0.001,
                (
                    Measure("used", 22, "%", 90, low=0, high=100),
                    Measure("free", 1048576, "B", 524288, below=True, low=0),
                ),
            ),
        ),
    ]
    thresholds = parse_thresholds(policy, ["disk_used=80"], [])
    assert perfdata(results, thresholds) == (
        "'http_ms'=11.1ms;;;0 'disk_used'=22%;80;90;0;100 'disk_free'=1048576B;;524288:;0"
    )


def test_thresholds_turn_figures_into_states(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    http, _ = policy.checks
    slow = [(http, CheckResult(Status.OK, "HTTP 200", 0.3, (Measure("ms", 300.0, "ms", low=0),)))]
    warned = apply_thresholds(slow, parse_thresholds(policy, ["http_ms=200"], ["http_ms=500"]))
    assert warned[0][1].status is Status.WARNING
    assert warned[0][1].message.startswith("http_ms 300ms is past the warning threshold 200")
    critical = apply_thresholds(slow, parse_thresholds(policy, [], ["http_ms=~:250"]))
    assert critical[0][1].status is Status.CRITICAL
    text, code = render_plugin("web.service", critical)
    assert code == 2
    assert text.startswith("HOST-SUPERVISOR CRITICAL - web.service: http critical (http_ms 300ms")
    # never better than the probe said
    down = [(http, CheckResult(Status.CRITICAL, "refused", 0.0, (Measure("ms", 1, "ms"),)))]
    assert apply_thresholds(down, parse_thresholds(policy, ["http_ms=100"], []))[0][1].status is (
        Status.CRITICAL
    )


def test_unknown_threshold_labels_name_the_ones_there_are(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="labels: disk_free, disk_inodes_used, disk_used, http_ms"):
        parse_thresholds(_policy(tmp_path), ["nope_ms=1"], [])
    with pytest.raises(ValueError, match="write LABEL=RANGE"):
        parse_thresholds(_policy(tmp_path), ["http_ms"], [])


async def test_a_real_run_is_a_valid_plugin_output(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    results = await run_policy_once(policy, ProbeContext("web.service", active_state="active"))
    text, code = render_plugin("web.service", results)
    state, summary, perf, details = parse_output(text, code)
    assert state == "CRITICAL"
    assert summary.startswith("web.service: http critical (cannot connect to http://127.0.0.1:1/")
    assert "refused" in summary.lower()
    assert set(perf) == {"disk_used", "disk_free"}  # a refused request measured no time
    assert perf["disk_used"]["uom"] == "%" and perf["disk_used"]["crit"] == "90"
    assert (perf["disk_used"]["min"], perf["disk_used"]["max"]) == ("0", "100")
    assert 0 <= float(perf["disk_used"]["value"]) <= 100
    assert details[0].startswith("http: CRITICAL - cannot connect")
    assert details[1].startswith("disk: OK - ")


def test_nothing_a_check_says_can_break_the_status_line() -> None:
    check = Check(name="c", unit={})
    text, _ = render_plugin("a.service", [(check, CheckResult(Status.CRITICAL, "x | y\nz", 0))])
    assert text.splitlines()[0] == "HOST-SUPERVISOR CRITICAL - a.service: c critical (x / y z)"
    assert math.isfinite(0.0)


# -- as Nagios runs it: a process, its stdout and its exit code --------------------------------


def run_plugin(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    # No system bus for this process: the unit's state cannot be known.
    env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent/system_bus_socket"
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "check", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ((), "usage: the following arguments are required: UNIT_OR_POLICY_FILE"),
        (("x.service", "--bogus"), "usage: unrecognized arguments: --bogus"),
        (("x.service", "--config", "/nonexistent"), "config directory /nonexistent does not"),
    ],
)
def test_usage_errors_are_unknown_on_stdout(argv: tuple[str, ...], words: str) -> None:
    proc = run_plugin(*argv)
    assert proc.returncode == 3
    state, text, perf, _ = parse_output(proc.stdout, proc.returncode)
    assert state == "UNKNOWN" and words in text and not perf
    assert proc.stderr == ""


def test_a_bad_threshold_is_unknown_naming_it(tmp_path: Path) -> None:
    policy = tmp_path / "web.yaml"
    policy.write_text("unit: web.service\nchecks:\n  - {name: disk, disk: {path: /}}\n")
    proc = run_plugin(str(policy), "--warning", "disk_used=lots")
    assert proc.returncode == 3
    assert parse_output(proc.stdout, 3)[1] == (
        "--warning disk_used: 'lots' is not a range: write 10, 10:, ~:10, 10:20 or @10:20"
    )


def test_an_unreachable_bus_is_unknown_with_the_checks_still_shown(tmp_path: Path) -> None:
    policy = tmp_path / "web.yaml"
    policy.write_text("unit: web.service\nchecks:\n  - {name: disk, disk: {path: /}}\n")
    proc = run_plugin(str(policy), "-w", "disk_used=~:100", "-c", "disk_used=@200:300")
    state, text, perf, details = parse_output(proc.stdout, proc.returncode)
    assert state == "UNKNOWN"
    assert text.startswith("web.service: systemd cannot be reached")
    assert perf["disk_used"]["warn"] == "~:100" and perf["disk_used"]["crit"] == "@200:300"
    assert details[0].startswith("disk: OK - /: ")


async def test_probes_report_what_they_measured(tmp_path: Path) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        policy = Policy.model_validate(
            {
                "unit": "app.service",
                "checks": [
                    {"name": "port", "tcp": {"port": server.getsockname()[1]}},
                    {"name": "mem", "memory": {"host_max_used": "100%", "max_rss": "1TiB"}},
                    {"name": "me", "process": {"max_threads": 10_000, "max_fds": 10_000}},
                ],
            }
        )
        context = ProbeContext("app.service", main_pid=os.getpid(), active_state="active")
        results = await run_policy_once(policy, context)
    figures = {
        f"{check.name}_{m.name}": (m.unit, m.limit) for check, r in results for m in r.measures
    }
    assert figures == {
        "port_ms": ("ms", None),
        "mem_rss": ("B", 2.0**40),
        "mem_host_used": ("%", 100.0),
        "me_count": ("", None),
        "me_threads": ("", 10_000.0),
        "me_fds": ("", 10_000.0),
    }
    _, _, perf, _ = parse_output(*render_plugin("app.service", results))
    assert perf["mem_host_used"]["crit"] == "100" and perf["me_threads"]["crit"] == "10000"
