"""Benchmark: host-supervisor and Debian's monit side by side, in one lab, one after the other.

1. crash: the unit's main process SIGKILLed N times (no Restart=): kill -> detection
   (host-supervisor's "unit failed" line; monit's "process is not running" line) and
   kill -> active again (systemd's ActiveEnterTimestamp).
2. http: an endpoint turns bad (500s): time to the restart being issued, 3 consecutive
   failures at 1 s for both (host-supervisor's "restarting unit"; monit's "trying to restart").
   2b. the same for host-supervisor with `confirm_interval: 200ms` (issue 13).
3. overhead: 10/100/500/1,000 units, one HTTP + one TCP check each at 1 s, all healthy:
   CPU s per minute, peak RSS, CPU per check run, and host-supervisor's exec -> READY=1.
   monit is measured as configured (`check process` per service: it reads /proc every
   cycle) and, at the largest size, probing only (`check host`, the same two tests);
   both tools again at the largest size against an endpoint that closes every
   connection. The kernel's floors (a bare client's system CPU for a fresh loopback
   connect + request, and for a keep-alive request) are measured in the same run.
4. timeliness: 1,000 units, 10% of HTTP endpoints hung, 5 s timeout: lateness of the
   healthy checks against their 1 s schedule.

monit logs to syslog; the lab's journald stamps each line on receipt in microseconds
(monit's own log file would have one-second stamps). monit's cycles are marked by a
`check program` that appends `date +%s.%N` to a file, placed first in its config.

Run: tests/bench/run monit
 (or: .venv/bin/python -m tests.bench.bench_monit [--kills 50] [--units 100,500,1000])
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench import monit_config as mc
from tests.bench.bench_crash import BENCH_GUARD, POLICY, active_enter_us, detections
from tests.bench.bench_scale import cpu_seconds, memory_mb
from tests.bench.figures import host_pid, percentiles, print_table
from tests.lab_units import active_with_new_pid, web_unit, write_config

ROOT = Path(__file__).parents[2]
BENCH_ASSETS = Path(__file__).parent / "assets"
FLAKY_SERVER = ROOT / "tests" / "integration" / "assets" / "flaky_server.py"
WEB = "bench-web.service"  # bench_crash's unit name (its POLICY and detections() use it)
WEB_PORT, FLAKY_PORT, OK_PORT, HUNG_PORT, CLOSE_PORT = 8090, 8201, 9000, 9001, 9002
CONFIRM = "200ms"  # section 2b's confirm_interval
MONIT_START_PAUSE = 30  # s: monit's default start program timeout
EXE = Path(sys.prefix) / "bin" / "host-supervisor"

FLAKY_POLICY = f"""\
unit: flaky.service
checks:
  - name: http
    http: {{url: "http://127.0.0.1:{FLAKY_PORT}/", expect_status: 200}}
    interval: 1s
    timeout: 1s
    failures: 3
    successes: 1
recovery:
  ladder: [restart]
  cooldown: 0s
  settle: 1s
  reset_after: 1s
  max_attempts: 1000
"""


CONFIRM_POLICY = FLAKY_POLICY.replace(
    "    failures: 3\n", f"    failures: 3\n    confirm_interval: {CONFIRM}\n"
)


def scale_policy(n: int, port: int, timeout: int) -> str:
    return f"""\
unit: bench@{n}.service
checks:
  - name: http
    http: {{url: "http://127.0.0.1:{port}/{n}"}}
    interval: 1s
    timeout: {timeout}s
    critical: false
  - name: tcp
    tcp: {{port: {port}}}
    interval: 1s
    timeout: {timeout}s
    critical: false
"""


def setenv() -> list[str]:
    """systemd-run's flag passing PYTHONPATH on (a worktree shadowing the venv's editable
    install): the daemon measured is that tree's, not the one the venv points at."""
    path = os.environ.get("PYTHONPATH")
    return [f"--setenv=PYTHONPATH={path}"] if path else []


# -- the two tools ---------------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, lab: Lab, tag: str) -> None:
        self.lab, self.shared, self.tag = lab, Path(lab.shared_dir), tag
        self.unit = f"{self.name}-{tag}"

    def stop(self) -> None:
        self.lab.run("systemctl", "stop", self.unit, check=False, timeout=120)
        self.lab.run("systemctl", "reset-failed", self.unit, check=False)

    def host_pid(self) -> int:
        return host_pid(int(self.lab.show(self.unit, "MainPID")["MainPID"]), self.lab.pid)


