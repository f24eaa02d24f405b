"""Root runs what policies name and reads policies as orders: what it runs and reads
must be root's (or, when not running as root, the current user's) and writable by no
one else, nor may any directory on the way be (see supervisor.config.trust)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.config.trust import path_refusal, trusted_owner

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
NOBODY = 65534


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def program(path: Path, mode: int = 0o755) -> Path:
    return write(path, "#!/bin/sh\nexit 0\n", mode)


def policy_running(config: Path, prog: Path) -> Path:
    """A policy naming `prog` as a command check, a restore validator and can_recover."""
    return write(
        config / "policies.d" / "web.yaml",
        f"""unit: web.service
checks:
  - name: probe
    command: {{argv: [{prog}, -q]}}
recovery:
  ladder: [restart, restore]
  restore: {{paths: [/etc/web], validate: [{prog}]}}
failover:
  backup: web-maint.service
  can_recover: [{prog}]
""",
    )


def errors(config: Path) -> list[str]:
    return [str(issue) for issue in load_config(config).errors]


def refused_everywhere(path: Path, prog: Path, reason: str) -> list[str]:
    message = f"{prog} is refused: {reason}"
    return [
        f"{path}:4:22: checks[0].command.argv[0]: {message}",
        f"{path}:7:43: recovery.restore.validate[0]: {message}",
        f"{path}:10:17: failover.can_recover[0]: {message}",
    ]


# --- programs ----------------------------------------------------------------------------


def test_a_safe_program_is_accepted(tmp_path: Path) -> None:
    policy_running(tmp_path / "etc", program(tmp_path / "bin" / "ok"))
    assert errors(tmp_path / "etc") == []


@pytest.mark.parametrize(("mode", "who"), [(0o775, "group"), (0o757, "others")])
def test_a_program_others_can_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    prog = program(tmp_path / "bin" / "check", mode)
    path = policy_running(tmp_path / "etc", prog)
    reason = f"it is writable by {who} (mode {mode:04o}); run chmod go-w on it"
    assert errors(tmp_path / "etc") == refused_everywhere(path, prog, reason)
    assert load_config(tmp_path / "etc").policies == {}


def test_a_program_in_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    prog = program(tmp_path / "drop" / "check")
    (tmp_path / "drop").chmod(0o777)
    path = policy_running(tmp_path / "etc", prog)
    reason = (
        f"{tmp_path / 'drop'} is writable by group and others (mode 0777) without the "
        "sticky bit; run chmod go-w on it"
    )
    assert errors(tmp_path / "etc") == refused_everywhere(path, prog, reason)


def test_a_sticky_directory_on_the_way_is_fine(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o1777)  # like /tmp: no one can rename what is not theirs
    prog = program(tmp_path / "shared" / "mine" / "check")
    policy_running(tmp_path / "etc", prog)
    assert errors(tmp_path / "etc") == []


def test_a_link_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    target = program(tmp_path / "drop" / "real")
    (tmp_path / "drop").chmod(0o770)
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "check"
    link.symlink_to("../drop/real")
    path = policy_running(tmp_path / "etc", link)
    reason = (
        f"{target.parent} is writable by group (mode 0770) without the sticky bit; "
        "run chmod go-w on it"
    )
    assert errors(tmp_path / "etc") == refused_everywhere(path, link, reason)


@ROOT_ONLY
def test_a_program_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    prog = program(tmp_path / "bin" / "check")
    os.chown(prog, NOBODY, NOBODY)
    path = policy_running(tmp_path / "etc", prog)
    reason = f"it is owned by uid {NOBODY}, not root; run chown root on it"
    assert errors(tmp_path / "etc") == refused_everywhere(path, prog, reason)


@ROOT_ONLY
def test_a_program_in_a_directory_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    prog = program(tmp_path / "home" / "check")
    os.chown(tmp_path / "home", NOBODY, NOBODY)
    path = policy_running(tmp_path / "etc", prog)
    reason = f"{tmp_path / 'home'} is owned by uid {NOBODY}, not root; run chown root on it"
    assert errors(tmp_path / "etc") == refused_everywhere(path, prog, reason)


# --- directories and policy files --------------------------------------------------------


def test_a_policies_directory_group_can_write_is_refused_as_a_whole(tmp_path: Path) -> None:
    write(tmp_path / "host-supervisor.yaml", "log_level: debug\n")
    write(tmp_path / "policies.d" / "web.yaml", "unit: web.service\n")
    (tmp_path / "policies.d").chmod(0o775)
    loaded = load_config(tmp_path)
    assert [str(e) for e in loaded.errors] == [
        f"{tmp_path / 'policies.d'}:1:1: refused: {tmp_path / 'policies.d'} is writable by "
        "group (mode 0775); run chmod go-w on it; nothing in it is used"
    ]
    assert loaded.policies == {}
    assert loaded.main.log_level == "debug"  # the main config is not in it
    assert loaded.only_refusals


def test_a_config_directory_others_can_write_is_refused_as_a_whole(tmp_path: Path) -> None:
    config = tmp_path / "etc"
    write(config / "host-supervisor.yaml", "log_level: debug\n")
    write(config / "policies.d" / "web.yaml", "unit: web.service\n")
    config.chmod(0o1777)  # the sticky bit does not make the directory itself trusted
    loaded = load_config(config)
    assert [str(e) for e in loaded.errors] == [
        f"{config}:1:1: refused: {config} is writable by group and others (mode 1777); "
        "run chmod go-w on it; nothing in it is used"
    ]
    assert (loaded.policies, loaded.main.log_level, loaded.main_ok) == ({}, "info", False)
    assert loaded.only_refusals


@ROOT_ONLY
def test_a_policies_directory_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "policies.d" / "web.yaml", "unit: web.service\n")
    os.chown(tmp_path / "policies.d", NOBODY, NOBODY)
    assert errors(tmp_path) == [
        f"{tmp_path / 'policies.d'}:1:1: refused: {tmp_path / 'policies.d'} is owned by uid "
        f"{NOBODY}, not root; run chown root on it; nothing in it is used"
    ]


def test_a_linked_policy_leading_to_an_unsafe_place_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "drop" / "web.yaml", "unit: web.service\n")
    (tmp_path / "drop").chmod(0o777)
    (tmp_path / "etc" / "policies.d").mkdir(parents=True)
    link = tmp_path / "etc" / "policies.d" / "web.yaml"
    link.symlink_to(target)
    loaded = load_config(tmp_path / "etc")
    assert [str(e) for e in loaded.errors] == [
        f"{link}:1:1: refused: {target.parent} is writable by group and others (mode 0777) "
        "without the sticky bit; run chmod go-w on it"
    ]
    assert loaded.policies == {}


def test_a_mistake_is_not_a_refusal(tmp_path: Path) -> None:
    write(tmp_path / "policies.d" / "web.yaml", "unit: web\n")
    assert not load_config(tmp_path).only_refusals


# --- who is trusted ----------------------------------------------------------------------


def test_when_not_root_the_current_user_is_trusted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = program(tmp_path / "mine" / "check")
    user = os.geteuid()
    if user == 0:  # play a user: give them the directory and the program
        user = 4242
        os.chown(tmp_path / "mine", user, user)
        os.chown(prog, user, user)
    monkeypatch.setattr(os, "geteuid", lambda: user)
    assert trusted_owner(0) and trusted_owner(user) and not trusted_owner(user + 1)
    assert path_refusal(str(prog)) is None

    monkeypatch.setattr(os, "geteuid", lambda: user + 1)  # someone else's files
    refusal = path_refusal(str(prog))
    assert refusal is not None
    assert refusal.endswith(
        f"is owned by uid {user}, neither root nor the user running host-supervisor "
        f"(uid {user + 1}); run chown root on it"
    )
