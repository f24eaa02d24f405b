"""The `discover` command's writing, with systemd's answer faked: never over an
existing policy, never through a symlink, a dry run writes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from supervisor.commands import discover
from supervisor.commands.discover import Found, discover_command
from supervisor.commands.validate import validate_command
from supervisor.config.discovery import Listen, UnitFacts
from supervisor.errors import BusError

FOUND = Found(
    units=[
        UnitFacts("nginx.service", "web", can_reload=True),
        UnitFacts("cups.service", listens=(Listen("cups.socket", "Stream", "[::]:631"),)),
        UnitFacts("redis-server.service", restart="always"),
    ],
    skipped={"getty@.service": "a template or an instance of one"},
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    async def read_units(address: str | None = None) -> Found:
        return FOUND

    monkeypatch.setattr(discover, "read_units", read_units)
    (tmp_path / "policies.d").mkdir()
    return tmp_path


def run(config: Path, *units: str, dry_run: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = discover_command(config, dry_run=dry_run, units=list(units), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_writes_one_valid_policy_per_unit(config: Path) -> None:
    channels = 'alerts: {channels: {ops: {url: "json://localhost/hook"}}}\n'
    (config / "host-supervisor.yaml").write_text(channels)
    code, out, err = run(config)
    assert (code, err) == (0, "")
    names = sorted(p.name for p in (config / "policies.d").iterdir())
    assert names == ["cups.yaml", "nginx.yaml", "redis-server.yaml"]
    assert "skipped getty@.service: a template or an instance of one" in out
    assert out.rstrip().endswith(
        "3 observe-only policies written; check with `host-supervisor validate`, "
        "then `systemctl reload host-supervisor`"
    )
    report = io.StringIO()
    assert validate_command(config, report) == 0, report.getvalue()
    nginx = config / "policies.d" / "nginx.yaml"
    assert nginx.stat().st_mode & 0o777 == 0o644
    assert "\nalerts: [ops]\n" in nginx.read_text()


def test_never_overwrites_a_policy_file_or_a_unit_with_a_policy(config: Path) -> None:
    policies = config / "policies.d"
    (policies / "nginx.yaml").write_text("unit: other.service\n")  # same file name
    (policies / "my-redis.yaml").write_text("unit: redis-server.service\nmode: act\n")
    code, out, _ = run(config)
    assert code == 0
    assert f"skipped nginx.service: {policies / 'nginx.yaml'} exists (never overwritten)" in out
    assert f"skipped redis-server.service: has a policy in {policies / 'my-redis.yaml'}" in out
    assert (policies / "nginx.yaml").read_text() == "unit: other.service\n"
    names = sorted(p.name for p in policies.iterdir())
    assert names == ["cups.yaml", "my-redis.yaml", "nginx.yaml"]


def test_never_writes_through_a_symlink(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.yaml"
    (config / "policies.d" / "cups.yaml").symlink_to(target)
    code, out, _ = run(config, "cups")
    assert code == 0 and "cups.yaml exists (never overwritten)" in out
    assert not target.exists()


def test_dry_run_prints_and_writes_nothing(config: Path) -> None:
    code, out, _ = run(config, "nginx.service", dry_run=True)
    assert code == 0
    assert f"# would write {config / 'policies.d' / 'nginx.yaml'}:\n# Written by" in out
    assert "unit: nginx.service\nmode: observe\n" in out
    assert "cups" not in out
    assert list((config / "policies.d").iterdir()) == []


def test_an_unknown_unit_is_one_error(config: Path) -> None:
    code, _, err = run(config, "nope", "getty@")
    assert code == 1
    assert err.splitlines() == [
        "getty@.service: no policy discovered: a template or an instance of one",
        "nope.service: no policy discovered: not an enabled service unit",
    ]


def test_no_bus_is_one_line(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_bus(address: str | None = None) -> Found:
        raise BusError("cannot connect to the system bus at unix:path=/nope: refused")

    monkeypatch.setattr(discover, "read_units", no_bus)
    code, out, err = run(config)
    assert (code, out) == (1, "")
    assert err == (
        "host-supervisor discover: cannot connect to the system bus at unix:path=/nope: refused\n"
    )


def test_a_missing_config_directory_is_one_line(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "nope")
    assert code == 1
    assert err == f"host-supervisor discover: config directory {tmp_path / 'nope'} does not exist\n"


def test_a_broken_policy_still_claims_its_unit(config: Path) -> None:
    broken = config / "policies.d" / "web.yaml"
    broken.write_text("unit: nginx.service\nchecks: 3\n")
    code, out, _ = run(config, "nginx")
    assert code == 0
    assert f"skipped nginx.service: has a policy in {broken}" in out
    assert not (config / "policies.d" / "nginx.yaml").exists()


def test_an_untrusted_config_directory_is_refused(config: Path) -> None:
    (config / "policies.d").chmod(0o777)
    code, out, err = run(config)
    assert (code, out) == (1, "")
    assert err.startswith(f"host-supervisor discover: {config / 'policies.d'}:1:1: refused: ")
    assert list((config / "policies.d").iterdir()) == []
