"""Benchmark: kill a supervised unit's main process N times in the lab and measure
kill-to-detection (the daemon's "unit failed" log line) and kill-to-active-again
(systemd's ActiveEnterTimestamp for the unit), in milliseconds.

Run: tests/bench/run crash  (or: .venv/bin/python -m tests.bench.bench_crash --kills 50)

The kill is sent from the host with os.kill on the process's host PID, with the
wall clock read just before; the daemon's log timestamps and systemd's
ActiveEnterTimestamp are on the same wall clock (one kernel).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import host_pid, percentiles, print_table
from tests.lab_units import active_with_new_pid, web_unit, write_config

UNIT = "bench-web.service"
POLICY = f"""\
unit: {UNIT}
recovery:
  ladder: [restart]
  cooldown: 0s
  settle: 200ms
  reset_after: 1s
  max_attempts: 1000
"""


SOCKET_NAME = "control.sock"

BENCH_GUARD = """\
guard:
  repair_budget: {max: 1000, window: 15m}
  flapping: {window: 1s, high: 50%, low: 25%}
"""


def active_enter_us(lab: Lab, unit: str) -> int:
    out = lab.run(
        "busctl",
        "get-property",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1/unit/" + unit.replace("-", "_2d").replace(".", "_2e"),
        "org.freedesktop.systemd1.Unit",
        "ActiveEnterTimestamp",
    ).stdout.split()
    return int(out[1])


def detections(log_file: Path) -> list[float]:
    """Wall-clock times of the daemon's `unit failed` lines (key=value logs on stderr)."""
    times = []
    for line in log_file.read_text().splitlines():
        if "unit failed" in line and UNIT in line:
            stamp = next(f for f in line.split() if f.startswith("timestamp="))
            times.append(
                datetime.fromisoformat(stamp.split("=", 1)[1].replace("Z", "+00:00")).timestamp()
            )
    return times


def start_daemon(lab: Lab) -> tuple[Path, Path]:
    """The bench unit running, and the daemon supervising it with key=value logs in a
    file; returns (config dir, log file). The control socket is SOCKET_NAME in the
    lab's shared directory."""
    shared = Path(lab.shared_dir)
    config = shared / "etc"
    # 50 kills in a minute would rightly freeze automation (budget) and count as
    # flapping: this benchmark measures detection and restart, so it lifts both.
    write_config(config, {"bench.yaml": POLICY}, main=BENCH_GUARD)
    lab.install_unit(UNIT, web_unit(8090))
    lab.run("systemctl", "start", UNIT)
    log_file = shared / "daemon.log"
    exe = Path(sys.prefix) / "bin" / "host-supervisor"
    # A transient unit whose stderr is a file: key=value logs with timestamps.
    lab.run(
        "systemd-run",
        "--unit=hs-bench",
        f"--property=StandardError=append:{log_file}",
        *(
            ["--setenv=PYTHONPATH=" + os.environ["PYTHONPATH"]]
            if "PYTHONPATH" in os.environ
            else []
        ),
        str(exe),
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(shared / "state"),
        "--socket",
        str(shared / SOCKET_NAME),
    )
    lab.wait_for(lambda: "supervising" in log_file.read_text(), timeout=30, what="daemon up")
    return config, log_file


def kill_once(lab: Lab, log_file: Path, i: int) -> tuple[float, float]:
    """SIGKILL the unit's main process from the host; (kill -> detection, kill -> active
    again) in milliseconds."""
    pid = lab.show(UNIT, "MainPID")["MainPID"]
    target = host_pid(int(pid), lab.pid)
    seen = len(detections(log_file))
    killed_at = time.time()
    os.kill(target, signal.SIGKILL)
    lab.wait_for(
        lambda pid=pid: active_with_new_pid(lab, UNIT, pid),
        timeout=20,
        interval=0.01,
        what=f"kill {i + 1}: {UNIT} active again",
    )
    lab.wait_for(
        lambda seen=seen: len(detections(log_file)) > seen,
        timeout=10,
        what=f"kill {i + 1}: detection logged",
    )
    detect = (detections(log_file)[seen] - killed_at) * 1000
    return detect, (active_enter_us(lab, UNIT) / 1e6 - killed_at) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=50)
    args = parser.parse_args()
    if reason := lab_unavailable_reason():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    with Lab() as lab:
        lab.boot()
        _, log_file = start_daemon(lab)
        detect_ms: list[float] = []
        active_ms: list[float] = []
        for i in range(args.kills):
            detect, active = kill_once(lab, log_file, i)
            detect_ms.append(detect)
            active_ms.append(active)
            time.sleep(0.3)  # past settle: each kill is a fresh failure
        lab.run("systemctl", "stop", "hs-bench")
    rows = [
        ("kill -> detection", *percentiles(detect_ms)),
        ("kill -> active again", *percentiles(active_ms)),
    ]
    print(f"\n{args.kills} kills of {UNIT}'s main process (SIGKILL), host-supervisor in the lab")
    print_table(("measure (ms)", "p50", "p95", "p99", "max"), rows)
    print(f"mean detection {statistics.fmean(detect_ms):.1f} ms; target p99 <= 50 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
