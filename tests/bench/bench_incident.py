"""Benchmark: one incident, one message (issue 15, item 2), in a lab.

A root unit and 50 units that depend on it (Requires= or BindsTo=, and After=), each
with a policy, as in tests/integration/test_incident_lab.py; the root is killed
`--kills` times. Per kill: seconds to all 51 units active, seconds to the recovery
message, messages per channel (target: at most 2), the symptoms the problem message
counts, and dependents the daemon restarted before the root was back (target: 0).

Run: tests/bench/run incident  (or: .venv/bin/python -m tests.bench.bench_incident --kills 5)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.bench.figures import percentiles, print_table
from tests.integration.test_alerts_lab import hooks, mails
from tests.integration.test_incident_lab import DEPENDENTS, MAIN, ROOT, all_active, install
from tests.lab_units import daemon_log

# A problem alerted within repeat_interval is not alerted again (dedup): with 20 s and a
# kill every 25 s or so, each kill is news.
BENCH_MAIN = MAIN.replace("alerts:\n", "alerts:\n  repeat_interval: 20s\n", 1)
# Attempts are forgotten 5 s after a recovery, so that each kill starts a fresh ladder.
POLICY = """\
unit: {unit}
recovery: {{ladder: [restart], cooldown: 1s, settle: 1s, reset_after: 5s}}
alerts: [mail, hook]
"""


def early_restarts(lab: Lab, cursor: int) -> int:
    """Dependents the daemon restarted before the root's restart finished."""
    log = daemon_log(lab)[cursor:]
    back = min(
        (
            int(e["__MONOTONIC_TIMESTAMP"])
            for e in log
            if e.get("UNIT") == ROOT and str(e.get("MESSAGE")).startswith("restart finished")
        ),
        default=0,
    )
    return sum(
        1
        for e in log
        if e.get("UNIT") in DEPENDENTS
        and str(e.get("MESSAGE")).startswith("restarting unit")
        and int(e["__MONOTONIC_TIMESTAMP"]) < back
    )


def one_kill(lab: Lab, base: Path) -> list[str]:
    before = {"mail": len(mails(base)), "hook": len(hooks(base))}
    cursor = len(daemon_log(lab))
    start = time.monotonic()
    lab.run("systemctl", "kill", "-s", "KILL", ROOT)
    try:
        lab.wait_for(lambda: all_active(lab), timeout=60, what="all 51 units active")
    except AssertionError:
        out = lab.run("systemctl", "list-units", "--all", "--no-legend", "incident-*").stdout
        print("\n".join(line for line in out.splitlines() if " running " not in line))
        for entry in daemon_log(lab)[cursor:]:
            print(entry.get("UNIT", ""), entry.get("MESSAGE", ""))
        raise
    active = time.monotonic() - start
    lab.wait_for(
        lambda: any(f"{ROOT} recovered" in m for m in hooks(base)[before["hook"] :]),
        timeout=120,
        what="the recovery message",
    )
    message = time.monotonic() - start
    time.sleep(4)  # group_wait: late messages would have come by now
    new = {"mail": mails(base)[before["mail"] :], "hook": hooks(base)[before["hook"] :]}
    first = new["hook"][0] if new["hook"] else ""
    found = re.search(r"(\d+) dependents? failed (?:or stopped )?with it", first)
    time.sleep(12)  # reset_after and repeat_interval: the next kill is a fresh episode
    return [
        f"{active:.2f}",
        f"{message:.2f}",
        str(len(new["mail"])),
        str(len(new["hook"])),
        found.group(1) if found else "0",
        str(early_restarts(lab, cursor)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"bench_incident: {reason}", file=sys.stderr)
        return 1
    with Lab() as lab:
        lab.boot()
        root = lab.shared_dir
        install(lab, root, POLICY, BENCH_MAIN)
        lab.wait_for(lambda: all_active(lab), timeout=60, what="every unit active")
        time.sleep(5)  # the daemon's start: observing, its own "started" message
        rows = []
        for n in range(args.kills):
            rows.append([str(n + 1), *one_kill(lab, root)])
            print(" ".join(rows[-1]), flush=True)
    header = ["kill", "all active s", "recovery msg s", "mails", "hooks", "symptoms", "early"]
    print_table(header, rows)
    active = [float(row[1]) for row in rows]
    print("kill to all active (s): p50 {} p95 {} p99 {} max {}".format(*percentiles(active)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
