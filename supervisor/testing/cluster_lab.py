"""The cluster lab: several systemd labs joined by a bridge, each running an etcd member.

Each host is a :class:`~supervisor.testing.lab.Lab` (its own pid, mount, uts and network
namespaces) whose ``eth0`` is one end of a veth pair; the other end sits on a bridge in a
network namespace of the fixture's own (:mod:`supervisor.testing.cluster_net`). Host
``i`` has the ``i+1``-th address of the subnet and its name as hostname. Every address is
inside namespaces the fixture made: nothing reaches the host's network or leaves the
machine.

The fixture can make the faults a cluster must survive: cut a host off from the others
(:meth:`ClusterLab.partition`, undone by :meth:`ClusterLab.heal`), power a host off
abruptly (:meth:`ClusterLab.kill_host`), SIGSTOP a unit's main process
(:meth:`ClusterLab.sigstop`) and SIGKILL etcd's raft leader
(:meth:`ClusterLab.kill_etcd_leader`). After :meth:`ClusterLab.poweroff` no process,
namespace, link, cgroup or file of it is left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

from supervisor.testing.cluster_net import LAB_IFNAME, Hub
from supervisor.testing.lab import Lab, LabError, LabUnavailable, lab_unavailable_reason

DAEMON_UNIT = "host-supervisor.service"
ETCD_UNIT = "etcd-member.service"
ETCD_BIN = "/usr/bin/etcd"
ETCDCTL_BIN = "/usr/bin/etcdctl"
CLIENT_PORT = 2379
PEER_PORT = 2380
#: Inside each lab: its /run is a private tmpfs, gone with the lab.
ETCD_DATA_DIR = "/run/etcd-member"

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def etcd_unit(
    name: str, address: str, initial_cluster: str, cluster_token: str, *, log_level: str = "warn"
) -> str:
    """The ``etcd-member.service`` of one host: Debian's etcd, lab timings (a heartbeat of
    100 ms, elections after 1 s), restarted 3 s after it is killed: by then the others
    have elected a leader (a member restarted sooner may win the election again)."""
    peer = f"http://{address}:{PEER_PORT}"
    argv = [
        ETCD_BIN,
        f"--name={name}",
        f"--data-dir={ETCD_DATA_DIR}",
        f"--listen-client-urls=http://{address}:{CLIENT_PORT},http://127.0.0.1:{CLIENT_PORT}",
        f"--advertise-client-urls=http://{address}:{CLIENT_PORT}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={initial_cluster}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={cluster_token}",
        "--heartbeat-interval=100",
        "--election-timeout=1000",
        "--logger=zap",
        "--log-outputs=stderr",
        f"--log-level={log_level}",
    ]
    return f"""\
[Unit]
Description=etcd member {name} of the cluster lab

