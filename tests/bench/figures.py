"""Small helpers the benchmarks share: percentiles, tables, host PIDs of lab processes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def percentiles(values: Sequence[float]) -> tuple[str, str, str, str]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return tuple(f"{v:.1f}" for v in (pick(0.50), pick(0.95), pick(0.99), ordered[-1]))  # type: ignore[return-value]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def host_pid(lab_pid: int, lab_init_host_pid: int) -> int:
    """The host PID of a process whose PID inside the lab is `lab_pid`."""
    ns = Path(f"/proc/{lab_init_host_pid}/ns/pid").readlink()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            if Path(status.parent / "ns/pid").readlink() != ns:
                continue
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if int(ids[-1]) == lab_pid:
                    return int(ids[0])
    raise LookupError(f"no process with PID {lab_pid} in the lab")
