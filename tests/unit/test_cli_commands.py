"""The commands as a user runs them: `validate FILE...`, `config show`, `history
--follow`, and bad input of every kind given to every command, which must end in a
clear line and an exit code, never a traceback."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.commands import client
from supervisor.commands.config_show import config_show_command
from supervisor.commands.history import EXIT_INTERRUPTED, Follower, follow
from supervisor.commands.validate import validate_files
from tests.unit.test_openapi import Served, served

__all__ = ["served"]  # the fixture: a daemon with its ports faked, on a real socket

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    path.chmod(0o644)
    return path


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environ.pop("HOST_SUPERVISOR_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


# -- validate FILE... ------------------------------------------------------------------------


def test_validate_single_files_names_file_line_col(tmp_path: Path) -> None:
    good = write(tmp_path / "a" / "tmpXYZ", "unit: web.service\nrecovery: {cooldown: 5min}\n")
    bad = write(tmp_path / "b.yaml", "unit: db.service\nrecovery:\n  cooldown: 5x\n")
    out = io.StringIO()
    assert validate_files([good], out) == 0
    assert out.getvalue() == "OK: 1 file valid\n"
    out = io.StringIO()
    assert validate_files([good, bad], out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{bad}:3:13: recovery.cooldown: '5x' is not a duration")
    assert lines[-1] == "1 file of 2 invalid"


def test_validate_a_missing_file_or_a_main_config(tmp_path: Path) -> None:
    out = io.StringIO()
    assert validate_files([tmp_path / "nope.yaml"], out) == 1
    assert f"{tmp_path / 'nope.yaml'}:1:1: cannot read the file" in out.getvalue()
    main = write(tmp_path / "hs.yaml", "guard: {max_concurrent: zero}\n")
    out = io.StringIO()
    assert validate_files([main], out, main=True) == 1
    assert f"{main}:1:25: guard.max_concurrent:" in out.getvalue()
    out = io.StringIO()
    assert validate_files([write(tmp_path / "ok.yaml", "guard: {}\n")], out, main=True) == 0
    out = io.StringIO()
    assert validate_files([tmp_path / "none.yaml"], out, main=True) == 1
    assert "no such file" in out.getvalue()


def test_validate_files_through_the_cli_as_ansible_calls_it(tmp_path: Path) -> None:
    bad = write(tmp_path / "tmpabc123", "unit: web.service\nchecks: 3\n")
    done = cli("validate", str(bad))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{bad}:2:")
    assert cli("validate", str(write(tmp_path / "ok", "unit: a.service\n"))).returncode == 0
    refused = cli("validate", "--main")
    assert refused.returncode == 2 and "--main needs FILE" in refused.stderr


# -- config show ---------------------------------------------------------------------------------


def test_config_show_fills_defaults_and_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = tmp_path / "etc"
    write(
        etc / "host-supervisor.yaml",
        """
        alerts:
          channels:
            ops: {url: "slack://T000/B000/s3cr3tT0ken"}
        """,
    )
    write(etc / "policies.d" / "web.yaml", "unit: web.service\nalerts: [ops]\n")
    write(etc / "policies.d" / "bad.yaml", "unit: bad.service\nnope: 1\n")
    out = io.StringIO()
    assert config_show_command(etc, out) == 1  # a file was left out
    text = out.getvalue()
    assert "s3cr3tT0ken" not in text and "slack://****" in text
    data = yaml.safe_load(text)
    web = data["policies"][str(etc / "policies.d" / "web.yaml")]
    assert web["unit"] == "web.service"
    assert web["recovery"]["max_attempts"] >= 1  # a default, filled in
    assert web["recovery"]["cooldown"] == "5m"  # the default, as a person writes it: not 300.0
    assert data["main"]["guard"]["repair_budget"]["window"] == "15m"
    assert len(data["policies"]) == 1  # bad.yaml is left out
    err = capsys.readouterr().err
    assert "left out:" in err and "bad.yaml:2:1" in err


@pytest.mark.parametrize("example", sorted((REPO / "etc").glob("**/policies.d/*.example")))
def test_a_shown_policy_loads_as_the_same_policy(example: Path) -> None:
    from supervisor.commands.config_show import written
    from supervisor.config.loader import load_policy_file
    from supervisor.config.main import MainConfig
    from supervisor.config.policy import Policy

    policy, issues = load_policy_file(example)
    assert policy is not None, issues
    shown = yaml.safe_dump(written(policy))
    assert Policy.model_validate(yaml.safe_load(shown)) == policy
    assert "null" not in shown  # unset options are left out
    main = MainConfig()
    assert MainConfig.model_validate(yaml.safe_load(yaml.safe_dump(written(main)))) == main


def test_config_show_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    done = cli("config", "show", "--config", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert (
        done.stderr == f"host-supervisor: config directory {tmp_path / 'nowhere'} does not exist\n"
    )


# -- history --follow -----------------------------------------------------------------------------


def test_follow_polls_until_ctrl_c_and_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        [{"time": 5.0, "unit": "w", "kind": "x", "message": "a"}],
        [
            {"time": 5.0, "unit": "w", "kind": "x", "message": "a"},
            {"time": 6.0, "unit": "w", "kind": "x", "message": "b"},
        ],
    ]
    urls: list[str] = []

    def fake_call(path: Path, method: str, url: str, timeout: float = 30.0) -> Any:
        urls.append(url)
        return 200, {"entries": answers[min(len(urls) - 1, 1)]}

    def sleep(seconds: float) -> None:
        assert seconds == 0.5
        if len(urls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(client, "call", fake_call)
    shown: list[str] = []
    follower = Follower()
    follower.new([{"time": 4.0, "unit": "w", "kind": "x", "message": "start"}])
    code = follow(
        Path("/x"),
        "w",
        50,
        0.5,
        follower,
        lambda entries: shown.extend(e["message"] for e in entries),
        sleep=sleep,
        clock=lambda: 10.0,
    )
    assert code == EXIT_INTERRUPTED
    assert shown == ["a", "b"]
    assert "since_s=8.0" in urls[0] and "unit=w" in urls[0] and "limit=50" in urls[0]


# -- bad input, every command ---------------------------------------------------------------------


def test_no_traceback_from_any_command_given_bad_input(tmp_path: Path) -> None:
    """Each line: a command with bad input; each must exit non-zero with one line on
    stderr (or, for `check`, an UNKNOWN line on stdout), never a traceback."""
    missing = str(tmp_path / "no-daemon.sock")
    not_a_socket = write(tmp_path / "file.sock", "x")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    bad_policy = write(tmp_path / "bad.yaml", "unit: [\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00unit")
    talkers: list[list[str]] = [
        ["status"],
        ["status", "web.service", "--json"],
        ["history", "--follow"],
        ["pause", "web.service", "--for", "2h", "--reason", "x"],
        ["resume", "--all"],
        ["reset", "web.service"],
        ["failover", "web.service", "--to", "b.service"],
        ["failback", "web.service"],
        ["metrics", "--reset"],
        ["reload"],
    ]
    cases: list[list[str]] = [[*talker, "--socket", missing] for talker in talkers]
    cases += [
        ["status", "--socket", str(not_a_socket)],
        ["history", "--socket", str(a_dir)],
        ["pause", "web.service", "--socket", str(a_dir)],
    ]
    cases += [
        ["history", "--since", "5x"],
        ["history", "--since", "-1h"],
        ["history", "--since", "400d"],
        ["history", "--limit", "many"],
        ["history", "--follow", "--interval", "0"],
        ["pause", "web.service", "--for", "0s"],
        ["pause", "web.service", "--for", "soon"],
        ["pause"],
        ["resume"],
        ["status", "--frobnicate"],
        ["frobnicate"],
        [],
        ["validate", str(tmp_path / "nope.yaml")],
        ["validate", str(bad_policy), str(binary), str(a_dir)],
        ["validate", "--config", str(tmp_path / "nowhere")],
        ["validate", "--config", str(not_a_socket)],
        ["config"],
        ["config", "show", "--config", str(not_a_socket)],
        ["config", "show", "--config", str(tmp_path / "nowhere")],
        ["schema", "--bogus"],
        ["test-alert", "--config", str(tmp_path / "nowhere")],
        ["check", "--config", str(tmp_path / "nowhere"), "web.service"],
        ["check", str(bad_policy)],
        ["check"],
        ["run", "--config", str(tmp_path / "nowhere"), "--state-dir", str(tmp_path / "s")],
    ]
    for argv in cases:
        done = cli(*argv)
        both = done.stdout + done.stderr
        assert "Traceback" not in both, (argv, both)
        assert done.returncode != 0, (argv, both)
        if argv[:1] == ["check"]:
            assert done.stdout.startswith("HOST-SUPERVISOR UNKNOWN"), (argv, both)
        elif argv[:1] not in (["validate"], ["run"]):
            assert done.stderr.count("\n") == 1, (argv, done.stderr)
            assert done.stderr.startswith("host-supervisor"), (argv, done.stderr)
    assert "'5x' is not a duration" in cli("history", "--since", "5x").stderr


async def test_follow_against_a_daemon_shows_new_entries_and_ends_on_ctrl_c(
    served: Served,
) -> None:
    """A real daemon (its ports faked) and the CLI in its own process, as a person runs
    `history --follow`: what the operator does next appears, Ctrl-C ends it with 130."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HOST_SUPERVISOR_DEBUG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervisor",
        "history",
        "--follow",
        "--interval",
        "100ms",
        "--socket",
        str(served.socket),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None

    async def line_with(words: str) -> str:
        while True:
            line = (await asyncio.wait_for(stdout.readline(), 30)).decode()
            assert line, "the follower ended"
            if words in line:
                return line

    try:
        assert "web.service" in await line_with("paused")  # what was there before
        served.daemon.resume("web.service", "uid 0 (root)")
        assert "operator" in await line_with("resumed (by uid 0 (root))")  # what came after
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await stderr.read()).decode()
    assert code == EXIT_INTERRUPTED
    assert "Traceback" not in err and err == ""
