"""`validate` for clustered policies against a real etcd on loopback: this host must be
listed (an error at cluster.hosts), hosts no daemon registered are warnings, and an
etcd that does not answer is a warning, not a failure."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.commands.validate import validate_command
from supervisor.etcd import EtcdClient
from supervisor.testing.etcd_server import EtcdServer, free_port
from tests.integration.test_etcd_client import require_etcd
from tests.unit.test_config_loader import policy, write


@pytest.fixture(scope="module")
def server() -> Iterator[EtcdServer]:
    require_etcd()
    with EtcdServer("validate") as member:
        asyncio.run(_register(member.endpoint, "host-b"))
        yield member


async def _register(endpoint: str, host: str) -> None:
    async with EtcdClient([endpoint]) as client:
        await client.put(f"/host-supervisor/hosts/{host}", "{}")


def config(tmp_path: Path, endpoint: str, me: str) -> Path:
    write(tmp_path / "host-supervisor.yaml", f"cluster:\n  endpoints: [{endpoint}]\n  host: {me}\n")
    return policy(
        tmp_path, "db.yaml", "unit: db.service\ncluster:\n  hosts: [host-a, host-b, host-c]\n"
    )


def validate(directory: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = validate_command(directory, out)
    return code, out.getvalue().splitlines()


def test_hosts_no_daemon_registered_are_warnings(tmp_path: Path, server: EtcdServer) -> None:
    path = config(tmp_path, server.endpoint, "host-a")
    code, lines = validate(tmp_path)
    assert code == 0
    assert lines == [
        f"{path}:3:27: cluster.hosts[2]: warning: no host-supervisor on 'host-c' is registered "
        "in etcd (not running, or named otherwise there)",
        "OK: 1 policy for 1 unit",
    ]


def test_this_host_not_listed_is_an_error(tmp_path: Path, server: EtcdServer) -> None:
    path = config(tmp_path, server.endpoint, "host-z")
    code, lines = validate(tmp_path)
    assert code == 1
    assert lines[0] == (
        f"{path}:3:10: cluster.hosts: this host (host-z) is not listed (host-a, host-b, host-c): "
        "db.service would never run here"
    )


def test_etcd_unreachable_is_a_warning_naming_the_endpoint(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    config(tmp_path, endpoint, "host-a")
    code, lines = validate(tmp_path)
    assert code == 0
    assert lines[0].startswith("warning: etcd not reached, cluster not checked:")
    assert endpoint in lines[0]
