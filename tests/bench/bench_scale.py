"""Benchmark: N policies, each with an HTTP and a TCP check at a 1 s interval, against
a local server in the lab, with some HTTP endpoints hung (accept, never reply).

Prints how late check runs start against their schedule (p50/p99), the daemon's
CPU (% of one core over the window) and RSS, and its time from exec to READY=1.

Run: tests/bench/run scale   (or: .venv/bin/python -m tests.bench.bench_scale --units 1000)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import host_pid, print_table

ASSETS = Path(__file__).parent / "assets"
PORT = 9000
CLK_TCK = 100


def policy(n: int, timeout: str) -> str:
    return f"""\
unit: bench@{n}.service
checks:
  - name: http
    http: {{url: "http://127.0.0.1:{PORT}/{n}"}}
    interval: 1s
    timeout: {timeout}
    critical: false
  - name: tcp
    tcp: {{port: {PORT}}}
    interval: 1s
    timeout: {timeout}
    critical: false
"""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kib = lambda key: int(status[key].split()[0]) / 1024  # noqa: E731
    return kib("VmRSS"), kib("VmHWM")


def setenv() -> list[str]:
    """systemd-run's flag passing PYTHONPATH on (a worktree shadowing the venv's editable
    install): the daemon measured is that tree's, not the one the venv points at."""
    path = os.environ.get("PYTHONPATH")
    return [f"--setenv=PYTHONPATH={path}"] if path else []


def measure(units: int, hung: int, window: float, timeout: str) -> dict[str, float]:
    with Lab() as lab:
        lab.boot()
        shared = Path(lab.shared_dir)
        lab.install_unit("bench@.service", "[Service]\nExecStart=/bin/sleep infinity\n")
        lab.install_unit(
            "bench-server.service",
            f"[Service]\nExecStart=/usr/bin/python3 {ASSETS / 'bench_server.py'} {PORT} {hung}\n"
            "LimitNOFILE=65536\n",
        )
        lab.run("systemctl", "start", "bench-server.service")
        names = [f"bench@{n}.service" for n in range(units)]
        lab.run("systemctl", "start", *names, timeout=300)
        config = shared / "etc"
        (config / "policies.d").mkdir(parents=True)
        for n in range(units):
            (config / "policies.d" / f"bench-{n}.yaml").write_text(policy(n, timeout))
        exe = Path(sys.prefix) / "bin" / "host-supervisor"
        sock = shared / "control.sock"
        started = time.monotonic()
        lab.run(
            "systemd-run", "--unit=hs-bench", "--property=Type=notify",
            "--property=NotifyAccess=main", "--property=LimitNOFILE=65536",
            f"--property=StandardError=append:{shared / 'daemon.log'}", *setenv(),
            str(exe), "run", "--config", str(config), "--state-dir", str(shared / "state"),
            "--socket", str(sock), timeout=120,
        )  # fmt: skip
        wall_ready = time.monotonic() - started
        stamps = lab.show(
            "hs-bench", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic"
        )
        ready = (
            int(stamps["ActiveEnterTimestampMonotonic"])
            - int(stamps["ExecMainStartTimestampMonotonic"])
        ) / 1e6
        pid = host_pid(int(lab.show("hs-bench", "MainPID")["MainPID"]), lab.pid)
        time.sleep(5.0)  # start jitter (<= 1 s) and connection set-up
        cli = [str(exe)]
        lab.run(*cli, "metrics", "--reset", "--socket", str(sock))
        runs_before = json.loads(lab.run(*cli, "metrics", "--socket", str(sock)).stdout)
        cpu_before = cpu_seconds(pid)
        time.sleep(window)
        cpu_after = cpu_seconds(pid)
        metrics = json.loads(lab.run(*cli, "metrics", "--socket", str(sock)).stdout)
        rss, hwm = memory_mb(pid)
        lab.run("systemctl", "stop", "hs-bench")
    runs = metrics["check_runs"] - runs_before["check_runs"]
    user = cpu_after[0] - cpu_before[0]
    system = cpu_after[1] - cpu_before[1]
    cpu = user + system
    return {
        "units": units,
        "checks": units * 2,
        "runs": runs,
        "late_p50": metrics["lateness_ms"]["p50"],
        "late_p99": metrics["lateness_ms"]["p99"],
        "late_max": metrics["lateness_ms"]["max"],
        "cpu_pct": 100 * cpu / window,
        "user_pct": 100 * user / window,
        "sys_pct": 100 * system / window,
        "cpu_us_per_run": 1e6 * cpu / max(runs, 1),
        "rss": rss,
        "hwm": hwm,
        "ready": ready,
        "wall_ready": wall_ready,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--hung", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--timeout", default="2s")
    args = parser.parse_args()
    if reason := lab_unavailable_reason():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    r = measure(args.units, args.hung, args.window, args.timeout)
    print(
        f"\n{r['units']} policies x (HTTP + TCP) at 1 s, {args.hung} HTTP endpoints hung "
        f"(timeout {args.timeout}); {r['runs']} check runs in {args.window:g} s"
    )
    print_table(
        ("measure", "value", "target"),
        [
            ("lateness p50 (ms)", f"{r['late_p50']:.1f}", ""),
            ("lateness p99 (ms)", f"{r['late_p99']:.1f}", "<= 50"),
            ("lateness max (ms)", f"{r['late_max']:.1f}", ""),
            ("CPU (% of one core)", f"{r['cpu_pct']:.1f}", "<= 30"),
            ("  of which user / kernel", f"{r['user_pct']:.1f} / {r['sys_pct']:.1f}", ""),
            ("CPU per check run (us)", f"{r['cpu_us_per_run']:.0f}", ""),
            ("RSS now / peak (MB)", f"{r['rss']:.0f} / {r['hwm']:.0f}", "<= 150"),
            ("exec to READY=1 (s)", f"{r['ready']:.2f}", "<= 2"),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
