"""`discover`'s mapping from systemd's facts about a unit to an observe-only policy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from supervisor.config.discovery import (
    Listen,
    UnitFacts,
    discovered_policy,
    policy_file_name,
    tcp_target,
)
from supervisor.config.main import GuardConfig
from supervisor.config.policy import Policy

GUARD_DEFAULTS = GuardConfig().protected


def policy(facts: UnitFacts) -> tuple[Policy, dict[str, Any], str]:
    text = discovered_policy(facts, GUARD_DEFAULTS).text
    document = yaml.safe_load(text)
    return Policy.model_validate(document), document, text


def test_a_plain_unit_is_observed_with_a_restart_only_ladder() -> None:
    parsed, document, text = policy(UnitFacts("cron.service", "Regular background jobs"))
    assert parsed.unit == "cron.service" and parsed.mode == "observe"
    assert parsed.checks == () and parsed.recovery.ladder == ("restart",)
    assert document["mode"] == "observe"  # written out, so promoting is editing one key
    assert text.startswith("# Written by `host-supervisor discover`")
    assert "(Regular background jobs)" in text


def test_promoting_is_one_key() -> None:
    _, document, _ = policy(UnitFacts("cron.service"))
    promoted = Policy.model_validate({**document, "mode": "act"})
    assert promoted.mode == "act"


def test_exec_reload_enables_the_reload_rung() -> None:
    parsed, _, _ = policy(UnitFacts("nginx.service", can_reload=True))
    assert parsed.recovery.ladder == ("restart", "reload")


def test_socket_listeners_become_loopback_tcp_checks() -> None:
    listens = (
        Listen("web.socket", "Stream", "0.0.0.0:80"),
        Listen("web.socket", "Stream", "[::]:80"),
        Listen("web.socket", "Stream", "127.0.0.1:8080"),
        Listen("web.socket", "Stream", "0.0.0.0:80"),  # twice: one check
        Listen("web.socket", "Stream", "/run/web.sock"),
        Listen("web.socket", "Datagram", "0.0.0.0:53"),
        Listen("web.socket", "Stream", "192.0.2.7:443"),
    )
    parsed, _, text = policy(UnitFacts("web.service", listens=listens))
    assert [(c.name, c.tcp.host, c.tcp.port) for c in parsed.checks if c.tcp] == [
        ("tcp-80", "127.0.0.1", 80),
        ("tcp6-80", "::1", 80),
        ("tcp-8080", "127.0.0.1", 8080),
    ]
    assert "# Not checked (not a loopback TCP address): web.socket Stream /run/web.sock" in text
    assert "web.socket Datagram 0.0.0.0:53" in text
    assert "web.socket Stream 192.0.2.7:443" in text


@pytest.mark.parametrize(
    ("kind", "address", "target"),
    [
        ("Stream", "0.0.0.0:22", ("127.0.0.1", 22)),
        ("Stream", "[::]:22", ("::1", 22)),
        ("Stream", "[::1]:6379", ("::1", 6379)),
        ("Stream", "127.0.0.2:25", ("127.0.0.2", 25)),
        ("Stream", "10.0.0.1:80", None),
        ("Stream", "[fe80::1%eth0]:80", None),
        ("Stream", "/run/x.sock", None),
        ("Stream", "@abstract", None),
        ("Stream", "vsock:2:1234", None),
        ("Stream", "0.0.0.0:0", None),
        ("Datagram", "0.0.0.0:53", None),
    ],
)
def test_tcp_target(kind: str, address: str, target: tuple[str, int] | None) -> None:
    assert tcp_target(Listen("s.socket", kind, address)) == target


def test_a_unit_with_its_own_restart_is_noted_and_left_to_systemd() -> None:
    _, _, text = policy(UnitFacts("ssh.service", restart="on-failure"))
    assert "# Restart=on-failure: systemd restarts it itself" in text
    _, _, plain = policy(UnitFacts("ssh.service", restart="no"))
    assert "Restart=" not in plain


def test_a_database_the_guard_protects_is_marked_protected() -> None:
    found = discovered_policy(UnitFacts("redis-server.service"), GUARD_DEFAULTS)
    assert "# Protected (guard.protected matches 'redis*')" in found.text
    assert found.warnings == ()


def test_a_database_the_guard_does_not_protect_is_a_warning() -> None:
    found = discovered_policy(UnitFacts("cassandra.service"), GUARD_DEFAULTS)
    assert found.warnings == (
        "cassandra.service looks like a database but guard.protected does not match it: "
        "add it there before setting mode: act, or the daemon may restart it",
    )
    assert "# Warning: cassandra.service looks like a database" in found.text
    mine = discovered_policy(UnitFacts("cassandra.service"), ("cassandra*",))
    assert mine.warnings == () and "matches 'cassandra*'" in mine.text


def test_a_description_cannot_break_out_of_its_comment() -> None:
    parsed, document, _ = policy(UnitFacts("x.service", "evil\nmode: act\r\n"))
    assert parsed.mode == "observe" and "evil" not in str(document)


def test_policy_file_names() -> None:
    assert policy_file_name("nginx.service") == "nginx.yaml"
    assert policy_file_name("php8.2-fpm.service") == "php8.2-fpm.yaml"


def test_it_alerts_every_channel_of_the_main_config() -> None:
    found = discovered_policy(UnitFacts("cron.service"), GUARD_DEFAULTS, ("ops", "pager"))
    assert Policy.model_validate(yaml.safe_load(found.text)).alerts == ("ops", "pager")
    _, document, text = policy(UnitFacts("cron.service"))
    assert "alerts" not in document
    assert "# alerts: no channel in host-supervisor.yaml yet" in text