class HostSupervisor(Tool):
    name = "host-supervisor"

    def start(self, policies: dict[str, str]) -> None:
        config = self.shared / f"hs-{self.tag}"
        write_config(config, policies, main=BENCH_GUARD)
        self.log = self.shared / f"hs-{self.tag}.log"
        self.sock = self.shared / f"hs-{self.tag}.sock"
        self.lab.run(
            "systemd-run", f"--unit={self.unit}", "--property=Type=notify",
            "--property=NotifyAccess=main", "--property=LimitNOFILE=65536",
            f"--property=StandardError=append:{self.log}", *setenv(),
            str(EXE), "run", "--config", str(config), "--state-dir",
            str(self.shared / f"hs-{self.tag}-state"), "--socket", str(self.sock), timeout=180,
        )  # fmt: skip

    def lines(self, needle: str, unit: str) -> list[float]:
        """Wall-clock times of the daemon's log lines containing `needle` for `unit`."""
        out = []
        for line in self.log.read_text().splitlines():
            if needle in line and f"unit={unit}" in line:
                stamp = next(f for f in line.split() if f.startswith("timestamp="))
                out.append(_iso(stamp.split("=", 1)[1]))
        return out

    def detections(self) -> list[float]:
        return detections(self.log)

    def restarts(self) -> list[float]:
        return self.lines("restarting unit", "flaky.service")

    def ready(self) -> float:
        """Seconds from exec to READY=1 (systemd's own stamps)."""
        stamps = self.lab.show(
            self.unit, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic"
        )
        return (
            int(stamps["ActiveEnterTimestampMonotonic"])
            - int(stamps["ExecMainStartTimestampMonotonic"])
        ) / 1e6

    def metrics(self, *args: str) -> dict:
        argv = [str(EXE), "metrics", *args, "--json", "--socket", str(self.sock)]
        out = self.lab.run(*argv).stdout  # --json: `metrics --reset` says a sentence without
        return json.loads(out) if out.strip() else {}


class Monit(Tool):
    name = "monit"

    def start(self, body: str) -> None:
        conf = self.shared / f"monitrc-{self.tag}"
        (self.shared / "monit-events").mkdir(exist_ok=True)
        conf.write_text(mc.header(self.shared) + body)
        conf.chmod(0o600)
        self.lab.run("monit", "-t", "-c", str(conf))
        self.lab.run(
            "systemd-run", f"--unit={self.unit}", "--property=LimitNOFILE=65536",
            "monit", "-I", "-c", str(conf),
        )  # fmt: skip
        self.lab.wait_for(lambda: self.journal("Starting Monit"), timeout=30, what="monit up")

    def journal(self, needle: str) -> list[float]:
        """Receipt times (journald, us resolution) of monit's syslog lines with `needle`."""
        out = self.lab.run(
            "journalctl", "-q", "--no-pager", "-o", "json", f"_SYSTEMD_UNIT={self.unit}.service"
        ).stdout
        times = []
        for raw in out.splitlines():
            entry = json.loads(raw)
            # With -I monit writes each line to stderr too: the syslog copy only.
            if entry.get("_TRANSPORT") == "syslog" and needle in str(entry.get("MESSAGE", "")):
                times.append(int(entry["__REALTIME_TIMESTAMP"]) / 1e6)
        return times

    def detections(self) -> list[float]:
        return self.journal("'web' process is not running")

    def restarts(self) -> list[float]:
        return self.journal("'flaky' trying to restart")


class MonitProbing(Monit):
    """monit probing only: `check host` entries, no process to read from /proc."""

    name = "monit-host"


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- 1 and 2: crash and failing endpoint ----------------------------------------------


