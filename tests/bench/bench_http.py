"""Benchmark: CPU per HTTP check run, the lean probe (supervisor/checks/http.py, httptools)
against the aiohttp probe it replaced (tests/bench/aiohttp_probe.py), in one run.

A local server in a process of its own answers on 127.0.0.1; this process runs
`--checks` checks at once (one task per run), on uvloop, round after round, and counts
its own CPU (`time.process_time`) per run. "httptools, started" drives the lean probe as
the daemon's scheduler does: a run over a kept connection by callbacks alone
(`HttpProber.start`), a task otherwise. "no probe" is the floor: a task that returns a
result without I/O. Each engine is measured `--reps` times, alternating, for
`--requests` runs each (and at most `--seconds` a measure), with keep-alive connections
and then with a fresh connection per run (`keep_alive: false`). Prints the best of each
and the ratios to aiohttp.

Run: tests/bench/run http   (or: .venv/bin/python -m tests.bench.bench_http)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Protocol

from supervisor.checks.http import HttpProber
from supervisor.checks.result import CheckResult, ProbeContext, Status, finish
from supervisor.config.probes import HttpProbe

CONTEXT = ProbeContext(unit="bench.service")
BODY = b'{"status": "up"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class _Engine(Protocol):
    async def run(
        self,
        spec: HttpProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - as the probes take it
    ) -> CheckResult: ...

    async def close(self) -> None: ...


class _Serve(asyncio.Protocol):
    """The server's side: a fixed answer to each request; closes when asked to."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.seen = b""

    def data_received(self, data: bytes) -> None:
        self.seen += data
        while b"\r\n\r\n" in self.seen:
            request, _, self.seen = self.seen.partition(b"\r\n\r\n")
            self.transport.write(ANSWER)  # type: ignore[attr-defined]
            if b"connection: close" in request.lower():
                self.transport.close()
                return


def serve() -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Serve, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF

    uvloop.run(main())


class _NoProbe:
    """The floor under both engines: a run's task and result, no I/O."""

    async def run(
        self,
        spec: HttpProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - as the probes take it
    ) -> CheckResult:
        return finish(Status.OK, f"HTTP 200 from {spec.url} in 0.1 ms", time.monotonic())

    async def close(self) -> None:
        return None


class _Started:
    """The lean probe as the daemon's scheduler drives it: `start` by callbacks over a kept
    connection, a task for `run` otherwise."""

    def __init__(self) -> None:
        self.prober = HttpProber()

    async def run(
        self,
        spec: HttpProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - as the probes take it
    ) -> CheckResult:
        return await self.prober.run(spec, context, timeout)

    async def close(self) -> None:
        await self.prober.close()


async def _round(engine: _Engine, specs: list[HttpProbe]) -> None:
    """Every spec once, at once; exits on a result that is not OK."""
    loop = asyncio.get_running_loop()
    left = [len(specs)]
    all_done = loop.create_future()
    bad: list[CheckResult] = []

    def delivered(result: CheckResult) -> None:
        if result.status is not Status.OK:
            bad.append(result)
        left[0] -= 1
        if not left[0]:
            all_done.set_result(None)

    async def as_task(spec: HttpProbe) -> None:
        delivered(await engine.run(spec, CONTEXT, 5.0))

    tasks = []
    for spec in specs:
        if isinstance(engine, _Started) and engine.prober.start(spec, 5.0, delivered):
            continue  # the scheduler would expire it at its deadline; none hangs here
        tasks.append(asyncio.ensure_future(as_task(spec)))
    await all_done
    if bad:
        raise SystemExit(f"bench_http: a check failed: {bad[0].message}")


async def _measure(
    engine: _Engine, specs: list[HttpProbe], requests: int, seconds: float
) -> tuple[float, int]:
    """CPU us per run and runs done, over rounds of every spec at once."""
    await _round(engine, specs)  # warm: connections made, requests built, code paths hot
    done = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    while done < requests and time.monotonic() - wall0 < seconds:
        await _round(engine, specs)
        done += len(specs)
    return (time.process_time() - cpu0) / done * 1e6, done


async def _compare(args: argparse.Namespace, port: int) -> None:
    from tests.bench.aiohttp_probe import HttpProber as AiohttpProber

    engines: dict[str, Callable[[], _Engine]] = {
        "no probe": _NoProbe,
        "aiohttp": AiohttpProber,
        "httptools": HttpProber,
        "httptools, started": _Started,
    }
    print(f"{args.checks} checks at once, {args.requests} runs a measure, best of {args.reps}")
    print(f"{'connection':<12} {'engine':<20} {'CPU us/run':>11}")
    for keep_alive in (True, False):
        specs = [
            HttpProbe(url=f"http://127.0.0.1:{port}/health?c={n}", body="up", keep_alive=keep_alive)
            for n in range(args.checks)
        ]
        best: dict[str, float] = {}
        for _ in range(args.reps):
            for name, make in engines.items():
                engine = make()
                try:
                    us, _ = await _measure(engine, specs, args.requests, args.seconds)
                finally:
                    await engine.close()
                best[name] = min(best.get(name, us), us)
        kind = "keep-alive" if keep_alive else "fresh"
        for name, us in best.items():
            print(f"{kind:<12} {name:<20} {us:>11.1f}")
        for new in ("httptools", "httptools, started"):
            ratio = best[new] / best["aiohttp"]
            print(f"{kind:<12} {'ratio':<20} {ratio:>11.2f}  ({new} / aiohttp)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=200, help="checks run at once")
    parser.add_argument("--requests", type=int, default=20_000, help="runs a measure")
    parser.add_argument("--seconds", type=float, default=20.0, help="longest measure")
    parser.add_argument("--reps", type=int, default=2, help="measures per engine")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    import uvloop

    server = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_http", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        uvloop.run(_compare(args, port))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
