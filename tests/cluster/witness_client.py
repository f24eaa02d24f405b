"""The supervised service of the cluster tests: writes its fencing token to the witness
every 50 ms until SIGTERM.

The token comes from ``--token-file PATH`` when given (read again before every write, so a
new token is picked up), else from ``HOST_SUPERVISOR_FENCE_TOKEN``. An unreachable or
refusing witness is logged once per change and the writes go on: a partitioned host's
unit keeps running. Stdlib only, for Debian's python3 in a lab.

Run: ``python3 witness_client.py --witness http://ADDRESS:8780 [--host NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TOKEN_ENV = "HOST_SUPERVISOR_FENCE_TOKEN"


def read_token(token_file: str | None) -> int | None:
    """The current token, None when there is none to read (yet)."""
    try:
        text = Path(token_file).read_text() if token_file else os.environ.get(TOKEN_ENV, "")
        return int(text.strip())
    except (OSError, ValueError):
        return None


def write(url: str, host: str, token: int, timeout: float) -> str:
    """One write; the outcome in a few words ("200", "409: ...", "unreachable: ...")."""
    body = json.dumps({"host": host, "token": token, "t": time.time()}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/write", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return str(reply.status)
    except urllib.error.HTTPError as exc:
        return f"{exc.code}: {exc.read().decode(errors='replace')}"
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets
        return f"unreachable: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--witness", required=True, help="http://ADDRESS:PORT")
    parser.add_argument("--host", default=socket.gethostname())
    parser.add_argument("--token-file", help=f"read the token here, not from ${TOKEN_ENV}")
    parser.add_argument("--period", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=0.2)
    parser.add_argument(
        "--log", help="append 'TIME TOKEN' per write here (what ran when, seen from the host)"
    )
    args = parser.parse_args(argv)
    if args.token_file is None and read_token(None) is None:
        print(f"no token: set {TOKEN_ENV} or give --token-file", file=sys.stderr)
        return 2
    # No handler: one that sets an Event may deadlock on the Event's own lock if the
    # signal comes while the loop holds it. Blocked, SIGTERM waits for sigtimedwait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    last = ""
    due = time.monotonic()
    while True:
        token = read_token(args.token_file)
        at = time.time()  # alive now, whatever the write's fate
        outcome = (
            "no token" if token is None else write(args.witness, args.host, token, args.timeout)
        )
        if args.log and token is not None:
            with open(args.log, "a") as log:
                log.write(f"{at:.3f} {token}\n")
        kind = outcome.split(":", 1)[0]
        if kind != last:  # log changes only: twenty writes a second
            print(f"{args.host} token {token}: {outcome}", file=sys.stderr, flush=True)
            last = kind
        due = max(due + args.period, time.monotonic())
        if signal.sigtimedwait(stop_signals, max(0.0, due - time.monotonic())) is not None:
            break
    print(f"{args.host}: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