def crash(lab: Lab, tool: Tool, kills: int, pause: float) -> tuple[list[float], list[float]]:
    detect_ms: list[float] = []
    active_ms: list[float] = []
    for i in range(kills):
        pid = lab.show(WEB, "MainPID")["MainPID"]
        seen = len(tool.detections())
        killed_at = time.time()
        os.kill(host_pid(int(pid), lab.pid), signal.SIGKILL)
        lab.wait_for(
            lambda pid=pid: active_with_new_pid(lab, WEB, pid),
            timeout=20,
            interval=0.01,
            what=f"{tool.name} kill {i + 1}: {WEB} active again",
        )
        lab.wait_for(
            lambda seen=seen: len(tool.detections()) > seen,
            timeout=10,
            what=f"{tool.name} kill {i + 1}: detection logged",
        )
        detect_ms.append((tool.detections()[seen] - killed_at) * 1000)
        active_ms.append((active_enter_us(lab, WEB) / 1e6 - killed_at) * 1000)
        time.sleep(pause)
    return detect_ms, active_ms


def failing_http(lab: Lab, tool: Tool, reps: int) -> list[float]:
    mode = Path(lab.shared_dir) / "flaky.mode"
    out = []
    for i in range(reps):
        # monit pauses a process's connection tests until it has run for its start
        # timeout (30 s by default), and counts failures over its last cycles: both tools
        # get an endpoint whose process is older, with 3 s of successful checks behind it.
        started = active_enter_us(lab, "flaky.service") / 1e6
        time.sleep(max(0.0, started + MONIT_START_PAUSE + 4 - time.time()))
        seen = len(tool.restarts())
        bad_at = time.time()
        mode.write_text("error")
        lab.wait_for(
            lambda seen=seen: len(tool.restarts()) > seen,
            timeout=30,
            interval=0.02,
            what=f"{tool.name} rep {i + 1}: restart issued",
        )
        mode.write_text("ok")
        out.append((tool.restarts()[seen] - bad_at) * 1000)
        lab.wait_for(
            lambda: lab.show("flaky.service", "ActiveState")["ActiveState"] == "active",
            timeout=30,
            what="flaky.service active",
        )
    return out


# -- 3 and 4: scale --------------------------------------------------------------------


def monit_scaled(
    units: int,
    port: int,
    timeout: int,
    ticks: Path,
    every: int,
    entry: Callable[[int, int, int], str] = mc.scaled,
) -> str:
    """Config for `units` services; with hung endpoints (0..units/10-1), one in every 10
    services in config order, and a tick every `every` services (0 = only at the start)."""
    hung = units // 10 if port == HUNG_PORT else 0
    healthy = list(range(hung, units))
    order: list[int] = []
    for h in range(hung):
        order += [h, *healthy[h * 9 : h * 9 + 9]]
    order += healthy[hung * 9 :]
    body = [mc.tick("tick0", ticks)]
    for i, n in enumerate(order):
        if every and i and i % every == 0:
            body.append(mc.tick(f"tick{i}", ticks))
        body.append(entry(n, port, timeout))
    return "".join(body)


