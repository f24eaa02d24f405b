"""Benchmark: does `host-supervisor drill` measure what the crash benchmark measures?

In one lab, on the crash benchmark's web unit and policy, it alternates N crash-bench
kills (os.kill from the host; detection from the daemon's log line, active again from
systemd's ActiveEnterTimestamp) with N `drill --fault kill` runs (KillUnit over D-Bus;
figures from the daemon's history), and prints both p50s and their ratio. The issue's
target: the drill's figures within 10% of the crash benchmark's.

Run: tests/bench/run drill  (or: .venv/bin/python -m tests.bench.bench_drill --runs 20)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.bench_crash import (
    SOCKET_NAME,
    UNIT,
    active_enter_us,
    detections,
    kill_once,
    start_daemon,
)
from tests.bench.figures import print_table
from tests.lab_units import daemon_cli

REFUSED = 2


def drill_once(lab: Lab, config: Path, log_file: Path, i: int) -> dict[str, float]:
    """One kill drill, retried while the daemon still settles the last fault (refused):
    its figures, and the crash benchmark's two measures of the same kill (the daemon's
    log line, systemd's ActiveEnterTimestamp) from the drill's fault time."""
    socket = str(Path(lab.shared_dir) / SOCKET_NAME)
    argv = [*daemon_cli(), "drill", UNIT, "--fault", "kill", "--yes", "--json"]
    argv += ["--config", str(config), "--socket", socket, "--timeout", "30s"]
    for _ in range(50):
        done = lab.run(*argv, check=False, timeout=60)
        if done.returncode != REFUSED:
            break
        time.sleep(0.2)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"drill {i + 1}: exit {done.returncode}: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    figures = {k: report[k] * 1000 for k in ("detection_s", "repaired_s", "recovery_s")}
    fault_at = report["fault_at"]
    logged = next(t for t in detections(log_file) if t >= fault_at)
    figures["log_detection"] = (logged - fault_at) * 1000
    figures["active_enter"] = (active_enter_us(lab, UNIT) / 1e6 - fault_at) * 1000
    return figures


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if reason := lab_unavailable_reason():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    crash_detect: list[float] = []
    crash_active: list[float] = []
    drills: list[dict[str, float]] = []
    with Lab() as lab:
        lab.boot()
        config, log_file = start_daemon(lab)
        for i in range(args.runs):  # alternated: both see the same machine load
            detect, active = kill_once(lab, log_file, i)
            crash_detect.append(detect)
            crash_active.append(active)
            time.sleep(0.3)  # past settle: each kill is a fresh failure
            drills.append(drill_once(lab, config, log_file, i))
            time.sleep(0.3)
        lab.run("systemctl", "stop", "hs-bench")
    drill_detect = [d["detection_s"] for d in drills]
    drill_repaired = [d["repaired_s"] for d in drills]
    drill_healthy = [d["recovery_s"] for d in drills]
    same_detect = [d["log_detection"] for d in drills]
    same_active = [d["active_enter"] for d in drills]

    def row(name: str, crash: list[float], drill: list[float]) -> tuple[str, str, str, str]:
        ratio = p50(drill) / p50(crash) if p50(crash) else float("nan")
        return (name, f"{p50(crash):.1f}", f"{p50(drill):.1f}", f"{ratio:.2f}")

    print(f"\n{args.runs} crash-bench kills and {args.runs} kill drills of {UNIT}, alternated")
    print_table(
        ("p50 (ms)", "crash bench", "drill", "drill/crash"),
        [
            row("kill -> detection", crash_detect, drill_detect),
            row("kill -> active again (restart done)", crash_active, drill_repaired),
            row("kill -> healthy again (drill's recovery)", crash_active, drill_healthy),
        ],
    )
    print(f"\nthe same {args.runs} drill kills, measured both ways")
    print_table(
        ("p50 (ms)", "crash bench's way", "drill's way", "drill/crash"),
        [
            row("kill -> detection", same_detect, drill_detect),
            row("kill -> active again (restart done)", same_active, drill_repaired),
            row("kill -> healthy again (drill's recovery)", same_active, drill_healthy),
        ],
    )
    print(
        "crash bench: detection = the daemon's 'unit failed' log line, active again = "
        "systemd's ActiveEnterTimestamp; drill: the daemon's history (detection = 'failed', "
        "restart done = the repair's result, recovery = 'healthy'). Target: within 10%."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
