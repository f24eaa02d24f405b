"""Golden scenarios: each directory's replay must match its reviewed expected.txt.

Add one: write NAME/input.yaml, run `tests/run tests/scenarios --update`, read
the new expected.txt (git diff), commit both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.replay import replay

HERE = Path(__file__).parent
SCENARIOS = sorted(p.parent for p in HERE.glob("*/input.yaml"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 3


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_scenario(scenario: Path, request: pytest.FixtureRequest) -> None:
    actual = replay(scenario)
    expected_file = scenario / "expected.txt"
    if request.config.getoption("--update"):
        expected_file.write_text(actual)
    assert expected_file.exists(), f"{expected_file} missing: run with --update and review it"
    assert actual == expected_file.read_text()
