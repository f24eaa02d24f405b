"""Benchmark: change-aware rollback of Debian's nginx in the lab, N times.

Each round applies a broken config (a syntax error), waits until the daemon has seen
the change, and restarts nginx, whose start fails (`nginx -t` in ExecStartPre); the
daemon restores the last proven config, validates it with `nginx -t` and starts nginx.
Measured on the kernel's monotonic clock: from systemd's "Failed with result" journal
line of the failed start to the restored nginx starting (the unit's InactiveExit), which
excludes nginx's own start time (InactiveExit to ActiveEnter, shown apart). The issue's
target: p99 <= 5 s.

Run: tests/bench/run rollback  (or: .venv/bin/python -m tests.bench.bench_rollback --rounds 10)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import percentiles, print_table
from tests.lab_units import SOCKET, install_daemon, write_config
from tests.rollback_lab import (
    UNIT,
    break_and_restart,
    failures_us,
    good_site,
    history,
    nginx_unit,
    policy,
    rollback_figure_ms,
    wait_for_proven_snapshot,
    write_tree,
)

PORT = 8431
MAX_ROUNDS = 200
# Rounds fail and heal every few seconds on purpose: lift the budget and flap detection.
BENCH_GUARD = """\
guard:
  repair_budget: {max: 1000, window: 15m}
  breaker: {failures: 1000, open_for: 1m}
  flapping: {window: 1s, high: 50%, low: 25%}
"""


def restores_done(lab: Lab) -> int:
    return len([m for m in history(lab, SOCKET, ("result",)) if "restore done" in m])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, MAX_ROUNDS))
    if reason := lab_unavailable_reason():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    if not Path("/usr/sbin/nginx").exists():
        print("bench: nginx is not installed (tests/setup-env installs it)", file=sys.stderr)
        return 1
    with Lab() as lab:
        lab.boot()
        root = Path(lab.shared_dir)
        tree = write_tree(root, PORT)
        lab.install_unit(UNIT, nginx_unit(tree))
        lab.run("systemctl", "start", UNIT)
        write_config(root / "etc", {"nginx.yaml": policy(tree, max_attempts=1000)}, BENCH_GUARD)
        install_daemon(lab, root / "etc", root / "state")
        lab.run("systemctl", "restart", UNIT)  # seen by the daemon: the snapshot is proven
        wait_for_proven_snapshot(lab, SOCKET)
        rollback_ms: list[float] = []
        start_ms: list[float] = []
        for n in range(rounds):
            done = restores_done(lab)
            failures = len(failures_us(lab))
            break_and_restart(lab, tree, PORT, SOCKET)
            lab.wait_for(
                lambda: restores_done(lab) > done,  # noqa: B023 - called in this round
                timeout=30,
                interval=0.1,
                what=f"round {n + 1}: the rollback",
            )
            assert tree.site.read_text() == good_site(PORT), "not the proven config"
            assert lab.show(UNIT, "ActiveState")["ActiveState"] == "active"
            figure, own_start = rollback_figure_ms(lab, failures)
            rollback_ms.append(figure)
            start_ms.append(own_start)
            time.sleep(2.5)  # past reset_after: each round is a fresh episode
        actions = history(lab, SOCKET, ("action",))
        restarts_first = [a for a in actions if "restore" not in a]
    rows = [
        ("first failure -> restored nginx starting", *percentiles(rollback_ms)),
        ("nginx's own start (excluded)", *percentiles(start_ms)),
    ]
    print(f"\n{rounds} rollbacks of {UNIT} (broken config -> last proven config), in the lab")
    print_table(("measure (ms)", "p50", "p95", "p99", "max"), rows)
    print(f"repairs other than restore: {len(restarts_first)}; target p99 <= 5000 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
