"""The main config's http: listener and node_exporter: textfile, as the loader sees them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.config.http import is_loopback, split_listen
from supervisor.testing.etcd_server import make_tls
from tests.unit.test_config_loader import issues, write


def main(config: Path, text: str) -> Path:
    return write(config / "host-supervisor.yaml", text)


def test_no_listener_by_default(tmp_path: Path) -> None:
    loaded = load_config(tmp_path)
    assert loaded.main.http.listen is None
    assert loaded.main.node_exporter is None


def test_a_loopback_listener_needs_nothing_else(tmp_path: Path) -> None:
    main(tmp_path, "http: {listen: '127.0.0.1:9810'}\n")
    loaded = load_config(tmp_path)
    assert loaded.errors == []
    assert loaded.main.http.listen == "127.0.0.1:9810"


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("127.0.0.1:9810", ("127.0.0.1", 9810)),
        ("[::1]:1", ("::1", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_split_listen(text: str, split: tuple[str, int]) -> None:
    assert split_listen(text) == split


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.1", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1", "expected ADDRESS:PORT like 127.0.0.1:9810"),
        ("127.0.0.1:0", "port 0 is not between 1 and 65535"),
        ("127.0.0.1:70000", "port 70000 is not between 1 and 65535"),
        ("example.com:80", "'example.com' is not an IP address"),
        ("::1:80", "expected ADDRESS:PORT"),
    ],
)
def test_bad_listen_addresses_are_named_at_their_line(
    tmp_path: Path, listen: str, message: str
) -> None:
    main(tmp_path, f"log_level: info\nhttp:\n  listen: '{listen}'\n")
    found = issues(tmp_path)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'host-supervisor.yaml'}:3:11: http.listen: ")
    assert message in found[0]


def test_a_listener_beyond_loopback_is_refused_without_tls_and_allow(tmp_path: Path) -> None:
    main(tmp_path, "http:\n  listen: '0.0.0.0:9810'\n")
    (found,) = issues(tmp_path)
    assert found == (
        f"{tmp_path / 'host-supervisor.yaml'}:2:11: http.listen: 0.0.0.0:9810 is reachable "
        "from other hosts: set tls (cert and key) and allow (the client networks) to serve "
        "it beyond this host, or listen on 127.0.0.1:9810"
    )
    main(tmp_path, "http:\n  listen: '[::]:9810'\n  allow: [10.0.0.0/8]\n")
    (found,) = issues(tmp_path)
    assert "set tls (cert and key) to serve it" in found


def test_a_listener_beyond_loopback_with_tls_and_allow_is_accepted(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    tls = make_tls(tmp_path / "tls")
    config = tmp_path / "etc"
    main(
        config,
        f"http:\n  listen: '0.0.0.0:9810'\n"
        f"  tls: {{cert: {tls.server_cert}, key: {tls.server_key}}}\n"
        "  allow: [10.1.2.3/24, '::1']\n",
    )
    loaded = load_config(config)
    assert loaded.errors == []
    assert loaded.main.http.allow == ("10.1.2.0/24", "::1/128")  # normalised networks


def test_tls_files_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    main(
        tmp_path,
        "http:\n  listen: '127.0.0.1:9810'\n"
        "  tls: {cert: /nonexistent/c.pem, key: /etc/hostname}\n",
    )
    (found,) = issues(tmp_path)
    assert found == (
        f"{tmp_path / 'host-supervisor.yaml'}:3:15: http.tls.cert: "
        "cert file /nonexistent/c.pem does not exist"
    )


def test_bad_allow_entries_and_orphan_settings(tmp_path: Path) -> None:
    main(tmp_path, "http:\n  listen: '127.0.0.1:9810'\n  allow: [10.0.0.0/8, nonsense]\n")
    (found,) = issues(tmp_path)
    assert ":3:23: http.allow[1]: expected an address or network" in found
    main(tmp_path, "http:\n  allow: [10.0.0.0/8]\n")
    (found,) = issues(tmp_path)
    assert "http.allow: allow needs listen: set the address too" in found


def test_node_exporter_textfile(tmp_path: Path) -> None:
    path = "/var/lib/node_exporter/textfile_collector/host-supervisor.prom"
    main(tmp_path, f"node_exporter: {{textfile: {path}}}\n")
    loaded = load_config(tmp_path)
    assert loaded.errors == []
    assert loaded.main.node_exporter is not None
    assert (loaded.main.node_exporter.textfile, loaded.main.node_exporter.interval) == (path, 15)
    main(tmp_path, "node_exporter:\n  textfile: /var/lib/x.txt\n")
    (found,) = issues(tmp_path)
    assert ":2:13: node_exporter.textfile: node_exporter reads only files ending in .prom" in found
    main(tmp_path, "node_exporter:\n  textfile: /var/lib/x.prom\n  interval: 100ms\n")
    (found,) = issues(tmp_path)
    assert ":3:13: node_exporter.interval: interval must be from 1s to 1h, got 0.1s" in found
