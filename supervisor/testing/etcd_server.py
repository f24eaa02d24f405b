"""A real etcd for tests: members as subprocesses on loopback, and TLS material for them.

:class:`EtcdServer` runs one member of Debian's ``/usr/bin/etcd`` on 127.0.0.1 with free
ports and its data in a directory of its own; :func:`etcd_cluster` starts several as one
cluster; :func:`make_tls` makes a CA, a server certificate for 127.0.0.1 and a client
certificate with the ``openssl`` command. Members started from the main thread die with
the test process (``PR_SET_PDEATHSIG``), so even a killed test run leaves no etcd behind;
:meth:`EtcdServer.close` (or leaving the ``with`` block) stops it and removes its files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from supervisor.testing.lab_boot import in_main_thread, set_pdeathsig

ETCD = Path("/usr/bin/etcd")
#: Where members keep their data (not /tmp: a lab booting without its own /tmp empties it).
DATA_PARENT = Path("/var/tmp")
#: Faster elections than etcd's defaults (100 ms, 1 s) would make a busy test machine flap.
HEARTBEAT_MS = 100
ELECTION_MS = 1000


def etcd_unavailable_reason() -> str | None:
    """Why no real etcd can run here, or None when it can."""
    if not os.access(ETCD, os.X_OK):
        return f"the real-etcd tests need {ETCD} (Debian's etcd-server)"
    return None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made by :func:`make_tls`."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_tls(directory: Path) -> TlsFiles:
    """A CA, a server certificate (IP 127.0.0.1, DNS localhost) and a client certificate
    signed by it, with their keys (EC P-256, valid for a day), in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=host-supervisor test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    leaves = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extensions in leaves.items():
        (directory / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "authorityKeyIdentifier=keyid\n" + extensions
        )
        _openssl(
            "req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=host-supervisor test {name}", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=directory,
        )  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EtcdServer:
    """One etcd member on 127.0.0.1.

    Alone by default; ``initial_cluster`` (name -> peer URL, this member's included) and
    ``peer_port`` make it one of a cluster (see :func:`etcd_cluster`). With ``tls`` the
    client URL is https and clients must show a certificate signed by the CA; peers talk
    plain http on loopback.
    """

    def __init__(
        self,
        name: str = "m1",
        *,
        tls: TlsFiles | None = None,
        initial_cluster: Mapping[str, str] | None = None,
        peer_port: int | None = None,
        cluster_token: str | None = None,
        directory: Path | None = None,
    ) -> None:
        self.name = name
        self.tls = tls
        self.client_port = free_port()
        self.peer_port = peer_port or free_port()
        scheme = "https" if tls else "http"
        self.client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.initial_cluster = dict(initial_cluster or {name: self.peer_url})
        self.cluster_token = cluster_token or f"test-{secrets.token_hex(4)}"
        self._own_directory = directory is None
        self.directory = directory or Path(
            tempfile.mkdtemp(prefix="host-supervisor-etcd-", dir=DATA_PARENT)
        )
        self.data_dir = self.directory / f"{name}.etcd"
        self.log_path = self.directory / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The client URL, for EtcdClient."""
        return self.client_url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        cluster = ",".join(f"{name}={url}" for name, url in self.initial_cluster.items())
        args = [
            str(ETCD),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.cluster_token}",
            f"--heartbeat-interval={HEARTBEAT_MS}",
            f"--election-timeout={ELECTION_MS}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.tls is not None:
            args += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        return args

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> Self:
        """Start the member (again, on the same data, after stop or kill); with ``wait``,
        return once it reports healthy (which needs a quorum)."""
        if self.running:
            return self
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=set_pdeathsig if in_main_thread() else None,
            )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until ``/health`` says true; RuntimeError with the log's tail if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"etcd {self.name} exited:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd {self.name} not healthy after {timeout:g} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        context: ssl.SSLContext | None = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=self.tls.ca)
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with urllib.request.urlopen(
                self.client_url + "/health", timeout=1.0, context=context
            ) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """SIGSTOP: the member keeps its sockets but answers nothing (a hung host)."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)  # a paused member cannot handle SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL and reap: the member dies as in a power cut."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def close(self) -> None:
        """Kill the member and remove its files (if the directory was its own)."""
        self.kill()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def etcd_cluster(n: int = 3, *, tls: TlsFiles | None = None) -> Iterator[list[EtcdServer]]:
    """``n`` members forming one cluster on loopback, healthy on entry, gone on exit."""
    directory = Path(tempfile.mkdtemp(prefix="host-supervisor-etcd-", dir=DATA_PARENT))
    names = [f"m{i + 1}" for i in range(n)]
    peers = {name: f"http://127.0.0.1:{free_port()}" for name in names}
    token = f"test-{secrets.token_hex(4)}"
    members = [
        EtcdServer(
            name,
            tls=tls,
            initial_cluster=peers,
            peer_port=int(peers[name].rsplit(":", 1)[1]),
            cluster_token=token,
            directory=directory,
        )
        for name in names
    ]
    try:
        for member in members:
            member.start(wait=False)
        for member in members:
            member.wait_healthy()
        yield members
    finally:
        for member in members:
            member.close()
        shutil.rmtree(directory, ignore_errors=True)
