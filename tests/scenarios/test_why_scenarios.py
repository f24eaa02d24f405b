"""`why` on the histories the golden whole-host scenarios record: every automatic
repair, and every job of a failover, sits in a chain behind its cause, and each repair
names the rule that chose it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from supervisor.core.why import ACTION, DECISION, EVENT, RESULT, explain
from tests.scenarios.host_replay import replay_world

HERE = Path(__file__).parent / "host"
SCENARIOS = sorted(p.parent for p in HERE.glob("*/input.yaml"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_repair_has_its_cause_and_rule(scenario: Path, tmp_path: Path) -> None:
    _, world = replay_world(scenario, tmp_path)
    entries = [dataclasses.asdict(e) for e in world.store.entries]
    for entry in entries:
        if entry["kind"] == "action":
            assert entry["data"]["reason"], entry
            assert entry["data"]["rule"].startswith("ladder rung "), entry
    units = {str(e["unit"]) for e in entries if e["unit"] is not None}
    steps = sum(1 for e in entries if e["kind"] in ("action", "result"))
    explained = 0
    for unit in units:
        for chain in explain(unit, entries, last=10_000):
            roles = [link.role for link in chain.links]
            for index, role in enumerate(roles):
                if role in (ACTION, RESULT):  # a repair, or a failover's job
                    assert {EVENT, DECISION} & set(roles[:index]), (unit, chain.to_dict())
                    explained += chain.links[index].repeats
    assert explained == steps


def test_a_held_repair_reads_as_its_hold_then_the_restart(tmp_path: Path) -> None:
    """The loop above is no empty one: a known scenario, chain by chain."""
    _, world = replay_world(HERE / "hold-precondition", tmp_path)
    entries = [dataclasses.asdict(e) for e in world.store.entries]
    [chain] = explain("web.service", entries)
    texts = [link.text for link in chain.links]
    assert texts[0] == "unit failed (failed/failed (exit-code)) -> unhealthy"
    assert texts[1].startswith("held: precondition: disk / is 95.0% used")
    assert chain.links[1].repeats == 2
    assert texts[2] == "ladder rung 1 of 1: restart (attempt 1 of 3, cooldown 300s)"
    assert texts[-1] == "recovered: healthy after attempt 1"
