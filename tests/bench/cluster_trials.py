"""Cross-host failover under faults: randomised trials against three lab hosts.

Each trial makes one fault on the host that holds the clustered unit (the witness
client): a partition, the host powered off, its daemon SIGSTOPped, etcd's leader
killed, or the unit crashed until its ladder gives up. It prints, over all trials:
overlaps (two hosts' units running at once: must be 0), stale writes the witness
accepted (must be 0) and rejected, and takeover time p50/p99 per kind.

    tests/bench/run cluster [--trials N] [--kinds partition,kill-host,...] [--seed S]

A killed host is gone for the rest of its cluster's life: the cluster is booted again
after each kill-host trial.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from supervisor.testing.lab import lab_unavailable_reason
from tests.bench.figures import print_table
from tests.cluster.rig import KINDS, TTL, Outcome, Rig

#: Kinds after which the unit must be on another host.
MOVES = {"partition", "kill-host", "sigstop", "exhausted"}


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summarise(results: Sequence[Outcome], errors: dict[str, int]) -> list[tuple[str, ...]]:
    rows = []
    for kind in KINDS:
        mine = [r for r in results if r.kind == kind]
        if not mine and not errors.get(kind):
            continue
        takeovers = [r.takeover_s for r in mine if r.takeover_s is not None]
        gaps = [r.gap_s for r in mine if r.gap_s is not None]
        if kind in MOVES:
            unmoved = sum(1 for r in mine if r.new is None)
        else:
            unmoved = sum(1 for r in mine if r.new is not None)  # here: moved at all
        rows.append(
            (
                kind,
                str(len(mine)),
                str(sum(r.overlaps for r in mine)),
                str(sum(r.stale_accepted for r in mine)),
                str(sum(r.stale_rejected for r in mine)),
                fmt(quantile(takeovers, 0.5)),
                fmt(quantile(takeovers, 0.99)),
                fmt(max(takeovers, default=None)),
                fmt(quantile(gaps, 0.5)),
                str(unmoved),
                str(errors.get(kind, 0)),
            )
        )
    return rows


HEADER = (
    "kind",
    "trials",
    "overlaps",
    "stale accepted",
    "stale rejected",
    "takeover p50 s",
    "p99 s",
    "max s",
    "gap p50 s",
    "wrong end*",
    "harness errors",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5, help="trials per kind (default 5)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="every trial's outcome here")
    parser.add_argument("--keep-logs", type=Path, default=None, help="the clients' logs here")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := [k for k in kinds if k not in KINDS]:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if reason := lab_unavailable_reason():
        print(f"cluster: {reason}", file=sys.stderr)
        return 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"cluster: seed {seed}; {args.trials} trials of {', '.join(kinds)}; ttl {TTL}s")
    rnd = random.Random(seed)
    plan = [k for k in kinds for _ in range(args.trials)]
    rnd.shuffle(plan)
    plan.sort(key=lambda k: k == "kill-host")  # each kill ends a cluster: do them last...
    results: list[Outcome] = []
    errors: dict[str, int] = {}
    rig: Rig | None = None
    try:
        for number, kind in enumerate(plan, 1):
            started = time.monotonic()
            try:
                if rig is None:
                    rig = Rig(args.keep_logs / f"cluster-{number}" if args.keep_logs else None)
                    rig.boot()
                if kind == "kill-host":
                    rig.move_off_witness()
                outcome = rig.trial(kind, rnd)
            except Exception as exc:
                errors[kind] = errors.get(kind, 0) + 1
                print(f"  #{number} {kind}: HARNESS FAILED: {exc}")
                traceback.print_exc(limit=3)
                if rig is not None:
                    if args.keep_logs is not None:
                        rig.dump(args.keep_logs / "failed", f"{number}-{kind}")
                    rig.poweroff()
                rig = None
                continue
            results.append(outcome)
            took = time.monotonic() - started
            wrong = outcome.overlaps or outcome.stale_accepted
            if wrong and args.keep_logs is not None:
                rig.dump(args.keep_logs / "failed", f"{number}-{kind}")
            print(
                f"  #{number} {kind} ({took:.0f}s): {outcome.old}#{outcome.old_token} -> "
                f"{outcome.new}#{outcome.new_token} takeover {fmt(outcome.takeover_s)}s "
                f"gap {fmt(outcome.gap_s)}s overlaps {outcome.overlaps} "
                f"stale accepted/rejected {outcome.stale_accepted}/{outcome.stale_rejected}"
                + (f" [{'; '.join(outcome.notes)}]" if outcome.notes else "")
            )
            sys.stdout.flush()
            if kind == "kill-host":  # ...and boot a fresh one for the next
                rig.poweroff()
                rig = None
    except KeyboardInterrupt:
        print("cluster: interrupted; the table covers the trials done", file=sys.stderr)
    finally:
        if rig is not None:
            rig.poweroff()
    print()
    print_table(HEADER, summarise(results, errors))
    print(
        "* wrong end: for kinds that must move the unit, trials where no other host took "
        "it; for etcd-leader, trials where it moved (not a fault: etcd had no leader for "
        "longer than the fence allows, so the holder stopped the unit). Takeover: from "
        "the fault (for exhausted: from the old holder's release of the key) to the new "
        "holder's first write; gap: "
        "from the old holder's last write to the new holder's first."
    )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if results:
        p = statistics.mean(r.overlaps for r in results)
        print(f"cluster: {len(results)} trials, mean overlaps {p:.2f}")
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
