"""The witness and its client as units of a cluster lab, and calls to the witness made
from inside a host (its address exists only on the lab's bridge)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor.testing.cluster_lab import ClusterLab
from tests.cluster.witness import DEFAULT_PORT, DEFAULT_WINDOW
from tests.cluster.witness_client import TOKEN_ENV

HERE = Path(__file__).resolve().parent
WITNESS_UNIT = "witness.service"
CLIENT_UNIT = "witness-client.service"


def witness_unit(address: str, port: int = DEFAULT_PORT, window: float = DEFAULT_WINDOW) -> str:
    return f"""\
[Unit]
Description=the cluster tests' witness on {address}:{port}

[Service]
Type=exec
ExecStart=/usr/bin/python3 {HERE / "witness.py"} --listen {address} --port {port} --window {window}
"""


def client_unit(
    witness_url: str,
    *,
    token: int | None = None,
    token_file: str | None = None,
    host: str | None = None,
    log: str | None = None,
    extra: str = "",
) -> str:
    """``witness-client.service``: the token from ``token`` (as the environment the daemon
    would give) or ``token_file``; ``host`` defaults to the lab's hostname."""
    argv = [f"/usr/bin/python3 {HERE / 'witness_client.py'} --witness {witness_url}"]
    if token_file is not None:
        argv.append(f"--token-file {token_file}")
    if host is not None:
        argv.append(f"--host {host}")
    if log is not None:
        argv.append(f"--log {log}")
    env = f"Environment={TOKEN_ENV}={token}\n" if token is not None else ""
    return f"""\
[Unit]
Description=a fenced service of the cluster tests, writing to {witness_url}

[Service]
Type=exec
{env}ExecStart={" ".join(argv)}
{extra}
"""


class WitnessHandle:
    """The witness running as ``witness.service`` on ``host``, called from ``via``."""

    def __init__(self, cluster: ClusterLab, host: str, port: int = DEFAULT_PORT) -> None:
        self.cluster = cluster
        self.host = host
        self.url = f"http://{cluster.address(host)}:{port}"
        self.port = port

    def start(self, window: float = DEFAULT_WINDOW) -> WitnessHandle:
        lab = self.cluster.lab(self.host)
        lab.install_unit(
            WITNESS_UNIT, witness_unit(self.cluster.address(self.host), self.port, window)
        )
        lab.systemctl("restart", WITNESS_UNIT)
        lab.wait_for(lambda: self.report(), timeout=10, what="the witness answering")
        return self

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, via: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """An HTTP call with curl inside ``via`` (default: the witness's host)."""
        argv = ["curl", "-sS", "--max-time", "3", "-X", method, "-w", "\n%{http_code}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        out = self.cluster.run(via or self.host, *argv, self.url + path).stdout
        text, _, status = out.rpartition("\n")
        return int(status), json.loads(text) if text.strip() else {}

    def write(self, host: str, token: int, via: str | None = None) -> tuple[int, dict[str, Any]]:
        return self.call("POST", "/write", {"host": host, "token": token}, via=via)

    def report(self, via: str | None = None) -> dict[str, Any]:
        status, body = self.call("GET", "/report", via=via)
        assert status == 200, (status, body)
        return body

    def reset(self) -> None:
        self.call("POST", "/reset")
