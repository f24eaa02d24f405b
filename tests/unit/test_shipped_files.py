"""The files we ship in etc/ and units/ are valid as shipped."""

from __future__ import annotations

import configparser
import shutil
from pathlib import Path

from supervisor.config import load_config

ROOT = Path(__file__).parents[2]
ETC = ROOT / "etc" / "host-supervisor"


def test_shipped_main_config_is_valid_and_sends_nothing(tmp_path: Path) -> None:
    loaded = load_config(ETC)
    assert loaded.errors == []
    assert loaded.main.alerts.channels == {}
    assert loaded.policies == {}  # examples are not active until copied


def test_every_example_policy_is_valid_once_activated(tmp_path: Path) -> None:
    examples = sorted((ETC / "policies.d").glob("*.yaml.example"))
    assert examples
    (tmp_path / "policies.d").mkdir()
    for example in examples:
        target = tmp_path / "policies.d" / example.name.removesuffix(".example")
        shutil.copyfile(example, target)
        target.chmod(0o644)
    loaded = load_config(tmp_path)
    assert [str(e) for e in loaded.errors] == []
    assert len(loaded.policies) == len(examples)


def test_the_unit_is_a_notify_service_with_a_watchdog_and_a_reload_that_waits() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "units" / "host-supervisor.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"]
    # `reload` waits for the daemon's verdict, so a refused policy fails systemctl reload.
    assert service["ExecReload"] == "/usr/bin/host-supervisor reload"
    assert "dbus.socket" in unit["Unit"]["After"]
