"""The lease keeper: ``python -m supervisor.cluster.keeper UNIT [FENCE_DIR]``, the main
process of ``host-supervisor-lease@UNIT.service``.

It reads the deadline (CLOCK_MONOTONIC seconds) the daemon writes after each renewal
of this host's lease, pings systemd's watchdog while the deadline is ahead, and exits
when it passes or cannot be read. The unit is bound to this one (``BindsTo=``), so
systemd stops it then, even when the daemon hangs or is SIGSTOPped; if the keeper
itself hangs, ``WatchdogSec=`` kills it, with the same effect. Standard library only:
it starts in milliseconds and shares nothing with the daemon.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

POLL = 0.1


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)


def read_deadline(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m supervisor.cluster.keeper UNIT [FENCE_DIR]", file=sys.stderr)
        return 2
    unit = argv[1]
    fence_dir = Path(argv[2]) if len(argv) > 2 else Path("/run/host-supervisor/fence")
    path = fence_dir / f"{unit}.deadline"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready = False
    while True:
        deadline = read_deadline(path)
        now = time.monotonic()
        if deadline is None or now >= deadline:
            why = (
                "no lease deadline"
                if deadline is None
                else f"lease expired {now - deadline:.2f}s ago"
            )
            print(f"{unit}: {why} ({path}): fencing", file=sys.stderr, flush=True)
            return 1
        notify("WATCHDOG=1" if ready else f"READY=1\nSTATUS=lease of {unit} held")
        ready = True
        time.sleep(min(POLL, max(0.0, deadline - now)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
