"""The README's policy reference is generated from the models and must be current, and the
decision tables in docs/decisions.md are the ones the code runs."""

from __future__ import annotations

from pathlib import Path

from supervisor.config.reference import markdown_reference, rows
from supervisor.config.schema import policy_json_schema

README = Path(__file__).parents[2] / "README.md"
DECISIONS = Path(__file__).parents[2] / "docs" / "decisions.md"
START, END = "<!-- reference:start -->\n", "<!-- reference:end -->"


def test_every_policy_key_is_documented_with_its_default() -> None:
    table = {path: (kind, text) for path, kind, text in rows(policy_json_schema())}
    assert table["recovery.cooldown"] == (
        "duration",
        "Minimum time between two repair actions on the unit (the first action is "
        "immediate), 0s to 365d. Default 5m.",
    )
    assert table["checks[].http.url"][0] == "string"
    assert table["recovery.restore.from"][0] == "string"  # the alias, as users write it
    assert table["failover.failback"][0].startswith("manual or section")
    for path, (_, text) in table.items():
        assert text, f"{path} has no description"


def test_readme_reference_is_up_to_date() -> None:
    text = README.read_text()
    generated = text[text.index(START) + len(START) : text.index(END)]
    assert generated == markdown_reference(), (
        "README.md's policy reference is stale: run "
        "`.venv/bin/python -m supervisor.config.reference` and paste it between the markers"
    )


def test_docs_show_the_failover_table_the_machine_runs() -> None:
    from supervisor.core.failover import render_table

    assert render_table().strip() in DECISIONS.read_text()


def test_docs_list_the_holds_in_the_order_the_code_asks_them() -> None:
    from supervisor.core.holds import HOLDS, render_hold_order

    text = DECISIONS.read_text()
    start, end = "<!-- holds:start -->\n", "<!-- holds:end -->"
    generated = text[text.index(start) + len(start) : text.index(end)]
    assert generated == render_hold_order()
    assert [rule.name for rule in HOLDS] == [
        "observe only",
        "observing",
        "failover",
        "standby",
        "waiting for root",
        "flapping",
        "state saved",
        "preconditions",
        "guard",
    ]
