"""Recovery drill golden scenarios: the whole daemon, its ports faked, on virtual time,
meets a drill's fault; the drill's figures and verdict are then read from the history it
wrote, as `host-supervisor drill` reads them. They pin the contract between what the
daemon records and what a drill reports.

Each `drill/NAME/input.yaml` is a host scenario (see test_host_scenarios.py) with a
`drill: {unit, fault, at}` naming the fault among its events; a fail-check fault's
override is the event `{at, force: UNIT, check: NAME, for: DURATION}`. Add one: write
the input, run `tests/run tests/scenarios --update`, review expected.txt, commit both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.config.values import parse_duration
from supervisor.core.drill import Fault, figures, judge
from supervisor.core.drill_record import record_of, summary
from supervisor.daemon import Daemon
from supervisor.testing.virtual_time import VirtualTimeLoop
from tests.scenarios.host_replay import EPOCH, World, _apply

HERE = Path(__file__).parent / "drill"
SCENARIOS = sorted(p.parent for p in HERE.glob("*/input.yaml"))


async def _drive(world: World, daemon: Daemon, events: list[dict[str, Any]], until: float) -> None:
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(daemon.run())
    for raw in events:
        await asyncio.sleep(max(0.0, parse_duration(raw["at"]) - loop.time()))
        if "force" in raw:
            refused = daemon.drills.force_check(
                raw["force"], raw.get("check"), parse_duration(raw["for"]), "uid 0 (root)"
            )
            world.timeline.add(f"drill: force {raw['force']}/{raw.get('check')}: {refused or 'ok'}")
        else:
            await _apply(world, daemon, raw)
    await asyncio.sleep(max(0.0, until - loop.time()))
    daemon.request_stop()
    await runner


def replay(scenario: Path, work: Path) -> str:
    spec = yaml.safe_load((scenario / "input.yaml").read_text())
    world = World(spec, work)
    loop = VirtualTimeLoop()
    world.loop = loop
    daemon = world.daemon()
    loop.run_until_complete(
        _drive(world, daemon, spec.get("events") or [], parse_duration(spec["until"]))
    )
    loop.close()
    drill = spec["drill"]
    unit, fault = drill["unit"], Fault(drill["fault"])
    fault_at = EPOCH + parse_duration(drill["at"])
    entries = [
        {"time": e.time, "kind": e.kind, "message": e.message, "data": e.data}
        for e in world.store.entries
        if e.unit == unit
    ]
    found = figures(entries, fault_at, fault)
    within = daemon.state.loaded.policies[unit].expect.recover_within
    record = record_of(fault, found, judge(fault, found, within), within)
    lines = [f"# {spec['description']}", *world.timeline.render(), "drill:"]
    lines.append(summary(record))
    report = {k: v for k, v in record.to_dict().items() if k not in ("fault_at", "cleanup")}
    lines += json.dumps(report, indent=2, sort_keys=True).splitlines()
    return "\n".join(lines) + "\n"


def test_there_are_drill_scenarios() -> None:
    assert {p.name for p in SCENARIOS} >= {"kill-met", "kill-too-slow", "fail-check-met"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_drill_scenario(scenario: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    actual = replay(scenario, tmp_path)
    expected_file = scenario / "expected.txt"
    if request.config.getoption("--update"):
        expected_file.write_text(actual)
    assert expected_file.exists(), f"{expected_file} missing: run with --update and review it"
    assert actual == expected_file.read_text()