def read_ticks(path: Path) -> list[float]:
    try:
        return [float(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def measure_scale(
    lab: Lab, tool_cls: type[Tool], units: int, port: int, timeout: int, window: float
) -> dict[str, float | str]:
    tag = f"{units}-{port}"
    tool = tool_cls(lab, tag)
    ticks = Path(lab.shared_dir) / f"ticks-{tag}"
    hung = port == HUNG_PORT
    every = 10 if hung else 0
    ready = float("nan")
    if isinstance(tool, HostSupervisor):
        tool.start({f"b{n}.yaml": scale_policy(n, port, timeout) for n in range(units)})
        ready = tool.ready()
    else:
        assert isinstance(tool, Monit)
        entry = mc.scaled_host if isinstance(tool, MonitProbing) else mc.scaled
        tool.start(monit_scaled(units, port, timeout, ticks, every, entry))
    pid = tool.host_pid()
    time.sleep(5.0)  # start-up, start jitter, first connections
    if isinstance(tool, HostSupervisor):
        tool.metrics("--reset")
        runs0 = tool.metrics()["check_runs"]
    ticks0 = len(read_ticks(ticks))
    cpu0 = sum(cpu_seconds(pid))
    t0 = time.time()
    time.sleep(window)
    cpu = sum(cpu_seconds(pid)) - cpu0
    elapsed = time.time() - t0
    _rss, hwm = memory_mb(pid)
    r: dict[str, float | str] = {"cpu_per_min": 60 * cpu / elapsed, "hwm": hwm, "ready": ready}
    if isinstance(tool, HostSupervisor):
        m = tool.metrics()
        runs = m["check_runs"] - runs0
        r |= {"late_p50": m["lateness_ms"]["p50"], "late_p99": m["lateness_ms"]["p99"]}
        r["runs_note"] = "daemon's check_runs"
    else:
        stamps = read_ticks(ticks)
        if every:
            # Ticks every 10 services: time per 10 services, projected to a full cycle.
            window_stamps = [s for s in stamps if s >= t0 - 1]
            gaps = [b - a for a, b in itertools.pairwise(window_stamps)]
            per10 = statistics.median(gaps) if gaps else float("nan")
            cycle = per10 * units / 10
            seen = len(window_stamps)
            r |= {
                "late_p50": 1000 * (cycle - 1),
                "late_p99": 1000 * (cycle - 1),
                "runs_note": f"projected: {seen} segments of 10 services in {window:g} s, "
                f"median {per10:.2f} s each -> cycle ~{cycle:.0f} s",
            }
            runs = 2 * 10 * max(seen - 1, 0)
        else:
            cycles = [s for s in stamps[ticks0:]]
            periods = [b - a for a, b in itertools.pairwise(cycles)]
            lates = [1000 * (p - 1) for p in periods] or [float("nan")]
            p50, _p95, p99, _max = percentiles(lates)
            r |= {"late_p50": float(p50), "late_p99": float(p99)}
            runs = units * 2 * max(len(cycles), 0)
            r["runs_note"] = f"{len(cycles)} cycles counted from the tick check"
    r["runs"] = runs
    r["cpu_us_per_run"] = 1e6 * cpu / runs if runs else float("nan")
    tool.stop()
    return r


# -- main ------------------------------------------------------------------------------


def versions(lab: Lab) -> str:
    monit_v = lab.run("monit", "-V").stdout.splitlines()[0]
    hs_v = lab.run(str(EXE), "--version").stdout.strip()
    return (
        f"machine: nproc={os.cpu_count()} kernel={platform.release()} "
        f"python={platform.python_version()}; {monit_v}; {hs_v}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3, help="failing-endpoint repetitions")
    parser.add_argument("--units", default="10,100,500,1000")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--pause", type=float, default=1.2, help="s between kills")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: 1,2,3,4")
    args = parser.parse_args()
    if reason := lab_unavailable_reason():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    if shutil.which("monit") is None:
        print("bench: needs Debian's monit (apt-get install monit)", file=sys.stderr)
        return 1
    skip = set(args.skip.split(","))
    sizes = [int(u) for u in args.units.split(",")]
    top = max(sizes)
    started = time.monotonic()
    results: dict[str, dict[str, object]] = {
        "host-supervisor": {},
        "monit": {},
        "monit-host": {},
        "floor": {},
    }
    with Lab() as lab:
        lab.boot()
        shared = Path(lab.shared_dir)
        facts = versions(lab)
        print(facts, flush=True)
        (shared / "flaky.mode").write_text("ok")
        # The same unit for both tools; no start limit, so 50 quick restarts are allowed.
        lab.install_unit(WEB, web_unit(WEB_PORT, unit_extra="StartLimitIntervalSec=0"))
        lab.install_unit(
            "flaky.service",
            f"[Unit]\nStartLimitIntervalSec=0\n[Service]\n"
            f"ExecStart=/usr/bin/python3 {FLAKY_SERVER} {FLAKY_PORT} {shared / 'flaky.mode'}\n",
        )
        lab.run("systemctl", "start", WEB, "flaky.service")
        if not {"1", "2"} <= skip:
            for cls in (HostSupervisor, Monit):
                tool = cls(lab, "crash")
                if isinstance(tool, HostSupervisor):
                    tool.start({"web.yaml": POLICY, "flaky.yaml": FLAKY_POLICY})
                else:
                    assert isinstance(tool, Monit)
                    tool.start(mc.web(WEB_PORT, WEB) + mc.flaky(FLAKY_PORT))
                time.sleep(3.0)
                if "1" not in skip:
                    print(f"[{time.monotonic() - started:.0f}s] crash: {tool.name}", flush=True)
                    results[tool.name]["crash"] = crash(lab, tool, args.kills, args.pause)
                if "2" not in skip:
                    print(f"[{time.monotonic() - started:.0f}s] http: {tool.name}", flush=True)
                    results[tool.name]["http"] = failing_http(lab, tool, args.reps)
                tool.stop()
        if "2" not in skip:
            tool = HostSupervisor(lab, "confirm")
            tool.start({"flaky.yaml": CONFIRM_POLICY})
            time.sleep(3.0)
            print(f"[{time.monotonic() - started:.0f}s] http confirm: {tool.name}", flush=True)
            results[tool.name]["http_confirm"] = failing_http(lab, tool, args.reps)
            tool.stop()
        if not {"3", "4"} <= skip:
            lab.install_unit(
                "bench@.service",
                "[Service]\nExecStart=/bin/sleep infinity\n"
                "ExecStartPost=/bin/sh -c 'echo $MAINPID > /run/bench-%i.pid'\n",
            )
            for port, hung, extra in (
                (OK_PORT, 0, ""),
                (HUNG_PORT, top // 10, ""),
                (CLOSE_PORT, 0, " close"),
            ):
                lab.install_unit(
                    f"bench-server-{port}.service",
                    f"[Service]\nExecStart=/usr/bin/python3 {BENCH_ASSETS / 'bench_server.py'} "
                    f"{port} {hung}{extra}\nLimitNOFILE=65536\n",
                )
                lab.run("systemctl", "start", f"bench-server-{port}.service")
            lab.run("systemctl", "start", *[f"bench@{n}.service" for n in range(top)], timeout=300)
        if "3" not in skip:
            for mode in ("fresh", "keepalive"):
                out = lab.run(
                    "/usr/bin/python3", str(BENCH_ASSETS / "floor.py"), str(OK_PORT), "3000", mode
                )
                results["floor"][mode] = json.loads(out.stdout)
        runs: list[tuple[str, int, int, int, tuple[type[Tool], ...]]] = []
        both: tuple[type[Tool], ...] = (HostSupervisor, Monit)
        if "3" not in skip:
            runs += [
                ("scale", n, OK_PORT, 1, (*both, MonitProbing) if n == top else both) for n in sizes
            ]
            runs += [("close", top, CLOSE_PORT, 1, (HostSupervisor, MonitProbing))]
        if "4" not in skip:
            runs += [("slow", top, HUNG_PORT, 5, both)]
        for kind, n, port, timeout, tools in runs:
            for cls in tools:
                print(f"[{time.monotonic() - started:.0f}s] {kind} {n}: {cls.name}", flush=True)
                results[cls.name][f"{kind}{n}"] = measure_scale(
                    lab, cls, n, port, timeout, args.window
                )
    report(args, sizes, top, results, facts, time.monotonic() - started)
    return 0


def report(args, sizes, top, results, facts, took) -> None:  # type: ignore[no-untyped-def]
    hs, mo, mh = results["host-supervisor"], results["monit"], results["monit-host"]
    floor = results["floor"]
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, key: str, fmt: Callable[[object], str]) -> None:
        if key in hs or key in mo or key in mh:
            rows.append(
                (
                    label,
                    fmt(hs.get(key)),
                    fmt(mo.get(key)),
                    fmt(mh.get(key)) if key in mh else "",
                )
            )

    def pct(i: int, which: int) -> Callable[[object], str]:
        return lambda v: "-" if v is None else percentiles(v[which])[i]  # type: ignore[index]

    def median(v: object) -> str:
        return "-" if v is None else f"{statistics.median(v):.0f}"  # type: ignore[arg-type]

    def each(v: object) -> str:
        return "-" if v is None else " ".join(f"{x:.0f}" for x in v)  # type: ignore[union-attr]

    g = lambda f: lambda v: "-" if v is None else f(v)  # noqa: E731
    for which, what in ((0, "kill -> detection"), (1, "kill -> active again")):
        for i, q in enumerate(("p50", "p95", "p99")):
            add(f"1. {what} {q} (ms)", "crash", pct(i, which))
    add("2. endpoint bad -> restart issued, median (ms)", "http", median)
    add("   (each run, ms)", "http", each)
    add(f"2b. the same, confirm_interval {CONFIRM}, median (ms)", "http_confirm", median)
    add("   (each run, ms)", "http_confirm", each)
    for n in sizes:
        key = f"scale{n}"
        add(f"3. {n} units: CPU s per minute", key, g(lambda v: f"{v['cpu_per_min']:.2f}"))
        add(f"3. {n} units: peak RSS (MB)", key, g(lambda v: f"{v['hwm']:.0f}"))
        add(f"3. {n} units: CPU per check run (us)", key, g(lambda v: f"{v['cpu_us_per_run']:.0f}"))
        add(
            f"3. {n} units: lateness p50 / p99 (ms)",
            key,
            g(lambda v: f"{v['late_p50']:.0f} / {v['late_p99']:.0f}"),
        )
        add(
            f"3. {n} units: exec -> READY=1 (s)",
            key,
            g(lambda v: "" if v["ready"] != v["ready"] else f"{v['ready']:.2f}"),
        )
    key = f"close{top}"
    add(
        f"3c. {top} units, endpoint closes every connection: CPU per check run (us)",
        key,
        g(lambda v: f"{v['cpu_us_per_run']:.0f}"),
    )
    add("3c.   CPU s per minute", key, g(lambda v: f"{v['cpu_per_min']:.2f}"))
    key = f"slow{top}"
    add(
        f"4. {top} units, 10% hung, 5 s timeout: lateness p50 (ms)",
        key,
        g(lambda v: f"{v['late_p50']:.0f}"),
    )
    add("4.   lateness p99 (ms)", key, g(lambda v: f"{v['late_p99']:.0f}"))
    add("4.   CPU s per minute", key, g(lambda v: f"{v['cpu_per_min']:.2f}"))
    print()
    print(
        "command: "
        + shlex.join([".venv/bin/python", "-m", "tests.bench.bench_monit", *sys.argv[1:]])
    )
    print(facts)
    print(
        f"kills={args.kills} reps={args.reps} window={args.window:g}s pause={args.pause:g}s; "
        f"took {took:.0f} s"
    )
    print_table(("measure", "host-supervisor", "monit", "monit probing-only"), rows)

    def per_run(res: dict[str, object], key: str) -> float:
        v = res.get(key)
        value = float(v["cpu_us_per_run"]) if isinstance(v, dict) else float("nan")
        return value if value > 0 else float("nan")  # monit's CPU ticks can round to 0

    ratios = [
        (
            f"CPU per check run at {top} units / monit as configured",
            per_run(hs, f"scale{top}") / per_run(mo, f"scale{top}"),
            "<= 0.5",
        ),
        (
            f"CPU per check run at {top} units / monit probing-only, keep-alive endpoint",
            per_run(hs, f"scale{top}") / per_run(mh, f"scale{top}"),
            "<= 1.5",
        ),
        (
            f"CPU per check run at {top} units / monit probing-only, closing endpoint",
            per_run(hs, f"close{top}") / per_run(mh, f"close{top}"),
            "<= 2.5",
        ),
    ]
    print()
    print_table(
        ("ratio (same run)", "value", "target"),
        [(label, f"{value:.2f}", target) for label, value, target in ratios],
    )
    if floor:
        print()
        print_table(
            ("kernel floor, bare client (us per request)", "system", "user"),
            [
                (f"{mode} loopback connect + request" if mode == "fresh" else "keep-alive request",
                 f"{v['sys_us']:.1f}", f"{v['user_us']:.1f}")
                for mode, v in floor.items()
            ],
        )  # fmt: skip
    print(
        "\nnotes: monit detection/restart times are journald receipt stamps (us) of its syslog "
        "lines; monit's own log-file stamps have 1 s resolution.\n"
        f"monit skips a process's connection tests until it has run {MONIT_START_PAUSE} s (its "
        "start timeout): section 2 waits that out (+3 s) before each round, for both tools.\n"
        "monit lateness = its cycle period (tick check first in the config, date +%s.%N) "
        "minus the 1 s schedule; every check in a cycle has that interval.\n"
        "monit probing-only: `check host` entries with the same two tests, no process checks."
    )
    for n in sorted({*sizes, top}):
        for name, res in (("host-supervisor", hs), ("monit", mo), ("monit-host", mh)):
            for kind in ("scale", "close", "slow"):
                v = res.get(f"{kind}{n}")
                if isinstance(v, dict):
                    print(f"  {kind} {n} {name}: runs={v['runs']} ({v['runs_note']})")


if __name__ == "__main__":
    raise SystemExit(main())
