"""The models on their own: defaults, normalisation, and the shapes a key may take."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from supervisor.config import (
    Check,
    Failback,
    Failover,
    HttpProbe,
    MainConfig,
    Policy,
    ProcessProbe,
    Recovery,
)
from supervisor.config.loader import mask_url


def check(**probe: Any) -> Check:
    return Check.model_validate({"name": "c", **probe})


def test_policy_defaults() -> None:
    policy = Policy.model_validate({"unit": "web.service"})
    assert policy.checks == () and policy.alerts == () and policy.failover is None
    assert policy.allow_automatic is False
    assert policy.recovery == Recovery.model_validate({})


def test_recovery_defaults_and_the_default_ladder() -> None:
    plain = Recovery.model_validate({})
    assert plain.ladder == ("restart", "reload")  # nothing to restore from
    assert (plain.cooldown, plain.backoff, plain.max_cooldown) == (300.0, 1.0, 3600.0)
    assert (plain.max_attempts, plain.reset_after, plain.settle) == (3, 3600.0, 10.0)
    with_restore = Recovery.model_validate({"restore": {"paths": ["/etc/web.conf"]}})
    assert with_restore.ladder == ("restart", "reload", "restore")
    assert with_restore.restore is not None
    assert with_restore.restore.source == "last-known-good"
    assert (with_restore.restore.snapshot_after, with_restore.restore.keep) == (600.0, 5)


def test_restore_from_a_directory_and_relative_paths(tmp_path: Path) -> None:
    restore = Recovery.model_validate(
        {"restore": {"paths": ["/etc/web.conf"], "from": str(tmp_path)}}
    ).restore
    assert restore is not None and restore.source == str(tmp_path)
    with pytest.raises(ValidationError, match=r"'etc/web\.conf' is not an absolute path"):
        Recovery.model_validate({"restore": {"paths": ["etc/web.conf"]}})
    with pytest.raises(ValidationError, match="'defaults' is neither last-known-good nor"):
        Recovery.model_validate({"restore": {"paths": ["/etc/x"], "from": "defaults"}})


def test_empty_ladder_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        Recovery.model_validate({"ladder": []})


def test_check_defaults() -> None:
    port = check(tcp={"port": 80})
    assert (port.interval, port.timeout, port.failures, port.successes) == (10.0, 5.0, 3, 2)
    assert (port.start_period, port.critical, port.kind) == (0.0, True, "tcp")
    assert port.probe == port.tcp
    assert port.tcp is not None and port.tcp.host == "127.0.0.1"
    assert port.tcp.send is None and port.tcp.expect is None


def test_unit_probe_may_be_empty_or_null() -> None:
    assert check(unit=None).unit == check(unit={}).unit
    assert check(unit=None).kind == "unit"
    assert check(unit={}).unit is not None
    assert check(unit={"expect": "active"}).probe == check(unit=None).probe


@pytest.mark.parametrize(
    ("given", "ranges"),
    [
        (200, ((200, 200),)),
        ("200-299", ((200, 299),)),
        ([200, 204, "300-399"], ((200, 200), (204, 204), (300, 399))),
        ([[200, 299]], ((200, 299),)),
    ],
)
def test_expect_status_shapes(given: Any, ranges: tuple[tuple[int, int], ...]) -> None:
    probe = HttpProbe.model_validate({"url": "http://127.0.0.1/", "expect_status": given})
    assert probe.expect_status == ranges


def test_http_defaults_and_method_case() -> None:
    probe = HttpProbe.model_validate({"url": "https://[::1]:8443/health", "method": "head"})
    assert probe.method == "HEAD"
    assert probe.expect_status == ((200, 399),)
    assert probe.status_ok(399) and not probe.status_ok(400)
    assert (probe.tls_verify, probe.follow_redirects, probe.headers) == (True, False, {})


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "file:///etc/passwd", "http://"])
def test_http_url_must_have_scheme_and_host(url: str) -> None:
    with pytest.raises(ValidationError, match="URL"):
        HttpProbe.model_validate({"url": url})


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"X-A": "1\r\nX-Injected: 2"}, "line break"),
        ({"X A": "1"}, "not a valid HTTP token"),
        ({"": "1"}, "not a valid HTTP token"),
    ],
)
def test_http_headers_that_cannot_be_sent_are_refused(headers: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        HttpProbe.model_validate({"url": "http://127.0.0.1/", "headers": headers})
    assert HttpProbe.model_validate({"url": "http://a/", "headers": {"X-Ok": "a: b"}}).headers


def test_process_probe_picks_its_target() -> None:
    assert ProcessProbe.model_validate({}).main_pid is True
    by_name = ProcessProbe.model_validate({"name": "nginx"})
    assert (by_name.main_pid, by_name.name) == (False, "nginx")
    by_cmdline = ProcessProbe.model_validate({"cmdline": "worker [0-9]+", "max_cpu": "80%"})
    assert (by_cmdline.main_pid, by_cmdline.max_cpu) == (False, 80.0)
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ProcessProbe.model_validate({"cmdline": "[unclosed"})


def test_memory_and_disk_values(tmp_path: Path) -> None:
    mem = check(memory={"max_rss": "1GiB", "host_max_used": "95%"}).memory
    assert mem is not None and (mem.max_rss, mem.host_max_used) == (1024**3, 95.0)
    disk = check(disk={"path": str(tmp_path), "min_free": "100MB"}).disk
    assert disk is not None
    assert (disk.max_used, disk.min_free, disk.max_inodes_used) == (90.0, 100_000_000, None)


def test_failover_backup_is_normalised_to_a_list() -> None:
    one = Failover.model_validate({"backup": "web-b.service"})
    many = Failover.model_validate({"backup": ["web-b.service", "web-c.service"]})
    assert one.backup == ("web-b.service",)
    assert many.backup == ("web-b.service", "web-c.service")
    assert (one.mode, one.settle, one.after_failures, one.can_recover) == ("cold", 10.0, None, None)
    with pytest.raises(ValidationError, match="at least 1 item"):
        Failover.model_validate({"backup": []})


def test_failback_is_manual_or_a_mapping() -> None:
    assert Failover.model_validate({"backup": "b.service"}).failback == Failback()
    assert Failback().delay == 30.0 and Failback().successes == 2
    manual = Failover.model_validate({"backup": "b.service", "failback": "manual"})
    assert manual.failback == "manual"
    timed = Failover.model_validate({"backup": "b.service", "failback": {"delay": "2m"}})
    assert timed.failback == Failback(delay=120.0, successes=2)


def test_main_config_defaults() -> None:
    main = MainConfig()
    assert main.alerts.channels == {}
    assert (main.alerts.repeat_interval, main.alerts.spool_max) == (3600.0, 1000)
    assert (main.guard.repair_budget.max, main.guard.repair_budget.window) == (5, 900.0)
    assert main.guard.max_concurrent == 3
    assert main.guard.protected == (
        "postgresql*",
        "mysql*",
        "mariadb*",
        "redis*",
        "clickhouse*",
        "etcd*",
        "mongod*",
    )
    assert (main.guard.breaker.failures, main.guard.breaker.open_for) == (5, 60.0)
    flapping = main.guard.flapping
    assert (flapping.window, flapping.high, flapping.low) == (600.0, 50.0, 25.0)
    assert main.checks.max_concurrent_commands == 4
    assert main.control.socket_group is None
    assert main.log_level == "info"


def test_models_are_frozen() -> None:
    policy = Policy.model_validate({"unit": "web.service"})
    with pytest.raises(ValidationError, match="frozen"):
        policy.unit = "other.service"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mailtos://alerts:secret@smtp.example.com?to=ops@example.com", "mailtos://****"),
        ("slack://T000/B000/XXXX", "slack://****"),
        ("slack://", "slack://"),
        ("hunter2", "****"),
    ],
)
def test_mask_url_hides_everything_but_the_scheme(url: str, shown: str) -> None:
    assert mask_url(url) == shown