[Service]
Type=notify
ExecStart={" ".join(argv)}
Restart=on-failure
RestartSec=3s
TimeoutStartSec=60
TimeoutStopSec=10
LimitNOFILE=65536
"""


class ClusterLab:
    """Booted labs named ``hosts`` on one bridge; a context manager (boot, then poweroff).

    ``keep`` is passed to each :class:`Lab` (directories under /tmp the labs must see).
    A killed host stays gone for the rest of the fixture's life.
    """

    def __init__(
        self,
        hosts: Sequence[str] = ("host-a", "host-b", "host-c"),
        *,
        subnet: str = "10.77.0.0/24",
        keep: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        if not hosts or len(set(hosts)) != len(hosts):
            raise ValueError(f"give distinct host names: {list(hosts)!r}")
        for host in hosts:
            if not _HOSTNAME.match(host):
                raise ValueError(f"not a host name: {host!r}")
        self._network = ipaddress.IPv4Network(subnet)
        if self._network.num_addresses < len(hosts) + 2:
            raise ValueError(f"{subnet} has no room for {len(hosts)} hosts")
        self._hosts = tuple(hosts)
        self._labs = {host: Lab(keep=keep) for host in hosts}
        self._hub = Hub()
        self._partitioned: set[str] = set()
        self._killed: set[str] = set()
        #: ``--initial-cluster-token``: unique to this fixture
        self.cluster_token = f"clab-{uuid.uuid4().hex[:12]}"

    # -- life cycle -------------------------------------------------------------------

    def boot(self, timeout: float = 30.0) -> Self:
        """Boot every lab, plug it into the bridge and name it; returns the cluster."""
        reason = lab_unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        self._killed.clear()
        try:
            self._hub.start()
            for host in self._hosts:
                lab = self._labs[host].boot(timeout=timeout)
                self._hub.plug(self.port(host), lab.pid)
                cidr = f"{self.address(host)}/{self._network.prefixlen}"
                lab.run("ip", "address", "add", cidr, "dev", LAB_IFNAME)
                lab.run("ip", "link", "set", LAB_IFNAME, "up")
                lab.run("hostname", host)
        except BaseException:
            with contextlib.suppress(Exception):
                self.poweroff()
            raise
        return self

    def poweroff(self, timeout: float = 10.0) -> None:
        """Power every lab off (together), then end the hub: everything is gone after.

        Raises :class:`LabError` naming what could not be cleaned up.
        """
        problems: list[str] = []
        booted = [h for h in self._hosts if self._labs[h].unshare_pid is not None]
        with ThreadPoolExecutor(max_workers=max(1, len(booted))) as pool:
            futures = {h: pool.submit(self._power_off, h, timeout) for h in booted}
        for host, future in futures.items():
            if (exc := future.exception()) is not None:
                problems.append(f"{host}: {exc}")
        self._hub.stop()
        self._partitioned.clear()
        if problems:
            raise LabError("cluster lab teardown: " + "; ".join(problems))

    def __enter__(self) -> Self:
        if not self._hub.running:
            self.boot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.poweroff()

    # -- hosts ------------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[str, ...]:
        return self._hosts

    @property
    def hub(self) -> Hub:
        """The namespace with the bridge; :meth:`port` names a host's port on it."""
        return self._hub

    def port(self, host: str) -> str:
        """The hub side of ``host``'s veth pair (``vh0`` for the first host)."""
        return f"vh{self._index(host)}"

    def alive(self) -> list[str]:
        """The hosts not killed, in order."""
        return [h for h in self._hosts if h not in self._killed]

    def connected(self) -> list[str]:
        """The hosts alive and not partitioned, in order."""
        return [h for h in self.alive() if h not in self._partitioned]

    def address(self, host: str) -> str:
        """The host's address on the bridge (``10.77.0.1`` for the first host)."""
        return str(self._network[self._index(host) + 1])

    def lab(self, host: str) -> Lab:
        self._index(host)
        return self._labs[host]

    def run(
        self,
        host: str,
        *argv: str | Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`Lab.run` in that host."""
        return self.lab(host).run(*argv, check=check, timeout=timeout, input=input, env=env)

    # -- faults -----------------------------------------------------------------------

    def partition(self, host: str) -> None:
        """Cut ``host`` off from every other host (its port leaves the bridge; its link
        stays up and its loopback works). :meth:`heal` undoes it."""
        self._need_alive(host)
        self._hub.unplug(self.port(host))
        self._partitioned.add(host)

    def heal(self, host: str | None = None) -> None:
        """Plug ``host`` (every partitioned host when None) back into the bridge."""
        for name in [host] if host is not None else sorted(self._partitioned):
            self._need_alive(name)
            self._hub.replug(self.port(name))
            self._partitioned.discard(name)

    def kill_host(self, host: str, timeout: float = 10.0) -> None:
        """Power ``host`` off abruptly: SIGKILL its systemd, which takes every process of
        the lab's pid namespace with it (the kernel kills them), then clean up after it
        (cgroups, shared directory, veth). The others see the peer vanish, no goodbye."""
        lab = self._need_alive(host)
        with contextlib.suppress(ProcessLookupError):
            os.kill(lab.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while lab.running and time.monotonic() < deadline:
            time.sleep(0.01)
        self._killed.add(host)
        self._partitioned.discard(host)
        try:
            lab.poweroff(timeout=timeout)
        finally:
            self._hub.remove(self.port(host))

    def sigstop(self, host: str, unit: str = DAEMON_UNIT) -> int:
        """SIGSTOP the main process of ``unit`` in ``host``; returns its PID (in the lab)."""
        return self._signal_main(host, unit, "SIGSTOP")

    def sigcont(self, host: str, unit: str = DAEMON_UNIT) -> int:
        """SIGCONT the main process of ``unit`` in ``host``; returns its PID (in the lab)."""
        return self._signal_main(host, unit, "SIGCONT")

    # -- etcd -------------------------------------------------------------------------

    def endpoints(self, hosts: Sequence[str] | None = None) -> list[str]:
        """etcd's client URLs, ``http://ADDRESS:2379``, of ``hosts`` (default: all)."""
        return [f"http://{self.address(h)}:{CLIENT_PORT}" for h in hosts or self._hosts]

    def initial_cluster(self) -> str:
        return ",".join(f"{h}=http://{self.address(h)}:{PEER_PORT}" for h in self._hosts)

    def start_etcd(self, timeout: float = 60.0) -> None:
        """Install and start ``etcd-member.service`` in every host; wait until healthy."""
        members = self.alive()
        for host in members:
            unit = etcd_unit(host, self.address(host), self.initial_cluster(), self.cluster_token)
            self.lab(host).install_unit(ETCD_UNIT, unit)
        # --no-block: a member is ready (Type=notify) only once a quorum has started
        for host in members:
            self.lab(host).systemctl("start", "--no-block", ETCD_UNIT)
        self.wait_etcd_healthy(timeout=timeout)

    def etcdctl(
        self,
        host: str,
        *args: str,
        endpoints: Sequence[str] | None = None,
        check: bool = True,
        timeout: float = 15.0,
    ) -> subprocess.CompletedProcess[str]:
        """``etcdctl ARGS`` run inside ``host`` against ``endpoints`` (default: every
        host's bridge address), with short dial and command timeouts."""
        eps = ",".join(endpoints if endpoints is not None else self.endpoints())
        argv = [ETCDCTL_BIN, f"--endpoints={eps}", "--dial-timeout=1s", "--command-timeout=3s"]
        return self.run(host, *argv, *args, check=check, timeout=timeout)

    def etcd_healthy(self, hosts: Sequence[str] | None = None) -> bool:
        """Whether the members of ``hosts`` (default: the connected hosts) are all healthy,
        as the first of them sees them over the bridge addresses."""
        names = list(hosts) if hosts is not None else self.connected()
        if not names:
            raise LabError("no host to ask about etcd's health")
        health = ("endpoint", "health")
        proc = self.etcdctl(names[0], *health, endpoints=self.endpoints(names), check=False)
        return proc.returncode == 0

    def wait_etcd_healthy(self, hosts: Sequence[str] | None = None, timeout: float = 30.0) -> None:
        """Wait until :meth:`etcd_healthy`; AssertionError on timeout."""
        names = list(hosts) if hosts is not None else self.connected()
        if not names:
            raise LabError("no host to ask about etcd's health")
        self.lab(names[0]).wait_for(
            lambda: self.etcd_healthy(names),
            timeout=timeout,
            interval=0.2,
            what=f"etcd healthy on {', '.join(names)}",
        )

    def etcd_status(self, via: str | None = None) -> dict[str, dict[str, Any]]:
        """``etcdctl endpoint status`` of the connected members as ``via`` (default: the
        first connected host) sees them: host -> its status (members that do not answer
        are left out)."""
        hosts = self.connected()
        if not hosts:
            raise LabError("no connected host to ask about etcd")
        by_endpoint = dict(zip(self.endpoints(hosts), hosts, strict=True))
        status = ("endpoint", "status", "-w", "json")
        proc = self.etcdctl(via or hosts[0], *status, endpoints=list(by_endpoint), check=False)
        out = proc.stdout
        try:
            entries = json.loads(out) if out.strip() else []
        except json.JSONDecodeError as exc:
            raise LabError(f"etcdctl endpoint status printed no JSON: {out!r}") from exc
        return {by_endpoint[e["Endpoint"]]: e["Status"] for e in entries}

    def etcd_leader(self) -> str:
        """The host whose member is the raft leader, as the connected members see it (of
        two that say so, the one of the higher term: the other has not heard yet)."""
        leaders = [
            (int(status.get("raftTerm", 0)), host)
            for host, status in self.etcd_status().items()
            # etcd's JSON leaves zero out: a member without a leader has no "leader"
            if status.get("leader") and status["leader"] == status["header"]["member_id"]
        ]
        if not leaders:
            raise LabError("no etcd member says it is the leader")
        return max(leaders)[1]

    def kill_etcd_leader(self) -> str:
        """SIGKILL the leader's etcd (systemd restarts it 3 s later); returns the
        host it ran on."""
        self.wait_etcd_healthy()  # a member killed earlier may still be rejoining
        leader = self.etcd_leader()
        self.lab(leader).systemctl("kill", "--signal=SIGKILL", ETCD_UNIT)
        return leader

    # -- internals --------------------------------------------------------------------

    def _index(self, host: str) -> int:
        try:
            return self._hosts.index(host)
        except ValueError:
            raise KeyError(f"no host {host!r} in this cluster lab: {self._hosts}") from None

    def _need_alive(self, host: str) -> Lab:
        lab = self.lab(host)
        if host in self._killed or not lab.running:
            raise LabError(f"{host} is not running (killed or never booted)")
        return lab

    def _power_off(self, host: str, timeout: float) -> None:
        lab = self._labs[host]
        if lab.running:
            # A stopped etcd leader first hands its leadership over, waiting seconds for
            # members that are stopping too: its data goes with the lab anyway.
            with contextlib.suppress(subprocess.SubprocessError, LabError):
                lab.run("systemctl", "kill", "--signal=SIGKILL", ETCD_UNIT, check=False, timeout=5)
        lab.poweroff(timeout)

    def _signal_main(self, host: str, unit: str, signame: str) -> int:
        lab = self._need_alive(host)
        pid = int(lab.show(unit, "MainPID")["MainPID"])
        if pid == 0:
            raise LabError(f"{unit} has no main process in {host}")
        lab.systemctl("kill", "--kill-who=main", f"--signal={signame}", unit)
        return pid
