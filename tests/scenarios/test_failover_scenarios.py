"""Golden failover scenarios: each NAME/failover.yaml replayed must match NAME/expected.txt.

Add one: write NAME/failover.yaml, run `tests/run tests/scenarios --update`, read the
new expected.txt (git diff), commit both. (The ladder's scenarios use input.yaml.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.core.failover import Action, Event, FailoverSpec, FailoverState, StartUnit
from tests.scenarios import replay_failover
from tests.scenarios.replay_failover import SCENARIO_FILE, replay

HERE = Path(__file__).parent
SCENARIOS = sorted(p.parent for p in HERE.glob(f"*/{SCENARIO_FILE}"))


def test_there_are_failover_scenarios() -> None:
    assert len(SCENARIOS) >= 4
    # A directory is one machine's scenario, never both.
    assert not any((p / "input.yaml").exists() for p in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_failover_scenario(scenario: Path, request: pytest.FixtureRequest) -> None:
    actual = replay(scenario)
    expected_file = scenario / "expected.txt"
    if request.config.getoption("--update"):
        expected_file.write_text(actual)
    assert expected_file.exists(), f"{expected_file} missing: run with --update and review it"
    assert actual == expected_file.read_text()


def _write(directory: Path, events: str) -> Path:
    (directory / SCENARIO_FILE).write_text(
        "description: a test of the replayer\n"
        "primary: web.service\n"
        "failover: {backup: b1.service}\n"
        f"events:\n{events}"
        "until: 1m\n"
    )
    return directory


def test_stale_job_results_start_nothing(tmp_path: Path) -> None:
    events = (
        "  - {at: 0s, ladder: exhausted}\n"
        "  - {at: 1s, started: b1.service}\n"  # not asked for: ignored
        "  - {at: 2s, stop_failed: web.service}\n"
    )
    summary = replay(_write(tmp_path, events))
    assert "final: failed running=web.service" in summary
    assert "START" not in summary


def test_the_replay_fails_when_two_units_could_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def careless(
        spec: FailoverSpec, state: FailoverState, event: Event, now: float
    ) -> tuple[FailoverState, list[Action]]:
        return state, [StartUnit("b1.service")]  # the primary was never stopped

    monkeypatch.setattr(replay_failover, "step", careless)
    with pytest.raises(AssertionError, match="could run together"):
        replay(_write(tmp_path, "  - {at: 0s, ladder: exhausted}\n"))
