"""The generated man pages cover the whole CLI and the whole policy reference, and
render without groff warnings."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor.cli import build_parser
from supervisor.commands.manpage import escape, host_supervisor_8, host_supervisor_yaml_5, main
from supervisor.config import main_json_schema, policy_json_schema
from supervisor.config.reference import rows


def _roff(text: str) -> str:
    return escape(text)


def _commands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def _long_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        s
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
        for s in a.option_strings
        if s.startswith("--")
    ]


@pytest.fixture(scope="module")
def page8() -> str:
    return host_supervisor_8()


@pytest.fixture(scope="module")
def page5() -> str:
    return host_supervisor_yaml_5()


def test_every_subcommand_and_long_flag_is_in_the_8_page(page8: str) -> None:
    commands = _commands()
    assert len(commands) >= 10
    for name, sub in commands.items():
        assert f".SS {_roff(name)}\n" in page8, name
        assert f"host\\-supervisor {_roff(name)}\\fR" in page8, name
        for flag in _long_flags(sub):
            assert f"\\fB{_roff(flag)}\\fR" in page8, (name, flag)
        for action in sub._actions:
            if action.help and not isinstance(action, argparse._HelpAction):
                assert _roff(action.help) in page8, (name, action.help)
    assert "\\fB\\-\\-version\\fR" in page8


def test_8_page_has_the_sections(page8: str) -> None:
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", '"EXIT STATUS"', '"SEE ALSO"'):
        assert f"\n.SH {section}\n" in page8, section
    for path in (
        "/etc/host\\-supervisor/host\\-supervisor.yaml",
        "/var/lib/host\\-supervisor",
        "/run/host\\-supervisor/control.sock",
    ):
        assert path in page8
    for code in ("73", "75", "78"):
        assert f"\\fB{code}\\fR" in page8


def test_every_key_path_of_the_reference_is_in_the_5_page(page5: str) -> None:
    for schema in (main_json_schema(), policy_json_schema()):
        for path, _kind, _description in rows(schema):
            assert f"\n\\fB{_roff(path)}\\fR (" in page5, path


def test_roff_escaping() -> None:
    assert escape(".starts with a dot") == "\\&.starts with a dot"
    assert escape("'quote") == "\\&'quote"
    assert escape("a\\b --flag") == "a\\eb \\-\\-flag"
    assert escape("50 \u2264 x") == "50 \\[u2264] x"
    assert escape("two\n  lines") == "two lines"


def test_pages_are_plain_ascii_without_stray_control_lines(page8: str, page5: str) -> None:
    for page in (page8, page5):
        page.encode("ascii")
        for line in page.splitlines():
            if line.startswith("'"):
                raise AssertionError(line)
            if line.startswith("."):
                assert line[1].isalpha() or line.startswith('.\\"'), line


def test_main_writes_both_pages(tmp_path: Path) -> None:
    assert main([str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "host-supervisor.8",
        "host-supervisor.yaml.5",
    ]
    assert main([]) == 2


def test_pages_render_without_warnings(tmp_path: Path) -> None:
    main([str(tmp_path)])
    pages = [tmp_path / "host-supervisor.8", tmp_path / "host-supervisor.yaml.5"]
    if shutil.which("groff"):
        command = ["groff", "-man", "-Tutf8", "-ww", "-z"]
    elif shutil.which("man"):
        command = ["man", "--warnings=w", "-l"]
    else:
        pytest.skip("neither groff nor man is installed: rendering not checked")
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"}
    for page in pages:
        done = subprocess.run(
            [*command, str(page)], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
