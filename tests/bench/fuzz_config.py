"""Fuzz: throw generated and mutated policy and main-config files at the loader.

Each file is a shipped example (or another valid seed) with 1 to 6 random mutations
(hostile scalars, YAML tags, junk and invalid UTF-8 bytes, deletions, deep nesting,
renamed keys, truncation), a document generated from hostile Python values, or
random bytes (see tests/config_fuzz.py). Each is written alone into a config
directory under .cache/fuzz/ and loaded with load_config.

Prints files tried, crashes (an exception escaping the loader: the first few inputs
are saved under .cache/fuzz/crashes/ with a one-line summary each), hangs (a file
taking over 2 s), wrongly accepted files (accepted holding NaN, an infinity, a NUL
or a number outside its bounds), errors not at a FILE:LINE:COL of the file, and
internal errors (an exception the loader's last resort turned into an error: not a
crash, but a bug). The target is 0 of each.

Run: tests/bench/run fuzz   (or: python -m tests.bench.fuzz_config --files 20000)
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.config_fuzz import HOSTILE, OP_KINDS, Verdict, generate, load_one, mutate, seeds

ROOT = Path(__file__).parents[2]
HANG = 2.0
"""Seconds after which one file counts as a hang."""
ABORT = 10.0
"""Seconds after which one file's load is interrupted (it is a hang, and we go on)."""
SAVED = 5
"""Crashing, hanging or wrongly accepted inputs saved, of each kind."""


class _Stuck(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise _Stuck


def document(rng: random.Random, seed_files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < 0.75:
        name, text = rng.choice(seed_files)
        ops = [
            (rng.randrange(OP_KINDS), rng.randrange(100_000), rng.randrange(len(HOSTILE) * 3))
            for _ in range(rng.randint(1, 6))
        ]
        return name, mutate(text, ops)
    if roll < 0.95:
        return generate(
            [(rng.randrange(100), rng.randrange(100)) for _ in range(rng.randint(0, 6))]
        )
    name = rng.choice(["host-supervisor.yaml", "policy.yaml"])
    return name, rng.randbytes(rng.randint(0, 300))


def _save(kind: str, index: int, name: str, text: bytes, summary: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{kind}-{index}-{name}"
    path.write_bytes(text)
    (out / f"{kind}-{index}.txt").write_text(summary + "\n")
    return path


def run(files: int, seconds: float, seed: int, work: Path) -> dict[str, int]:
    rng = random.Random(seed)
    seed_files = seeds()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, mode=0o755)
    work.chmod(0o755)
    saved = work / "crashes"
    counts = {"tried": 0, "accepted": 0, "refused": 0, "crashes": 0, "hangs": 0}
    counts |= {"wrongly accepted": 0, "errors not at FILE:LINE:COL": 0, "internal errors": 0}
    shown: dict[str, int] = {}
    slowest = 0.0
    previous = signal.signal(signal.SIGALRM, _interrupt)
    started = time.monotonic()
    try:
        for index in range(files):
            if time.monotonic() - started > seconds:
                print(f"stopped after {seconds:g} s", file=sys.stderr)
                break
            name, text = document(rng, seed_files)
            config = work / f"d{index % 64}"
            begun = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, ABORT)
            try:
                verdict = load_one(config, name, text)
            except _Stuck as exc:
                verdict = Verdict(None, exc, [], [])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.monotonic() - begun
            slowest = max(slowest, took)
            counts["tried"] += 1
            problems: list[tuple[str, str]] = []
            if took > HANG or isinstance(verdict.crash, _Stuck):
                problems.append(("hangs", f"took {took:.2f} s"))
            elif verdict.crash is not None:
                summary = f"{type(verdict.crash).__name__}: {verdict.crash}"[:200]
                problems.append(("crashes", summary))
            else:
                counts["accepted" if verdict.accepted else "refused"] += 1
            if verdict.violations:
                problems.append(("wrongly accepted", "; ".join(verdict.violations)[:200]))
            if verdict.internal:
                problems.append(("internal errors", verdict.internal[0][:200]))
            if verdict.bad_positions:
                problems.append(("errors not at FILE:LINE:COL", verdict.bad_positions[0][:200]))
            for kind, summary in problems:
                counts[kind] += 1
                shown[kind] = shown.get(kind, 0) + 1
                if shown[kind] <= SAVED:
                    path = _save(kind.split()[0], shown[kind], name, text, summary, saved)
                    print(f"  {kind}: {path.relative_to(ROOT)}: {summary}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    print(f"config fuzz: {counts['tried']} files in {elapsed:.1f} s (seed {seed})")
    print(f"  accepted {counts['accepted']}, refused with errors {counts['refused']}")
    print(f"  slowest file {slowest * 1000:.0f} ms")
    for kind in ("crashes", "hangs", "wrongly accepted", "errors not at FILE:LINE:COL"):
        print(f"  {kind}: {counts[kind]}")
    print(
        f"  internal errors (an exception the loader caught as a last resort): "
        f"{counts['internal errors']}"
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000, help="files to try (20000)")
    parser.add_argument("--seconds", type=float, default=600, help="time limit (600)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (time-based)")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "fuzz")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    run(args.files, args.seconds, seed, args.work.absolute())
    return 0  # a benchmark prints its figures and never fails on one


if __name__ == "__main__":
    sys.exit(main())
