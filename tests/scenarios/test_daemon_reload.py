"""A reload that meets an unexpected error keeps the old policies and ends in READY=1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.daemon import loop as daemon_loop
from supervisor.testing.virtual_time import VirtualTimeLoop
from tests.scenarios.host_replay import World

SPEC = {
    "policies": {"web": {"unit": "web.service", "recovery": {"ladder": ["restart"]}}},
    "units": {"web.service": {"state": "active"}},
}


def test_an_unexpected_loader_error_is_refused_and_ends_in_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(SPEC, tmp_path)
    loop = VirtualTimeLoop()
    world.loop = loop
    daemon = world.daemon()

    def broken(config_dir: Path) -> object:
        raise OverflowError("int too large to convert to float")

    async def scenario() -> bool:
        runner = asyncio.create_task(daemon.run())
        await asyncio.sleep(5)
        monkeypatch.setattr(daemon_loop, "load_config", broken)
        ok = await daemon.reload()
        daemon.request_stop()
        await runner
        return ok

    try:
        assert loop.run_until_complete(scenario()) is False
    finally:
        loop.close()
    lines = [text for _, text in world.timeline.lines]
    after = lines[lines.index("sd_notify RELOADING=1") + 1 :]
    ready = next(line for line in after if line.startswith("sd_notify"))
    assert ready.startswith("sd_notify READY=1 STATUS=1 unit: 1 healthy")
    assert "reload refused: unexpected error while loading: OverflowError" in ready
    assert "web.service" in {unit for unit in daemon.state.units}


def test_a_decision_that_raises_drops_that_event_and_the_daemon_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(SPEC, tmp_path)
    loop = VirtualTimeLoop()
    world.loop = loop
    daemon = world.daemon()
    real_step = daemon_loop.host.step

    def step(state: object, event: object, now: float) -> object:
        if getattr(event, "unit", None) == "boom":
            raise RuntimeError("a bug in a decision")
        return real_step(state, event, now)  # type: ignore[arg-type]

    async def scenario() -> None:
        runner = asyncio.create_task(daemon.run())
        await asyncio.sleep(5)
        monkeypatch.setattr(daemon_loop.host, "step", step)
        assert daemon.pause("boom") is True  # dropped: no answer, so no refusal
        world.systemd.set_state("web.service", "failed", "failed", "exit-code")
        await asyncio.sleep(5)
        daemon.request_stop()
        await runner

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    lines = [text for _, text in world.timeline.lines]
    assert "systemd restart web.service: done" in lines  # still deciding after the bug
