"""The probe scheduler: one wake-up per tick, results in batches, hung probes alone,
per-probe timeouts, the confirmation interval. Fakes for the state and the probes, on
the virtual-time loop (no sleeping)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from supervisor.checks.result import CheckResult, Pending, ProbeContext, Status
from supervisor.config.check import Check
from supervisor.core.actions import Event, ProbeDone, ProbesDone
from supervisor.core.health import CheckHealth, record
from supervisor.core.state import HostState
from supervisor.daemon.metrics import Metrics
from supervisor.daemon.probing import Probing
from supervisor.testing.virtual_time import VirtualTimeLoop


@dataclass
class Hanging:
    """A callback probe that never answers by itself."""

    done: Callable[[CheckResult], None]
    expired: bool = False
    cancelled: bool = False

    def expire(self) -> None:
        self.expired = True
        self.done(CheckResult(Status.CRITICAL, "timed out", 0.0))

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Probes:
    """`tcp` checks are callback probes (answering at once, or hanging for `hung` units);
    the others are coroutines (sleeping `slow` seconds for `slow_units`)."""

    hung: set[str] = field(default_factory=set)
    slow_units: set[str] = field(default_factory=set)
    slow: float = 30.0
    broken: bool = False
    answers: dict[str, Status] = field(default_factory=dict)
    started: list[tuple[float, str, str]] = field(default_factory=list)
    pending: list[Hanging] = field(default_factory=list)

    def _answer(self, unit: str) -> CheckResult:
        return CheckResult(self.answers.get(unit, Status.OK), "answer", 0.0)

    def start(
        self, check: Check, context: ProbeContext, done: Callable[[CheckResult], None]
    ) -> Pending | None:
        if check.kind != "tcp":
            return None
        self.started.append((asyncio.get_running_loop().time(), context.unit, check.name))
        if self.broken:
            raise RuntimeError("boom")
        if context.unit in self.hung:
            hanging = Hanging(done)
            self.pending.append(hanging)
            return hanging
        done(self._answer(context.unit))  # before start returns, as a refused connect does
        return Hanging(lambda _: None)

    async def run(self, check: Check, context: ProbeContext) -> CheckResult:
        self.started.append((asyncio.get_running_loop().time(), context.unit, check.name))
        if context.unit in self.slow_units:
            await asyncio.sleep(self.slow)
        return self._answer(context.unit)

    async def close(self) -> None:
        return None


class World:
    """Units with checks, a fake reducer that records the events and keeps health."""

    def __init__(self, checks: dict[str, list[Check]], window: float = 0.005) -> None:
        self.units = {
            unit: SimpleNamespace(
                unit=unit,
                running=True,
                context=ProbeContext(unit=unit, active_state="active"),
                policy=SimpleNamespace(checks=unit_checks),
                checks=[CheckHealth() for _ in unit_checks],
            )
            for unit, unit_checks in checks.items()
        }
        self.events: list[Event] = []
        self.window = window
        self.metrics = Metrics()

    def state(self) -> HostState:
        loaded = SimpleNamespace(main=SimpleNamespace(checks=SimpleNamespace(batch_window=0.005)))
        return cast(HostState, SimpleNamespace(units=self.units, loaded=loaded))

    def feed(self, event: Event) -> None:
        self.events.append(event)
        results = event.results if isinstance(event, ProbesDone) else (event,)
        loop_now = asyncio.get_running_loop().time()
        for done in results:
            assert isinstance(done, ProbeDone)
            unit = self.units[done.unit]
            check = unit.policy.checks[done.index]
            unit.checks[done.index] = record(
                check, unit.checks[done.index], done.result.status, loop_now, None
            )

    def probing(self, probes: Probes) -> Probing:
        return Probing(
            self.state, self.feed, probes, cast(Any, None), self.metrics, window=self.window
        )

    def results(self) -> list[ProbeDone]:
        out: list[ProbeDone] = []
        for event in self.events:
            out += event.results if isinstance(event, ProbesDone) else [cast(ProbeDone, event)]
        return out


def tcp(name: str = "port", **fields: Any) -> Check:
    return Check.model_validate(
        {"name": name, "tcp": {"host": "127.0.0.1", "port": 80}, "interval": "1s", **fields}
    )


def http(name: str = "http", **fields: Any) -> Check:
    return Check.model_validate(
        {"name": name, "http": {"url": "http://127.0.0.1/"}, "interval": "1s", **fields}
    )


def run(world: World, probes: Probes, seconds: float) -> Probing:
    loop = VirtualTimeLoop()

    async def main() -> Probing:
        probing = world.probing(probes)
        for unit in world.units:
            probing.start(unit)
        await asyncio.sleep(seconds)
        probing.stop_all()
        await asyncio.sleep(0)
        return probing

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_checks_due_together_start_from_one_wake_up_and_report_in_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every first run at the same time: 200 units' port checks.
    monkeypatch.setattr("supervisor.daemon.probing.jitter", lambda unit, check: 0.5)
    world = World({f"u{i}.service": [tcp()] for i in range(200)})
    probes = Probes()
    wakes: list[float] = []
    real_tick = Probing._tick

    def tick(self: Probing) -> None:
        wakes.append(asyncio.get_running_loop().time())
        real_tick(self)

    monkeypatch.setattr(Probing, "_tick", tick)
    run(world, probes, 3.2)
    # 0.5, 1.5, 2.5: three wake-ups for 600 runs, each run at its time.
    assert wakes == [0.5, 1.5, 2.5]
    assert len(probes.started) == 600
    assert [type(e) for e in world.events] == [ProbesDone] * 3
    assert all(len(cast(ProbesDone, e).results) == 200 for e in world.events)
    assert world.metrics.check_runs == 600


def test_a_check_due_within_the_window_starts_early_never_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offsets = {"a.service": 0.5, "b.service": 0.503, "c.service": 0.52}
    monkeypatch.setattr("supervisor.daemon.probing.jitter", lambda unit, check: offsets[unit])
    world = World({unit: [tcp()] for unit in offsets})
    probes = Probes()
    run(world, probes, 1.2)
    # b is due 3 ms after a: it starts with a; c (20 ms after) on its own wake-up.
    first = [(round(t, 3), unit) for t, unit, _ in probes.started[:3]]
    assert first == [(0.5, "a.service"), (0.5, "b.service"), (0.52, "c.service")]
    assert world.metrics.lateness.worst < 0.05  # only the real time spent starting them


def test_a_hung_probe_delays_no_other_check_and_times_out_on_its_own() -> None:
    units = {f"u{i}.service": [tcp(timeout="2s"), http(timeout="2s")] for i in range(20)}
    world = World(units)
    probes = Probes(hung={"u3.service"}, slow_units={"u4.service"}, slow=30.0)
    run(world, probes, 10.0)
    per_check: dict[tuple[str, str], int] = {}
    for _, unit, name in probes.started:
        per_check[(unit, name)] = per_check.get((unit, name), 0) + 1
    # Everyone else ran every second, about 10 times.
    healthy = [n for (unit, _), n in per_check.items() if unit not in ("u3.service", "u4.service")]
    assert min(healthy) >= 9
    # The hung callback probe is expired at its 2 s timeout, then runs again at once
    # (its run outlasted its interval): runs at ~t, t+2, t+4, ...
    assert 4 <= per_check[("u3.service", "port")] <= 6
    assert all(p.expired for p in probes.pending[:-1])
    # A slow coroutine probe (no timeout of its own in the fake) holds only itself.
    assert per_check[("u4.service", "http")] == 1
    assert world.metrics.lateness.worst < 0.05


def test_a_probe_that_raises_is_unknown_and_the_scheduler_goes_on() -> None:
    world = World({"a.service": [tcp()]})
    probes = Probes(broken=True)
    run(world, probes, 3.0)
    results = world.results()
    assert len(results) == 3
    assert all(r.result.status is Status.UNKNOWN for r in results)
    assert results[0].result.message == "probe failed: RuntimeError: boom"


def test_a_stopped_unit_is_not_probed_and_its_hung_probe_is_dropped() -> None:
    world = World({"a.service": [tcp()], "b.service": [tcp()]})
    probes = Probes(hung={"a.service"})
    loop = VirtualTimeLoop()

    async def main() -> None:
        probing = world.probing(probes)
        probing.start("a.service")
        probing.start("b.service")
        await asyncio.sleep(1.5)
        probing.stop("a.service")
        before = len(probes.started)
        await asyncio.sleep(3.0)
        assert all(unit == "b.service" for _, unit, _ in probes.started[before:])
        assert probes.pending[-1].cancelled
        probing.stop_all()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert all(r.unit == "b.service" for r in world.results())


def test_not_running_units_keep_their_schedule_without_probes() -> None:
    world = World({"a.service": [tcp()]})
    world.units["a.service"].running = False
    probes = Probes()
    run(world, probes, 5.0)
    assert probes.started == [] and world.events == []


def test_the_confirmation_interval_reprobes_sooner_until_the_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("supervisor.daemon.probing.jitter", lambda unit, check: 0.0)
    world = World(
        {
            "a.service": [tcp(failures=3, confirm_interval="100ms")],
            "b.service": [tcp(failures=3)],
        }
    )
    probes = Probes(answers={"a.service": Status.CRITICAL, "b.service": Status.CRITICAL})
    run(world, probes, 2.55)
    times = {
        unit: [round(t, 3) for t, u, _ in probes.started if u == unit]
        for unit in ("a.service", "b.service")
    }
    # a: bad at 0, confirmed at 0.1 and 0.2 (hard-failed), then every second again.
    assert times["a.service"] == [0.0, 0.1, 0.2, 1.2, 2.2]
    assert times["b.service"] == [0.0, 1.0, 2.0]
    assert world.units["a.service"].checks[0].hard.value == "critical"


def test_kept_http_checks_run_by_callbacks_from_the_scheduler() -> None:
    """The real HTTP probe under the scheduler, on a real loop against a local server:
    once a connection is kept (the first runs are tasks), runs go by `Prober.start`
    alone."""
    from supervisor.checks import Prober

    class Counting(Prober):
        def __init__(self) -> None:
            super().__init__()
            self.by_callbacks = 0
            self.as_tasks = 0

        def start(
            self, check: Check, context: ProbeContext, done: Callable[[CheckResult], None]
        ) -> Pending | None:
            pending = super().start(check, context, done)
            self.by_callbacks += pending is not None
            return pending

        async def run(self, check: Check, context: ProbeContext) -> CheckResult:
            self.as_tasks += 1
            return await super().run(check, context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup")
        writer.close()

    async def main() -> tuple[World, Counting]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        check = Check.model_validate(
            {"name": "web", "http": {"url": f"http://127.0.0.1:{port}/", "body": "up"},
             "interval": "100ms", "timeout": "1s"}
        )  # fmt: skip
        world = World({f"u{i}.service": [check] for i in range(5)})
        prober = Counting()
        probing = world.probing(cast(Probes, prober))
        for unit in world.units:
            probing.start(unit)
        await asyncio.sleep(0.75)
        probing.stop_all()
        await prober.close()
        server.close()
        await asyncio.sleep(0.05)  # the server's handlers see their connections end
        return world, prober

    world, prober = asyncio.run(main())
    results = world.results()
    assert len(results) >= 20, len(results)
    assert {done.result.status for done in results} == {Status.OK}, results[:3]
    # Connections are kept per origin: a task only while none is idle (the first runs).
    assert prober.as_tasks <= 5, prober.as_tasks
    assert prober.by_callbacks >= len(results) - 5
