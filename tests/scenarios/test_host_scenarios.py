"""Whole-host golden scenarios: the daemon, all its ports faked, on virtual time.

Each `host/NAME/input.yaml` replays to a summary that must match the reviewed
`host/NAME/expected.txt`. Add one: write the input, run
`tests/run tests/scenarios --update`, read the diff of expected.txt, commit both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.host_replay import replay

HERE = Path(__file__).parent / "host"
SCENARIOS = sorted(p.parent for p in HERE.glob("*/input.yaml"))


def test_there_are_whole_host_scenarios() -> None:
    assert len(SCENARIOS) >= 12


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_host_scenario(scenario: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    actual = replay(scenario, tmp_path)
    expected_file = scenario / "expected.txt"
    if request.config.getoption("--update"):
        expected_file.write_text(actual)
    assert expected_file.exists(), f"{expected_file} missing: run with --update and review it"
    assert actual == expected_file.read_text()
