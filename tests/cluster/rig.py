"""Cross-host failover end to end: three lab hosts, etcd on each, host-supervisor on
each with one clustered unit (the witness client), the witness on the third host, and
the faults of the trials (`tests/bench/cluster_trials.py`, `test_cluster_failover_lab.py`).

What ran where and when is read from the clients' own logs (``TIME TOKEN`` per write,
on the machine's one clock, kept outside the labs so a killed host's log survives),
not from the witness alone: a partitioned host's writes never reach the witness, but
its unit still runs, and that is what an overlap is about.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.testing.cluster_lab import ClusterLab
from supervisor.testing.lab import LabError
from tests.cluster.units import CLIENT_UNIT, WitnessHandle, client_unit
from tests.lab_units import DAEMON_UNIT, SOCKET, cli, daemon_cli, install_daemon, write_config

HOSTS = ("host-a", "host-b", "host-c")
WITNESS_HOST = "host-c"
TTL = 5
PERIOD = 0.05
OVERLAP_SLACK = 0.02
"""Two hosts' writes closer than one period less this are an overlap (the clients write
every 50 ms; a write is the unit's proof of life at that instant)."""
KINDS = ("partition", "kill-host", "sigstop", "etcd-leader", "exhausted")


def main_config(host: str, endpoints: list[str]) -> str:
    return (
        "cluster:\n"
        f"  endpoints: [{', '.join(endpoints)}]\n"
        f"  host: {host}\n"
        "  timeout: 1s\n"
        "guard:\n  repair_budget: {max: 1000, window: 15m}\n"
        "  breaker: {failures: 1000, open_for: 1m}\n"
    )


POLICY = f"""\
unit: {CLIENT_UNIT}
cluster:
  hosts: [{", ".join(HOSTS)}]
  ttl: {TTL}s
  hold_off: 5s
recovery: {{ladder: [restart], max_attempts: 1, cooldown: 1s, settle: 1s}}
"""


@dataclass
class Outcome:
    kind: str
    fault_at: float
    old: str
    old_token: int
    new: str | None = None
    new_token: int = 0
    takeover_s: float | None = None
    """From the fault (for `exhausted`: from the old holder's release of the key) to the
    new holder's first write."""
    gap_s: float | None = None
    """From the old holder's last write to the new holder's first."""
    overlaps: int = 0
    stale_accepted: int = 0
    stale_rejected: int = 0
    notes: list[str] = field(default_factory=list)


