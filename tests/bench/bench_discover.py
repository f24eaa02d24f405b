"""Benchmark: from nothing to every enabled service watched, with no hand-written line.

In a lab (which shares this host's unit files: a stock Debian with the services
tests/setup-env installs), each run starts from an empty config directory and times
`discover`, `validate`, the daemon's start (systemctl start, Type=notify) and the
moment `status` lists every service systemctl calls enabled. Issue 14's target is
under a minute.

Run: tests/bench/run discover  (or: .venv/bin/python -m tests.bench.bench_discover --runs 3)
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import print_table
from tests.lab_units import DAEMON_UNIT, SOCKET, daemon_cli, install_daemon


def enabled_services(lab: Lab) -> set[str]:
    out = lab.run(
        "systemctl", "list-unit-files", "--no-legend", "--state=enabled,enabled-runtime",
        "*.service",
    ).stdout  # fmt: skip
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if "@" not in n and n != DAEMON_UNIT}


def watched(lab: Lab) -> set[str]:
    out = lab.run(*daemon_cli(), "status", "--socket", SOCKET, "--json", check=False).stdout
    try:
        return {str(row["unit"]) for row in json.loads(out)["units"]}
    except (ValueError, KeyError):
        return set()


def one_run(lab: Lab, root: Path) -> list[float]:
    """Seconds for discover, validate, the daemon's start, and until all are watched."""
    shutil.rmtree(root, ignore_errors=True)
    config = root / "etc"
    config.mkdir(parents=True)
    expected = enabled_services(lab)
    marks = [time.monotonic()]
    lab.run(*daemon_cli(), "discover", "--config", str(config), timeout=120)
    marks.append(time.monotonic())
    lab.run(*daemon_cli(), "validate", "--config", str(config), timeout=120)
    marks.append(time.monotonic())
    install_daemon(lab, config, root / "state")
    marks.append(time.monotonic())
    lab.wait_for(lambda: expected <= watched(lab), timeout=120, what="every service watched")
    marks.append(time.monotonic())
    lab.run("systemctl", "stop", DAEMON_UNIT, timeout=60)
    return [b - a for a, b in itertools.pairwise(marks)] + [marks[-1] - marks[0]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"bench_discover: {reason}", file=sys.stderr)
        return 1
    with Lab() as lab:
        lab.boot()
        units = len(enabled_services(lab))
        rows = []
        for n in range(args.runs):
            times = one_run(lab, lab.shared_dir / f"run{n}")
            rows.append([str(n + 1), *(f"{t:.2f}" for t in times)])
    print(f"{units} enabled services (seconds)")
    print_table(["run", "discover", "validate", "daemon start", "all watched", "total"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
