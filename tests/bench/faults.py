"""A randomised fault suite against the real lab, in the spirit of Pacemaker's CTS.

Each trial boots a fresh lab, installs a daemon (as a systemd unit with WatchdogSec=
and Restart=on-failure, as shipped) and a few units, injects one kind of fault at a
random moment, and then reads the evidence: the daemon's own history (its state
database, opened read-only from the host), systemd's journal and properties, and
files the test units write themselves. Kinds:

kill    SIGKILL the daemon during a ladder (acting, settling, cooldown) or a
        failover/failback; systemd restarts it. Counts repeated and skipped attempts
        (attempt numbers, start counts the unit logs itself, cooldowns measured), and
        whether the unit ends where expected.
reexec  systemctl daemon-reexec / daemon-reload, restarting dbus.service, SIGKILLing
        dbus-daemon, while a unit with its own Restart= crashes now and then. Counts
        false repairs (any repair of a healthy unit or of one systemd was restarting)
        and whether a real crash is still repaired afterwards.
store   the state database locked by another process (BEGIN EXCLUSIVE for 10-20 s),
        or the state directory (a small tmpfs) full, while a unit fails. Counts
        watchdog timeouts of the daemon, and whether the repair happened and was kept.
smtp    the SMTP sink down during a burst of alerts, the daemon SIGKILLed during the
        outage, the sink back. Counts alerts the daemon spooled (or sent) that the sink
        never received, or received twice.

Run: tests/bench/run faults [--trials N] [--kinds kill,reexec] [--seed S]
(or: python -m tests.bench.faults ...). It prints one table per kind; it never fails
on a figure, and exits 1 only when no trial could run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.header
import functools
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import print_table
from tests.lab_units import DAEMON_UNIT, daemon_unit, web_unit, write_config

KINDS = ("kill", "reexec", "store", "smtp")
ASSETS = Path(__file__).parents[1] / "integration" / "assets"
WATCHDOG = "10s"  # as the lab tests run the daemon (the shipped unit says 30s)

#: The figures of a trial, in table order; all of them are counts whose target is 0.
FIGURES = (
    "repeated",  # a repair action (attempt number, or a job the unit saw) done twice
    "skipped",  # an attempt that was due and never ran, or a cooldown cut short
    "false_repairs",  # a repair of a healthy unit, or of one systemd was restarting
    "alerts_lost",  # queued by the daemon (kept on disk or not), never received
    "alerts_duplicated",  # received more often than the daemon queued it
    "watchdog_misses",  # systemd's "Watchdog timeout" for the daemon
    "wrong_end",  # the unit did not end where expected (healthy / served / state kept)
)
#: Figures reported but not targets (the design allows them; see the report).
INFO = (
    "late_repairs",  # store: a repair that waited for the fault to end
)


@dataclass
class Trial:
    kind: str
    number: int
    seed: int
    figures: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    variant: str = ""
    error: str | None = None  # the harness could not set it up / run it
    seconds: float = 0.0
    plan: dict[str, float] = field(default_factory=dict)  # choices fixed instead of drawn

    def count(self, figure: str, n: int = 1, why: str = "") -> None:
        if n <= 0:
            return
        self.figures[figure] += n
        if why:
            self.notes.append(f"{figure} +{n}: {why}")


class TrialError(Exception):
    """The harness could not set the trial up (not a finding about the daemon)."""


# -- the lab and the daemon -------------------------------------------------------------


class Rig:
    """One trial's lab: a daemon with a config and state dir of its own."""

    def __init__(self, lab: Lab, log_dir: Path | None) -> None:
        self.lab = lab
        self.root = Path(lab.shared_dir)
        self.config = self.root / "etc"
        self.state = self.root / "state"
        self.log_dir = log_dir
        self.evidence: dict[str, str] = {}  # file suffix -> text, kept with the logs

    def script(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        path.chmod(0o755)
        return path

    def start_daemon(self, main: str, policies: dict[str, str], watchdog: str = WATCHDOG) -> None:
        write_config(self.config, policies, main=main)
        self.lab.install_unit(DAEMON_UNIT, daemon_unit(self.config, self.state, watchdog=watchdog))
        self.lab.run("systemctl", "start", DAEMON_UNIT, timeout=60)
        self.wait_supervising()

    def daemon_pid(self) -> str:
        return self.lab.show(DAEMON_UNIT, "MainPID")["MainPID"]

    def wait_supervising(self, timeout: float = 30.0) -> None:
        """The daemon is active (READY=1 sent) and its first observation is over."""
        self.lab.wait_for(
            lambda: self.lab.show(DAEMON_UNIT, "ActiveState")["ActiveState"] == "active",
            timeout=timeout,
            what="the daemon active",
        )

    def kill_daemon(self) -> str:
        """SIGKILL the daemon; return its old main PID (systemd restarts it)."""
        pid = self.daemon_pid()
        self.lab.run("systemctl", "kill", "-s", "KILL", DAEMON_UNIT)
        return pid

    def wait_daemon_back(self, old_pid: str, timeout: float = 40.0) -> None:
        def back() -> bool:
            s = self.lab.show(DAEMON_UNIT, "ActiveState", "MainPID")
            return s["ActiveState"] == "active" and s["MainPID"] not in (old_pid, "0")

        self.lab.wait_for(back, timeout=timeout, what="the daemon restarted by systemd")

    def history(self, unit: str | None = None) -> list[dict[str, Any]]:
        """The daemon's history, read-only from its database (works while it is down).

        Read inside the lab: SQLite resolves /proc/PID/root to the host's /, where a
        tmpfs mounted in the lab is not.
        """
        out = self.lab.run(
            sys.executable,
            "-c",
            READ_HISTORY,
            str(self.state / "state.db"),
            unit or "",
            timeout=60,
        ).stdout
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def journal(self, *match: str) -> list[dict[str, Any]]:
        out = self.lab.run(
            "journalctl", "-q", "--no-pager", "-o", "json", *match, check=False, timeout=60
        ).stdout
        entries = []
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def watchdog_misses(self) -> int:
        """PID 1's "Watchdog timeout" messages about the daemon's unit."""
        entries = self.journal("_PID=1", f"UNIT={DAEMON_UNIT}")
        return sum("Watchdog timeout" in str(e.get("MESSAGE", "")) for e in entries)

    def daemon_restarts(self) -> int:
        return int(self.lab.show(DAEMON_UNIT, "NRestarts")["NRestarts"] or 0)

    def active(self, unit: str) -> bool:
        return self.lab.show(unit, "ActiveState")["ActiveState"] == "active"

    def active_daemon(self) -> bool:
        return self.active(DAEMON_UNIT)

    def save_logs(self, trial: Trial) -> None:
        """Keep the lab's journal and the daemon's history of a trial with findings."""
        if self.log_dir is None:
            return
        with contextlib.suppress(Exception):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stem = self.log_dir / f"{trial.kind}-{trial.number:03d}-seed{trial.seed}"
            out = self.lab.run(
                "journalctl", "-q", "--no-pager", "-o", "short-precise", check=False, timeout=60
            ).stdout
            Path(f"{stem}.journal").write_text(out)
            Path(f"{stem}.history.json").write_text(json.dumps(self.history(), indent=1))
            for name, text in self.evidence.items():
                Path(f"{stem}.{name}").write_text(text)
            mails = sorted((self.root / "mail").glob("*.eml"))
            if mails:
                Path(f"{stem}.mail").write_text(
                    "\n\n".join(f"==> {m.name}\n{m.read_text(errors='replace')}" for m in mails)
                )


READ_HISTORY = """
import json, os, sqlite3, sys
path, unit = sys.argv[1], sys.argv[2]
rows = []
if os.path.exists(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    sql = "SELECT id, time, unit, kind, message, data FROM history"
    args = ()
    if unit:
        sql, args = sql + " WHERE unit = ?", (unit,)
    for r in db.execute(sql + " ORDER BY id", args):
        rows.append(dict(zip(("id", "time", "unit", "kind", "message", "data"), r)))
print(json.dumps(rows))
"""


def daemon_env() -> dict[str, str]:
    """The environment of the daemon's CLI in the lab: the same source tree as the daemon
    (tests.lab_units.daemon_unit passes PYTHONPATH on to the daemon's unit)."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path} if path else {}


def daemon_source(src: Path | None, rev: str | None) -> Path | None:
    """The tree whose `supervisor` package the lab's daemon runs.

    `src`: that directory; `rev`: a commit of this repository, exported once to
    .cache/daemon/SHA; neither: the PYTHONPATH of this process (a worktree), else the
    venv's editable install.
    """
    if rev is not None:
        repo = Path(__file__).resolve().parents[2]
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        src = repo / ".cache" / "daemon" / sha
        if not (src / "supervisor").is_dir():
            src.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", sha, "supervisor"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    if src is not None:
        os.environ["PYTHONPATH"] = str(src.resolve())
    path = os.environ.get("PYTHONPATH")
    return Path(path.split(":")[0]) if path else None


def describe(src: Path | None) -> str:
    if src is None:
        return "the venv's install of host-supervisor"
    if src.parent.name == "daemon" and re.fullmatch(r"[0-9a-f]{40}", src.name):
        return f"{src} (commit {src.name[:12]}, exported by --daemon-rev)"
    head = subprocess.run(
        ["git", "-C", str(src), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{src}" + (f" (git {head})" if head else "")


def actions(history: Sequence[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    return [e for e in history if e["unit"] == unit and e["kind"] == "action"]


ATTEMPT = re.compile(r"^(\w+) \(attempt (\d+)/(\d+)\)")


def attempt_numbers(history: Sequence[dict[str, Any]], unit: str) -> list[tuple[int, float]]:
    found = []
    for e in actions(history, unit):
        if m := ATTEMPT.match(e["message"]):
            found.append((int(m.group(2)), float(e["time"])))
    return found


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Like Lab.wait_for, but answers False on timeout instead of raising."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


# -- units that log their own starts ----------------------------------------------------

# ExecStartPre of a gated unit: log the start, take `delay` seconds (so a repair has an
# "acting" phase long enough to be hit), then fail while fewer than `fail` starts were
# refused since the counter was reset. The start log is the unit's own evidence of how
# many start jobs really ran, whatever the daemon's history says.
GATE = """\
#!/bin/sh
# usage: gate.sh NAME
dir=$(dirname "$0")
name=$1
echo "start $(date +%s.%N)" >> "$dir/$name.starts"
sleep "$(cat "$dir/$name.delay" 2>/dev/null || echo 0)"
n=$(cat "$dir/$name.refused" 2>/dev/null || echo 0)
want=$(cat "$dir/$name.fail" 2>/dev/null || echo 0)
if [ "$n" -lt "$want" ]; then
  echo $((n + 1)) > "$dir/$name.refused"
  echo "refused $(date +%s.%N)" >> "$dir/$name.starts"
  exit 1
fi
exit 0
"""


def gated_unit(
    rig: Rig, name: str, port: int, *, delay: float, fail: int, restart: str = "no"
) -> str:
    gate = rig.root / "gate.sh"
    if not gate.exists():
        rig.script("gate.sh", GATE)
    (rig.root / f"{name}.delay").write_text(f"{delay}\n")
    (rig.root / f"{name}.fail").write_text(f"{fail}\n")
    return web_unit(port, restart=restart, extra=f"ExecStartPre=/bin/sh {gate} {name}")


def starts(rig: Rig, name: str) -> list[float]:
    path = rig.root / f"{name}.starts"
    if not path.exists():
        return []
    return [
        float(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("start")
    ]


def reset_starts(rig: Rig, name: str, fail: int) -> None:
    (rig.root / f"{name}.starts").write_text("")
    (rig.root / f"{name}.refused").write_text("0\n")
    (rig.root / f"{name}.fail").write_text(f"{fail}\n")


# -- kind 1: the daemon killed during a ladder or a failover ----------------------------

KILL_COOLDOWN, KILL_BACKOFF, KILL_SETTLE, KILL_DELAY = 2.0, 1.5, 1.5, 0.8
KILL_MAIN = (
    "guard:\n  repair_budget: {max: 1000, window: 15m}\n  breaker: {failures: 1000, open_for: 1m}\n"
)
KILL_POLICY = f"""\
unit: web.service
recovery:
  ladder: [restart]
  max_attempts: 3
  cooldown: {KILL_COOLDOWN}s
  backoff: {KILL_BACKOFF}
  settle: {int(KILL_SETTLE * 1000)}ms
  reset_after: 1h
failover:
  backup: [web-backup.service]
  settle: 3s
  failback: {{delay: 3s, successes: 2}}
"""


def trial_kill(rig: Rig, rnd: random.Random, trial: Trial) -> None:
    lab = rig.lab
    # How many restarts fail: 0-2 recover on the ladder; 3 exhaust it and fail over
    # (then the 4th start, the failback, succeeds).
    fail = int(trial.plan["fail"]) if "fail" in trial.plan else rnd.choice([0, 1, 2, 3, 3])
    lab.install_unit(
        "web.service", gated_unit(rig, "web", 8701, delay=KILL_DELAY, fail=0), reload=False
    )
    lab.install_unit(
        "web-backup.service", gated_unit(rig, "web-backup", 8701, delay=KILL_DELAY, fail=0)
    )
    lab.run("systemctl", "start", "web.service")
    rig.start_daemon(KILL_MAIN, {"web.yaml": KILL_POLICY})
    time.sleep(1.0)  # past the daemon's observation after start
    kill_at = rnd.uniform(0.0, kill_span(fail))
    kill_at = trial.plan.get("kill_at", kill_at)
    trial.variant = f"fail={fail}"
    reset_starts(rig, "web", fail)
    reset_starts(rig, "web-backup", 0)
    restarts_before = rig.daemon_restarts()
    crashed = time.time()
    lab.run("systemctl", "kill", "-s", "KILL", "web.service")
    t0 = time.monotonic()
    sleep_until(t0 + kill_at)
    killed_wall = time.time()
    old = rig.kill_daemon()
    trial.notes.append(f"daemon killed {kill_at:.2f}s after the crash")
    rig.wait_daemon_back(old)

    # The end: web healthy, served by the primary, backup stopped, no action pending.
    def settled() -> bool:
        if not (rig.active("web.service") and not rig.active("web-backup.service")):
            return False
        st = status(rig, "web.service")
        fo = st.get("failover") or {}
        return st.get("phase") == ladder_end and fo.get("phase", "primary") == "primary"

    # An exhausted ladder stays so (attempts kept) until reset_after, after failback too.
    ladder_end = "exhausted" if fail >= 3 else "idle"

    if not wait_until(settled, timeout=60, interval=0.5):
        trial.count(
            "wrong_end",
            1,
            f"not back to the primary serving, ladder {ladder_end}: {status(rig, 'web.service')}",
        )
    time.sleep(1.5)  # past the last history flush
    hist = [e for e in rig.history("web.service") if e["time"] >= crashed - 0.5]
    phase = phase_at(hist, killed_wall)
    trial.variant += f" killed-in={phase}"
    got = attempt_numbers(hist, "web.service")
    numbers = [n for n, _ in got]
    expected = list(range(1, min(fail, 2) + 2))  # attempts 1..fail+1, at most 3
    dup = sum(c - 1 for c in Counter(numbers).values() if c > 1)
    trial.count("repeated", dup, f"attempt numbers {numbers}")
    missing = [n for n in expected if n not in numbers]
    trial.count("skipped", len(missing), f"attempts {missing} never ran (saw {numbers})")
    extra = [n for n in numbers if n not in expected]
    trial.count("repeated", len(extra), f"attempts {extra} beyond the plan {expected}")
    # A cooldown measured between the recorded actions (cooldown before attempt n+1
    # is cooldown * backoff**(n-1) after attempt n).
    times = dict(got)
    for n in range(1, 3):
        if n in times and n + 1 in times:
            want = KILL_COOLDOWN * KILL_BACKOFF ** (n - 1)
            gap = times[n + 1] - times[n]
            if gap < want - 0.05:
                trial.count(
                    "skipped", 1, f"cooldown before attempt {n + 1} was {gap:.2f}s < {want:.2f}s"
                )
    # The unit's own evidence: how many start jobs really ran.
    web_starts, backup_starts = starts(rig, "web"), starts(rig, "web-backup")
    want_web = len(expected) + (1 if fail >= 3 else 0)  # + the failback
    want_backup = 1 if fail >= 3 else 0
    for name, saw, want_n in (
        ("web", web_starts, want_web),
        ("web-backup", backup_starts, want_backup),
    ):
        if len(saw) > want_n:
            trial.count(
                "repeated", len(saw) - want_n, f"{name} started {len(saw)} times, plan {want_n}"
            )
        elif len(saw) < want_n:
            trial.count(
                "skipped", want_n - len(saw), f"{name} started {len(saw)} times, plan {want_n}"
            )
    if rig.daemon_restarts() - restarts_before != 1:
        trial.notes.append(f"daemon NRestarts went {restarts_before} -> {rig.daemon_restarts()}")
    trial.count("watchdog_misses", rig.watchdog_misses(), "systemd: Watchdog timeout")


def kill_span(fail: int) -> float:
    """Seconds from the crash to the end of the repair when `fail` restarts fail (as the
    lab shows it: a failed attempt is judged after `settle`, the next waits for its
    cooldown from the previous action); the daemon is killed at a uniform time in it."""
    at = 0.0  # the start of the current attempt
    for n in range(1, min(fail, 3) + 1):
        failed = at + KILL_DELAY
        if n == 3:  # exhausted: fail over (stop, start the backup), serve, fail back
            return failed + KILL_SETTLE + KILL_DELAY + 3.0 + KILL_DELAY + 1.0
        at = max(at + KILL_COOLDOWN * KILL_BACKOFF ** (n - 1), failed + KILL_SETTLE)
    return at + KILL_DELAY + KILL_SETTLE


def phase_at(hist: Sequence[dict[str, Any]], wall: float) -> str:
    """What the daemon was doing at `wall`, replayed from its history up to then."""
    phase = "detecting"
    for e in hist:
        if e["time"] > wall:
            break
        kind, msg = e["kind"], str(e["message"])
        if kind == "action":
            phase = "acting"
        elif kind == "result" and msg.startswith("restart "):
            phase = "settling" if msg.startswith("restart done") else "cooldown"
        elif kind == "recovery" and msg.startswith("recovered"):
            phase = "idle" if phase in ("settling", "cooldown", "acting") else phase
        elif kind == "alert" and msg.startswith("exhausted"):
            phase = "exhausted"
        elif kind == "failover":
            if "gave up" in msg:
                phase = "failing-over"
            elif "serves in place of" in msg:
                phase = "backup"
            elif "stopping web-backup.service, starting" in msg:
                phase = "failing-back"
            elif "serves again" in msg:
                phase = "primary-again"
    return phase


def status(rig: Rig, unit: str) -> dict[str, Any]:
    from tests.lab_units import SOCKET, daemon_cli

    out = rig.lab.run(
        *daemon_cli(), "status", unit, "--socket", SOCKET, "--json", check=False, env=daemon_env()
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-200:]}
    row: dict[str, Any] = json.loads(out.stdout)["units"][0]
    return row


# -- kind 2: systemd re-executed, reloaded; the bus restarted or killed -----------------

REEXEC_POLICY = "unit: {unit}\nrecovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}\n"
HEALTHY = ("h1.service", "h2.service", "h3.service")
REEXEC_OPS = ("daemon-reexec", "daemon-reload", "restart-dbus", "kill-dbus")


def trial_reexec(rig: Rig, rnd: random.Random, trial: Trial) -> None:
    lab = rig.lab
    for port, unit in enumerate(HEALTHY, start=8711):
        lab.install_unit(unit, web_unit(port), reload=False)
    lab.install_unit(
        "coop.service", web_unit(8714, restart="on-failure", extra="RestartSec=1s"), reload=False
    )
    lab.install_unit("real.service", web_unit(8715))
    units = [*HEALTHY, "coop.service", "real.service"]
    lab.run("systemctl", "start", *units)
    policies = {f"{u}.yaml": REEXEC_POLICY.format(unit=u) for u in units}
    rig.start_daemon(KILL_MAIN, policies)
    time.sleep(1.0)
    pids = {u: lab.show(u, "MainPID")["MainPID"] for u in HEALTHY}
    coop_restarts = int(lab.show("coop.service", "NRestarts")["NRestarts"])
    began = time.time()
    # The storm: 4 operations on systemd and the bus, and 2-3 crashes of coop, at
    # random moments of a 12 s window (crashes at least 3 s apart: no start limit).
    ops = [(rnd.uniform(0.0, 12.0), rnd.choice(REEXEC_OPS)) for _ in range(4)]
    crashes = sorted(rnd.sample([0.5, 3.5, 6.5, 9.5], k=rnd.choice([2, 3])))
    events = sorted([*ops, *((t + rnd.uniform(0, 1.5), "crash-coop") for t in crashes)])
    trial.variant = " ".join(op for _, op in events if op != "crash-coop")
    t0 = time.monotonic()
    bus_pids = [lab.show("dbus.service", "MainPID")["MainPID"]]
    for at, op in events:
        sleep_until(t0 + at)
        with contextlib.suppress(Exception):
            bus_pids.append(lab.show("dbus.service", "MainPID")["MainPID"])
        if op == "daemon-reexec":
            lab.run("systemctl", "daemon-reexec", timeout=60)
        elif op == "daemon-reload":
            lab.run("systemctl", "daemon-reload", timeout=60)
        elif op == "restart-dbus":
            lab.run("systemctl", "restart", "dbus.service", timeout=60, check=False)
        elif op == "kill-dbus":
            lab.run("systemctl", "kill", "-s", "KILL", "dbus.service", check=False)
        else:
            lab.run("systemctl", "kill", "-s", "KILL", "coop.service", check=False)
    sleep_until(t0 + 14.0)
    with contextlib.suppress(Exception):
        bus_pids.append(lab.show("dbus.service", "MainPID")["MainPID"])
    # coop is back by systemd's hand; h1-h3 were never touched.
    if not wait_until(lambda: rig.active("coop.service"), timeout=15):
        state = lab.show("coop.service", "ActiveState", "Result")
        trial.notes.append(f"coop.service not active after the storm: {state}")
    # Then a real crash: the daemon must still see it and repair it.
    time.sleep(2.0)
    real_pid = lab.show("real.service", "MainPID")["MainPID"]
    crash = time.time()
    lab.run("systemctl", "kill", "-s", "KILL", "real.service")

    def repaired() -> bool:
        s = lab.show("real.service", "ActiveState", "MainPID")
        return s["ActiveState"] == "active" and s["MainPID"] not in (real_pid, "0")

    if wait_until(repaired, timeout=20, interval=0.1):
        trial.notes.append(f"real crash repaired in {time.time() - crash:.2f}s")
    else:
        trial.count("wrong_end", 1, "a real crash after the storm was not repaired within 20s")
    time.sleep(1.5)
    hist = [e for e in rig.history() if e["time"] >= began - 0.5]
    for unit in (*HEALTHY, "coop.service"):
        acted = actions(hist, unit)
        pid_now = lab.show(unit, "MainPID")["MainPID"]
        moved = unit in pids and pid_now != pids[unit]
        n = max(len(acted), 1 if moved else 0)
        trial.count(
            "false_repairs",
            n,
            f"{unit}: {[a['message'] for a in acted]}"
            + (f" (MainPID {pids[unit]} -> {pid_now})" if moved else ""),
        )
    got = int(lab.show("coop.service", "NRestarts")["NRestarts"]) - coop_restarts
    if got != len(crashes):
        trial.notes.append(f"coop: {len(crashes)} crashes, systemd's NRestarts +{got}")
    trial.count("watchdog_misses", rig.watchdog_misses(), "systemd: Watchdog timeout")
    said = [str(e.get("MESSAGE", "")) for e in rig.journal(f"_SYSTEMD_UNIT={DAEMON_UNIT}")]
    lost = sum(m.startswith("lost the system bus") for m in said)
    connected = sum(m.startswith("connected to the system bus") for m in said)
    trial.notes.append(
        f"dbus-daemon PIDs seen {len(set(bus_pids))}; the daemon lost the bus x{lost},"
        f" connected x{connected}"
    )
    if not any(e["kind"] == "action" for e in actions(hist, "real.service")):
        trial.notes.append("no action recorded for real.service")


# -- kind 3: the state database locked, the state disk full -----------------------------

STORE_POLICY = "unit: web.service\nrecovery: {ladder: [restart], cooldown: 1s, settle: 1s}\n"


def trial_store(rig: Rig, rnd: random.Random, trial: Trial) -> None:
    lab = rig.lab
    variant = rnd.choice(["lock", "full"])
    hold = rnd.uniform(10.0, 20.0)
    crash_after = rnd.uniform(1.0, hold - 4.0)
    trial.variant = f"{variant} hold={hold:.1f}s crash+{crash_after:.1f}s"
    lab.install_unit("web.service", web_unit(8721))
    lab.run("systemctl", "start", "web.service")
    if variant == "full":
        rig.state.mkdir(mode=0o700)
        lab.run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(rig.state))
    rig.start_daemon(KILL_MAIN, {"web.yaml": STORE_POLICY})
    time.sleep(2.0)  # the start's history is on disk
    restarts_before = rig.daemon_restarts()
    lock: subprocess.Popen[str] | None = None
    filler = rig.lab.root / str(rig.state / "filler").lstrip("/")
    if variant == "lock":  # another process, as an operator's sqlite3 shell would
        lock = lab.spawn(
            sys.executable,
            "-c",
            HOLDER,
            str(rig.state / "state.db"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert lock.stdout is not None
        if lock.stdout.readline().strip() != "locked":
            raise TrialError("the outside lock could not be taken")
    else:
        fill(filler)
    t0 = time.monotonic()
    try:
        sleep_until(t0 + crash_after)
        pid = lab.show("web.service", "MainPID")["MainPID"]
        crashed = time.time()
        lab.run("systemctl", "kill", "-s", "KILL", "web.service")

        def repaired() -> bool:
            s = lab.show("web.service", "ActiveState", "MainPID")
            return s["ActiveState"] == "active" and s["MainPID"] not in (pid, "0")

        during = wait_until(repaired, timeout=max(0.0, t0 + hold - time.monotonic()), interval=0.2)
        if during:
            trial.notes.append(f"repaired during the fault in {time.time() - crashed:.2f}s")
        sleep_until(t0 + hold)
    finally:
        if lock is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                lock.communicate("\n", timeout=10)
            if lock.poll() is None:
                lock.kill()
                lock.wait()
        filler.unlink(missing_ok=True)
    released = time.time()
    if not during:
        if wait_until(repaired, timeout=20, interval=0.2):
            trial.count(
                "late_repairs", 1, f"repaired {time.time() - released:.2f}s after the fault ended"
            )
        else:
            trial.count("wrong_end", 1, "web.service not repaired within 20s of the fault's end")
    time.sleep(3.0)  # history flushes every second; the daemon may be restarting
    wait_until(lambda: rig.active_daemon(), timeout=30)
    hist = [e for e in rig.history("web.service") if e["time"] >= crashed - 0.5]
    acted = attempt_numbers(hist, "web.service")
    if not acted and (during or rig.active("web.service")):
        trial.count("wrong_end", 1, "the repair happened but is not in the kept history")
    dup = sum(c - 1 for c in Counter(n for n, _ in acted).values() if c > 1)
    trial.count("repeated", dup, f"attempts {[n for n, _ in acted]}")
    misses = rig.watchdog_misses()
    trial.count("watchdog_misses", misses, f"systemd: Watchdog timeout x{misses}")
    restarts = rig.daemon_restarts() - restarts_before
    if restarts:
        trial.notes.append(f"the daemon was restarted {restarts} times by systemd")
    errors = [
        str(e.get("MESSAGE", "")) + " " + str(e.get("ERROR", ""))[:80]
        for e in rig.journal(f"_SYSTEMD_UNIT={DAEMON_UNIT}", "PRIORITY=3")
    ]
    if errors:
        trial.notes.append(f"{len(errors)} error lines, first: {errors[0]}")


# Holds BEGIN EXCLUSIVE on a database until a line arrives on stdin.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def fill(path: Path) -> int:
    """Fill the file system of `path` (a small tmpfs) to the last byte; bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        for size in (64 * 1024, 4096, 1):
            for _ in range(100_000):  # bounded: the tmpfs is 4 MiB
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return written


# -- kind 4: the SMTP sink down during a burst; the daemon killed meanwhile -------------

SMTP_PORT = 2525
SMTP_UNITS = tuple(f"m{n}.service" for n in range(1, 5))
SMTP_MAIN = f"""\
log_level: debug
guard:
  repair_budget: {{max: 1000, window: 15m}}
  breaker: {{failures: 1000, open_for: 1m}}
alerts:
  channels:
    mail:
      url: "mailto://127.0.0.1:{SMTP_PORT}?from=hs@example.com&to=ops@example.com&mode=insecure"
"""
SMTP_POLICY = (
    "unit: {unit}\nrecovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}\nalerts: [mail]\n"
)
GROUP_LINE = re.compile(r"^\d+\. [A-Z]+(?: \[[^\]]+\])? (.*)$")
GROUP_TITLE = re.compile(r"^\d+ alerts on ")


DIGEST_TITLE = re.compile(r"^\d+ delayed alerts from ")
DIGEST_SECTION = re.compile(r"^[A-Z]+  (.*)  \((?:(\d+) times, )?[^()]*\)$")
DIGEST_GROUP_LINE = re.compile(r"^   \d+\. [A-Z]+(?: \[[^\]]+\])? (.*)$")


def alert_titles(title: str, body: str) -> list[str]:
    """The alerts one message tells of, by title.

    A message is one alert (its title), a group ("N alerts on HOST": a numbered line
    each), or a digest of a spooled backlog ("N delayed alerts from HOST": a section per
    title with its count; a section of a group lists only the latest group's lines).
    """
    if DIGEST_TITLE.match(title):
        titles: list[str] = []
        in_group = False
        for line in body.splitlines():
            if m := DIGEST_SECTION.match(line):
                inner, times = m.group(1), int(m.group(2) or 1)
                in_group = bool(GROUP_TITLE.match(inner))
                if not in_group:
                    titles += [inner] * times
            elif in_group and (m := DIGEST_GROUP_LINE.match(line)):
                titles.append(m.group(1))
        return titles
    if not GROUP_TITLE.match(title):
        return [title]
    return [m.group(1) for line in body.splitlines() if (m := GROUP_LINE.match(line))]


def mail_texts(mail_dir: Path) -> list[tuple[str, str]]:
    """(file name, plain-text body) of each mail the sink kept."""
    out = []
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        for part in msg.walk() if msg.is_multipart() else [msg]:
            payload = (
                part.get_payload(decode=True) if part.get_content_type() == "text/plain" else None
            )
            if isinstance(payload, bytes):
                out.append((path.name, payload.decode(errors="replace")))
    return out


def received(mail_dir: Path) -> list[tuple[str, list[str]]]:
    """(file name, alert titles) of each mail the sink kept, oldest first."""
    out = []
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        body = ""
        for part in msg.walk() if msg.is_multipart() else [msg]:
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    body = payload.decode(errors="replace")
        subject = str(email.header.make_header(email.header.decode_header(msg["Subject"] or "")))
        out.append((path.name, alert_titles(subject, body)))
    return out


def spooled(spool: Path) -> list[str]:
    """Titles of the alerts a channel's spool and inbox (``pending/``) keep, each once: an
    inbox file a spooled message covers is told by that message."""
    titles: list[str] = []
    covered: set[str] = set()
    for path in sorted(spool.glob("*.json")) if spool.exists() else []:
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(path.read_text())
            titles += alert_titles(str(doc["title"]), str(doc["body"]))
            covered.update(str(name) for name in doc.get("covers", ()))
    inbox = spool / "pending"
    for path in sorted(inbox.glob("*.json")) if inbox.exists() else []:
        if path.name in covered:
            continue
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(path.read_text())
            titles += alert_titles(str(doc["title"]), str(doc["body"]))
    return titles


def queued(rig: Rig, pid: str) -> list[str]:
    """Titles of the alerts one daemon process queued (its debug line per alert)."""
    entries = rig.journal(f"_SYSTEMD_UNIT={DAEMON_UNIT}", f"_PID={pid}")
    return [
        str(e.get("TITLE", ""))
        for e in entries
        if str(e.get("MESSAGE", "")).startswith("alert queued ")
        and "mail" in str(e.get("CHANNELS", ""))
    ]


def trial_smtp(rig: Rig, rnd: random.Random, trial: Trial) -> None:
    lab = rig.lab
    mail_dir = rig.root / "mail"
    lab.install_unit(
        "smtp-sink.service",
        f"[Service]\nExecStart={sys.executable} {ASSETS / 'smtp_sink.py'} {SMTP_PORT} {mail_dir}\n",
        reload=False,
    )
    for port, unit in enumerate(SMTP_UNITS, start=8731):
        lab.install_unit(unit, web_unit(port), reload=False)
    lab.daemon_reload()
    lab.run("systemctl", "start", "smtp-sink.service", *SMTP_UNITS)
    rig.start_daemon(SMTP_MAIN, {f"{u}.yaml": SMTP_POLICY.format(unit=u) for u in SMTP_UNITS})
    pid1 = rig.daemon_pid()
    # The start-up alert reaches the sink before the outage: a clean line.
    if not wait_until(lambda: received(mail_dir), timeout=30, interval=0.2):
        raise TrialError("the daemon's start-up alert never reached the sink")
    time.sleep(0.5)
    before = Counter(t for _, ts in received(mail_dir) for t in ts)
    lab.run("systemctl", "stop", "smtp-sink.service")
    burst = rnd.sample(SMTP_UNITS, k=rnd.randint(2, len(SMTP_UNITS)))
    for unit in burst:
        lab.run("systemctl", "kill", "-s", "KILL", unit)
        time.sleep(rnd.uniform(0.0, 0.8))
    kill_after = rnd.uniform(0.5, 8.0)
    trial.variant = f"{len(burst)} units, kill +{kill_after:.1f}s"
    time.sleep(kill_after)
    old = rig.kill_daemon()
    spool_dir = rig.state / "alerts" / "mail"
    at_kill = Counter(spooled(spool_dir))
    rig.evidence["spool-at-kill"] = "\n\n".join(
        f"==> {p.relative_to(spool_dir)}\n{p.read_text(errors='replace')}"
        for p in sorted(spool_dir.rglob("*"))
        if p.is_file()
    )
    rig.wait_daemon_back(old)
    pid2 = rig.daemon_pid()
    time.sleep(rnd.uniform(0.0, 3.0))
    lab.run("systemctl", "start", "smtp-sink.service")
    # Drained: the spool is empty and nothing new arrives for a while.
    for unit in SMTP_UNITS:
        wait_until(functools.partial(rig.active, unit), timeout=20)

    def quiet() -> bool:
        n = len(list(mail_dir.glob("*.eml")))
        time.sleep(4.0)
        return not spooled(spool_dir) and len(list(mail_dir.glob("*.eml"))) == n

    if not wait_until(quiet, timeout=120, interval=0.5):
        trial.notes.append("the spool did not drain within 120s")
    q1 = Counter(queued(rig, old))
    q2 = Counter(queued(rig, pid2))
    got = Counter(t for _, ts in received(mail_dir) for t in ts) - before
    expected = at_kill + q2
    lost = expected - got
    dup = got - expected
    # Queued by the killed daemon, not received before the kill and not on disk at it:
    # nothing is left to deliver them (the inbox and spool are all there is).
    unspooled = q1 - before - at_kill
    truncated = [n for n, text in mail_texts(mail_dir) if "more lines)" in text]
    trial.count(
        "alerts_lost",
        sum(lost.values()),
        f"not received: {sorted(lost.elements())}"
        + (f" (digests with lines cut: {truncated})" if truncated else ""),
    )
    trial.count(
        "alerts_lost",
        sum(unspooled.values()),
        f"queued, neither sent nor on disk at the kill: {sorted(unspooled.elements())}",
    )
    trial.count(
        "alerts_duplicated", sum(dup.values()), f"received too often: {sorted(dup.elements())}"
    )
    trial.notes.append(
        f"daemon {pid1}: queued {sum(q1.values())}, spooled at kill {sum(at_kill.values())};"
        f" daemon {pid2}: queued {sum(q2.values())}; received after outage {sum(got.values())}"
    )
    trial.count("watchdog_misses", rig.watchdog_misses(), "systemd: Watchdog timeout")
    for unit in burst:
        if not rig.active(unit):
            trial.count("wrong_end", 1, f"{unit} not active at the end")


RUNNERS: dict[str, Callable[[Rig, random.Random, Trial], None]] = {
    "kill": trial_kill,
    "reexec": trial_reexec,
    "store": trial_store,
    "smtp": trial_smtp,
}


# -- running trials ---------------------------------------------------------------------


def run_trial(
    kind: str,
    number: int,
    seed: int,
    log_dir: Path | None = None,
    plan: dict[str, float] | None = None,
) -> Trial:
    """One trial of `kind` in a fresh lab; never raises (a harness failure is `error`).

    `plan` fixes some of the trial's random choices (kill: `fail`, `kill_at`)."""
    trial = Trial(kind, number, seed, plan=dict(plan or {}))
    rnd = random.Random(seed)
    started = time.monotonic()
    lab = Lab()
    try:
        lab.boot()
        rig = Rig(lab, log_dir)
        try:
            RUNNERS[kind](rig, rnd, trial)
        except (TrialError, AssertionError, OSError, sqlite3.Error, Exception) as exc:
            trial.error = f"{type(exc).__name__}: {exc}"
            if log_dir is not None:
                trial.notes.append(traceback.format_exc(limit=4))
        if trial.error or any(trial.figures[f] for f in FIGURES):
            rig.save_logs(trial)
    except Exception as exc:  # the lab itself
        trial.error = f"lab: {type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            lab.poweroff()
    trial.seconds = time.monotonic() - started
    return trial


def trial_seeds(seed: int, kinds: Sequence[str], trials: int) -> Iterator[tuple[str, int, int]]:
    """(kind, number, seed) of every trial: each trial's seed derives from the run's."""
    master = random.Random(seed)
    per_kind = {kind: master.randrange(2**32) for kind in KINDS}
    for kind in kinds:
        sub = random.Random(per_kind[kind])
        for number in range(1, trials + 1):
            yield kind, number, sub.randrange(2**32)


def summarise(results: Sequence[Trial]) -> list[tuple[str, ...]]:
    rows = []
    for kind in dict.fromkeys(t.kind for t in results):
        mine = [t for t in results if t.kind == kind]
        ran = [t for t in mine if t.error is None]
        totals = Counter[str]()
        for t in ran:
            totals.update(t.figures)
        per = sum(t.seconds for t in mine) / len(mine)
        rows.append(
            (
                kind,
                str(len(ran)),
                *(str(totals[f]) for f in (*FIGURES, *INFO)),
                str(len(mine) - len(ran)),
                f"{per:.1f}",
            )
        )
    return rows


HEADER = (
    "kind",
    "trials",
    "repeated",
    "skipped",
    "false repairs",
    "alerts lost",
    "alerts dup",
    "watchdog misses",
    "wrong end",
    "late repairs*",
    "harness failures",
    "s/trial",
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=20, help="trials per kind (default 20)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated: {','.join(KINDS)}"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="replay a run (printed at its start)"
    )
    parser.add_argument(
        "--daemon-src", type=Path, default=None, help="run the daemon from this tree"
    )
    parser.add_argument("--daemon-rev", default=None, help="run the daemon of this commit")
    parser.add_argument(
        "--plan", default="", help="fix choices instead of drawing them, e.g. fail=3,kill_at=9.5"
    )
    parser.add_argument(
        "--only", type=int, default=None, help="run only trial number N of each kind"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=Path(".cache/faults"), help="logs of trials with findings"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every trial's result here"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every trial's notes")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.replace(" ", ",").split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in KINDS]:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if reason := lab_unavailable_reason():
        print(f"faults: {reason}", file=sys.stderr)
        return 1
    plan = {k: float(v) for k, _, v in (p.partition("=") for p in args.plan.split(",") if p)}
    src = daemon_source(args.daemon_src, args.daemon_rev)
    print(f"faults: daemon under test: {describe(src)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    what = f"{args.trials} trials of {', '.join(kinds)}"
    print(f"faults: seed {seed} (replay with --seed {seed}); {what}")
    sys.stdout.flush()
    results: list[Trial] = []
    signal.signal(signal.SIGTERM, _interrupt)  # so that a stopped run powers its lab off
    try:
        for kind, number, trial_seed in trial_seeds(seed, kinds, args.trials):
            if args.only is not None and number != args.only:
                continue
            trial = run_trial(kind, number, trial_seed, args.log_dir, plan)
            results.append(trial)
            found = {f: n for f, n in trial.figures.items() if n}
            line = f"  {kind} #{number} ({trial.seconds:.1f}s) {trial.variant}: "
            line += f"HARNESS FAILED: {trial.error}" if trial.error else str(found or "ok")
            print(line)
            if args.verbose or found or trial.error:
                for note in trial.notes:
                    print(f"      {note}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("faults: interrupted; the table covers the trials done", file=sys.stderr)
    if not results:
        print("faults: no trial selected", file=sys.stderr)
        return 1
    print()
    print_table(HEADER, summarise(results))
    print(
        "* not a target: late repairs = store trials whose repair waited for the lock or"
        " the full disk to go"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [{**t.__dict__, "figures": dict(t.figures)} for t in results],
                indent=1,
            )
        )
    if all(t.error is not None for t in results):
        print("faults: no trial could run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