class Rig:
    """Three hosts running the clustered witness client under host-supervisor."""

    def __init__(self, keep_logs: Path | None = None) -> None:
        self.logs = Path(tempfile.mkdtemp(prefix="hs-cluster-", dir="/var/tmp"))
        self.keep_logs = keep_logs
        self.cluster = ClusterLab(HOSTS, keep=[self.logs])
        self.witness: WitnessHandle | None = None
        self.dead: set[str] = set()

    def boot(self) -> Rig:
        cluster = self.cluster.boot()
        cluster.start_etcd()
        self.witness = WitnessHandle(cluster, WITNESS_HOST).start()
        endpoints = cluster.endpoints()
        for host in HOSTS:
            lab = cluster.lab(host)
            (self.logs / f"{host}.gate").write_text("")
            unit = client_unit(
                self.witness.url,
                host=host,
                log=str(self.logs / f"{host}.log"),
                extra=f"ExecStartPre=/usr/bin/test -e {self.logs / f'{host}.gate'}\n",
            )
            lab.install_unit(CLIENT_UNIT, unit)
            root = Path(lab.shared_dir)
            write_config(root / "etc", {"work.yaml": POLICY}, main=main_config(host, endpoints))
            install_daemon(lab, root / "etc", root / "state", watchdog="30s")
        self.wait(lambda: self.holder() is not None, 60, "a first holder writing")
        return self

    def poweroff(self) -> None:
        try:
            self.cluster.poweroff()
        finally:
            if self.keep_logs is not None:
                self.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in self.logs.glob("*.log"):
                    (self.keep_logs / log.name).write_bytes(log.read_bytes())
            for path in self.logs.iterdir():
                path.unlink()
            self.logs.rmdir()

    # -- what ran ------------------------------------------------------------------------

    def writes(self, host: str) -> list[tuple[float, int]]:
        try:
            text = (self.logs / f"{host}.log").read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                at, token = line.split()
                out.append((float(at), int(token)))
        return out

    def holder(self, fresh: float = 0.4) -> tuple[str, int] | None:
        """The one host writing now (its token), None if none or several are."""
        now = time.time()
        writing = [
            (host, w[-1][1])
            for host in HOSTS
            if host not in self.dead and (w := self.writes(host)) and now - w[-1][0] < fresh
        ]
        return writing[0] if len(writing) == 1 else None

    def overlaps(self, since: float) -> list[str]:
        """Each pair of hosts' writes closer than a period, since `since`."""
        stamps = sorted((at, host) for host in HOSTS for at, _ in self.writes(host) if at >= since)
        found = []
        last: dict[str, float] = {}
        for at, host in stamps:
            for other, then in last.items():
                if other != host and at - then < PERIOD - OVERLAP_SLACK:
                    found.append(f"{other}@{then:.3f} and {host}@{at:.3f}")
            last[host] = at
        return found

    # -- faults --------------------------------------------------------------------------

    def daemon_status(self, host: str) -> dict[str, Any]:
        lab = self.cluster.lab(host)
        out = cli(lab, "status", CLIENT_UNIT, "--json", "--socket", SOCKET)
        row: dict[str, Any] = json.loads(out)["units"][0]
        return row

    def history(self, host: str) -> list[dict[str, Any]]:
        lab = self.cluster.lab(host)
        out = lab.run(*daemon_cli(), "history", CLIENT_UNIT, "--json", "--socket", SOCKET)
        entries: list[dict[str, Any]] = json.loads(out.stdout)["entries"]
        return entries

    def move_off_witness(self) -> None:
        """The witness's host must not be powered off: hand the unit to host-a first
        (`failover --to-host`, an operator's handover)."""
        current = self.holder()
        if current is None or current[0] != WITNESS_HOST:
            return
        lab = self.cluster.lab(WITNESS_HOST)
        lab.run(*daemon_cli(), "failover", CLIENT_UNIT, "--to-host", "host-a", "--socket", SOCKET)
        self.wait(lambda: (h := self.holder()) is not None and h[0] == "host-a", 30, "the handover")

    def dump(self, directory: Path, label: str) -> None:
        """Each live host's journal (daemon, unit, keeper, etcd) into `directory`, for a
        trial that went wrong."""
        directory.mkdir(parents=True, exist_ok=True)
        for host in HOSTS:
            if host in self.dead:
                continue
            with contextlib.suppress(Exception):
                out = self.cluster.run(
                    host,
                    "journalctl",
                    "--no-pager",
                    "-o",
                    "short-precise",
                    check=False,
                    timeout=60,
                ).stdout
                (directory / f"{label}-{host}.journal").write_text(out)
        for log in self.logs.glob("*.log"):
            (directory / f"{label}-{log.name}").write_bytes(log.read_bytes())

    def _sigcont(self, host: str) -> None:
        """Continue the daemon, unless its watchdog (WatchdogSec=) had systemd kill it
        meanwhile and start a new one: then there is nothing stopped to continue."""
        with contextlib.suppress(LabError):
            self.cluster.sigcont(host, DAEMON_UNIT)

    def released_at(self, host: str, since: float) -> float | None:
        """When `host` freed the key of its own accord (its history's "released" line)."""
        times = [
            float(e["time"])
            for e in self.history(host)
            if str(e["message"]).startswith("released ") and float(e["time"]) >= since
        ]
        return max(times, default=None)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout:g}s: {what}")
            time.sleep(0.05)

    def trial(self, kind: str, rnd: random.Random) -> Outcome:
        """One fault against the holder; waits for the new holder (or, for a fault that
        must not move the unit, for things to settle) and undoes the fault."""
        current = self.holder()
        if current is None:
            self.wait(lambda: self.holder() is not None, 30, "one holder before the trial")
            current = self.holder()
        assert current is not None
        old, token = current
        assert self.witness is not None
        self.witness.reset()
        fault_at = time.time()
        outcome = Outcome(kind, fault_at, old, token)
        undo: Callable[[], object] = lambda: None  # noqa: E731
        hold = rnd.uniform(8.0, 12.0)
        if kind in ("partition", "kill-host"):
            with contextlib.suppress(LabError):  # the figures are split by it
                leader = self.cluster.etcd_leader()
                outcome.notes.append(f"etcd leader {'on the holder' if leader == old else leader}")
        match kind:
            case "partition":
                self.cluster.partition(old)
                undo = lambda: self.cluster.heal(old)  # noqa: E731
            case "kill-host":
                assert old != WITNESS_HOST, "move_off_witness() first"
                self.cluster.kill_host(old)
                self.dead.add(old)
            case "sigstop":
                self.cluster.sigstop(old, DAEMON_UNIT)
                undo = lambda: self._sigcont(old)  # noqa: E731
            case "etcd-leader":
                killed = self.cluster.kill_etcd_leader()
                outcome.notes.append(f"etcd leader {killed} killed")
            case "exhausted":
                (self.logs / f"{old}.gate").unlink()
                self.cluster.lab(old).run("systemctl", "kill", "-s", "KILL", CLIENT_UNIT)
                undo = lambda: (self.logs / f"{old}.gate").write_text("")  # noqa: E731
        try:
            if kind == "etcd-leader":
                time.sleep(hold)
            else:
                self._await_takeover(outcome, timeout=40.0)
                time.sleep(max(0.0, fault_at + hold - time.time()))
        finally:
            undo()
        self.wait(lambda: self.holder() is not None, 40, "one holder after the trial")
        time.sleep(1.0)  # the old holder, healed or continued, settles as a standby
        self._judge(outcome)
        return outcome

    def _await_takeover(self, outcome: Outcome, timeout: float) -> None:
        def moved() -> bool:
            for host in HOSTS:
                if host == outcome.old or host in self.dead:
                    continue
                fresh = [w for w in self.writes(host) if w[0] >= outcome.fault_at]
                if fresh and fresh[-1][1] > outcome.old_token:
                    return True
            return False

        with contextlib.suppress(TimeoutError):
            self.wait(moved, timeout, "a takeover")

    def _judge(self, outcome: Outcome) -> None:
        since = outcome.fault_at - 1.0
        old_writes = [at for at, t in self.writes(outcome.old) if t == outcome.old_token]
        last_old = max((at for at in old_writes if at >= since), default=None)
        firsts = [
            (min(at for at, t in w if t > outcome.old_token and at >= since), host, token)
            for host in HOSTS
            if host != outcome.old
            and (w := self.writes(host))
            and any(t > outcome.old_token and at >= since for at, t in w)
            for token in [max(t for _, t in w)]
        ]
        if firsts:
            first, host, token = min(firsts)
            outcome.new, outcome.new_token = host, token
            start = outcome.fault_at
            if outcome.kind == "exhausted":
                start = self.released_at(outcome.old, since) or outcome.fault_at
            outcome.takeover_s = round(first - start, 3)
            if last_old is not None:
                outcome.gap_s = round(first - last_old, 3)
        found = self.overlaps(since)
        outcome.overlaps = len(found)
        outcome.notes += found[:3]
        assert self.witness is not None
        report = self.witness.report()
        outcome.stale_accepted = sum(int(s["count"]) for s in report["same_token_two_hosts"])
        outcome.stale_rejected = int(report["rejected_stale"])
