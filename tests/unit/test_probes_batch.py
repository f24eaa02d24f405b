"""ProbesDone: a batch of probe results is decided as the same results one by one."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.checks.result import CheckResult, Status
from supervisor.config import LoadedConfig, load_config
from supervisor.core import host
from supervisor.core.actions import ProbeDone, ProbesDone, StatusChanged, UnitChanged
from supervisor.core.values import UnitSnapshot

POLICY = """\
unit: {unit}
checks:
  - {{name: http, http: {{url: "http://127.0.0.1/"}}, failures: 2, successes: 1}}
  - {{name: port, tcp: {{port: 80}}, failures: 1}}
recovery: {{ladder: [restart]}}
"""


def _loaded(tmp_path: Path, units: list[str]) -> LoadedConfig:
    (tmp_path / "host-supervisor.yaml").write_text("{}\n")
    policies = tmp_path / "policies.d"
    policies.mkdir()
    for unit in units:
        path = policies / f"{unit.split('.')[0]}.yaml"
        path.write_text(POLICY.format(unit=unit))
        os.chmod(path, 0o644)
    loaded = load_config(tmp_path)
    assert loaded.errors == []
    return loaded


def test_a_batch_decides_as_its_results_one_by_one(tmp_path: Path) -> None:
    units = ["a.service", "b.service", "c.service"]
    loaded = _loaded(tmp_path, units)
    state, _ = host.initial(loaded, {}, {}, hostname="h", dry_run=False, now=0.0)
    for unit in units:
        snapshot = UnitSnapshot(unit, "loaded", "active", "running", "success", 100, 0, True)
        state, _ = host.step(state, UnitChanged(snapshot), 1.0)
    bad, good = CheckResult(Status.CRITICAL, "refused", 0.0), CheckResult(Status.OK, "ok", 0.0)
    rounds = [
        [ProbeDone(u, i, good) for u in units for i in (0, 1)],
        [
            ProbeDone("a.service", 0, bad),
            ProbeDone("b.service", 1, bad),
            ProbeDone("c.service", 0, good),
        ],
        [
            ProbeDone("a.service", 0, bad),
            ProbeDone("b.service", 1, good),
            ProbeDone("a.service", 1, bad),
        ],
    ]
    one_by_one, batched = state, state
    for number, results in enumerate(rounds):
        now = 10.0 + number
        expected = []
        for done in results:
            one_by_one, actions = host.step(one_by_one, done, now)
            expected += [a for a in actions if not isinstance(a, StatusChanged)]
        batched, actions = host.step(batched, ProbesDone(tuple(results)), now)
        assert [a for a in actions if not isinstance(a, StatusChanged)] == expected
        # One STATUS= update for the whole batch.
        assert sum(isinstance(a, StatusChanged) for a in actions) <= 1
    assert batched.units.keys() == one_by_one.units.keys()
    for unit in units:
        left, right = batched.units[unit], one_by_one.units[unit]
        assert (left.condition, left.checks, left.results) == (
            right.condition,
            right.checks,
            right.results,
        )
    assert batched.flaps == one_by_one.flaps
    assert batched.units["a.service"].condition.value == "unhealthy"
