"""The bash, zsh and fish completions that packaging/completions generates from the parser
load in their shells and complete what the parser has: every sub-command, every flag, and
units where a unit is asked for."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "packaging" / "completions"
POLICIES = "/etc/host-supervisor/policies.d"
NAMES = {"bash": "host-supervisor.bash", "zsh": "_host-supervisor", "fish": "host-supervisor.fish"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def _shell(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is not installed: run tests/setup-env"
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("completions")
    done = subprocess.run(
        [sys.executable, str(GENERATOR), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES.values())
    return out


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A PATH with a fake systemctl that lists two units, and an empty policies dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "awk", "cat", "printf"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        "#!/bin/sh\nprintf 'nginx.service loaded active running nginx\\n"
        "ssh.service loaded active running OpenBSD Secure Shell\\n'\n"
    )
    systemctl.chmod(0o755)
    policies = tmp_path / "policies.d"
    policies.mkdir()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}
    return policies, env


def _script(generated: Path, shell: str, policies: Path) -> Path:
    """The generated script, reading its policies from `policies` instead of /etc."""
    text = (generated / NAMES[shell]).read_text()
    assert POLICIES in text
    copy = policies.parent / NAMES[shell]
    copy.write_text(text.replace(POLICIES, str(policies)))
    return copy


# -- bash ---------------------------------------------------------------------------


def test_bash_loads_it(generated: Path) -> None:
    script = generated / NAMES["bash"]
    done = subprocess.run(
        [
            _shell("bash"),
            "--norc",
            "--noprofile",
            "-c",
            f"source '{script}'; complete -p host-supervisor",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.split()[-1] == "host-supervisor"


def _bash(script: Path, words: list[str], env: dict[str, str]) -> list[str]:
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"source '{script}'\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_shtab_host_supervisor\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [_shell("bash"), "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line)


def test_bash_completes_every_subcommand_and_flag_of_the_parser(
    generated: Path, host: tuple[Path, dict[str, str]]
) -> None:
    policies, env = host
    script = _script(generated, "bash", policies)
    commands = _commands()
    assert _bash(script, ["host-supervisor", ""], env) == sorted(commands)
    assert _bash(script, ["host-supervisor", "st"], env) == ["status"]
    for name, sub in commands.items():
        got = _bash(script, ["host-supervisor", name, "--"], env)
        assert got == sorted(_long_flags(sub)), name


def test_bash_completes_units_from_the_policies_else_from_systemd(
    generated: Path, host: tuple[Path, dict[str, str]]
) -> None:
    policies, env = host
    script = _script(generated, "bash", policies)
    assert _bash(script, ["host-supervisor", "pause", ""], env) == [
        "nginx.service",
        "ssh.service",
    ]
    (policies / "web.yaml").write_text('unit: "web.service"   # the shop\nchecks: []\n')
    (policies / "db.yaml").write_text("unit: db.service\n")
    assert _bash(script, ["host-supervisor", "status", ""], env) == ["db.service", "web.service"]
    assert _bash(script, ["host-supervisor", "failover", "w"], env) == ["web.service"]
    assert _bash(script, ["host-supervisor", "failover", "web.service", "--to", "d"], env) == [
        "db.service"
    ]


def test_bash_completes_paths(generated: Path, host: tuple[Path, dict[str, str]]) -> None:
    policies, env = host
    script = _script(generated, "bash", policies)
    base = policies.parent
    (base / "conf").mkdir()
    (base / "control.sock").write_text("")
    got = _bash(script, ["host-supervisor", "run", "--config", f"{base}/con"], env)
    assert got == [f"{base}/conf"]
    got = _bash(script, ["host-supervisor", "status", "--socket", f"{base}/contr"], env)
    assert got == [f"{base}/control.sock"]


# -- zsh ----------------------------------------------------------------------------


def test_zsh_loads_it_from_its_fpath_and_by_eval(generated: Path, tmp_path: Path) -> None:
    zsh = _shell("zsh")
    script = generated / NAMES["zsh"]
    syntax = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    program = (
        f"fpath=({generated} $fpath); autoload -Uz compinit; compinit -u -d {tmp_path}/dump\n"
        "print -r -- $_comps[host-supervisor]\n"  # found by compinit on the fpath
        f'eval "$(<{script})"\n'  # as `source <(...)` does: defines and registers it
        "print -r -- $_comps[host-supervisor]\n"
        "whence -w _shtab_host_supervisor\n"
    )
    done = subprocess.run(
        [zsh, "-f", "-c", program],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "_host-supervisor",
        "_shtab_host_supervisor",
        "_shtab_host_supervisor: function",
    ]


# -- fish ---------------------------------------------------------------------------


def _fish(script: Path, line: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [_shell("fish"), "--no-config", "-c", f"source '{script}'; complete -C'{line}'"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return sorted(entry.split("\t")[0] for entry in done.stdout.splitlines() if entry)


def test_fish_completes_every_subcommand_flag_and_unit(
    generated: Path, host: tuple[Path, dict[str, str]]
) -> None:
    policies, env = host
    script = _script(generated, "fish", policies)
    commands = _commands()
    assert _fish(script, "host-supervisor ", env) == sorted(commands)
    for name in ("run", "status", "history", "check"):
        got = _fish(script, f"host-supervisor {name} --", env)
        assert got == sorted(_long_flags(commands[name])), name
    assert _fish(script, "host-supervisor pause ", env) == ["nginx.service", "ssh.service"]
    (policies / "web.yaml").write_text("unit: web.service\n")
    assert _fish(script, "host-supervisor reset ", env) == ["web.service"]
