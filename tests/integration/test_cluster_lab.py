"""The lab of three hosts: etcd over the bridge, the faults it can make, the witness.

One cluster for the whole module (booting three labs and an etcd cluster takes seconds);
the tests run in file order, and the last one kills a host for good.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.testing.cluster_lab import ETCD_UNIT, ClusterLab
from tests.cluster.units import CLIENT_UNIT, WitnessHandle, client_unit
from tests.conftest import skip_without_lab

pytestmark = pytest.mark.lab

SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"


def _started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def _identities(pids: list[int]) -> list[tuple[int, int | None]]:
    return [(pid, _started(pid)) for pid in pids]


def _still_alive(identities: list[tuple[int, int | None]]) -> list[int]:
    """The processes of ``identities`` still running (a reused PID is another process)."""
    return [pid for pid, start in identities if start is not None and _started(pid) == start]


def _cgroup_dirs(name: str) -> list[str]:
    return [
        os.path.join(dirpath, name)
        for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup")
        if name in dirnames
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterLab]:
    """Three hosts with etcd; at teardown, checks that nothing of them is left."""
    skip_without_lab()
    lab = ClusterLab().boot()
    try:
        lab.start_etcd()
        yield lab
    finally:
        hub = _identities([lab.hub.pid] if lab.hub.running else [])
        pids = _identities([pid for h in lab.alive() for pid in lab.lab(h).processes()])
        names = [lab.lab(h).shared_dir.name for h in lab.alive()]
        lab.poweroff()
    assert _still_alive(hub) == []
    assert _still_alive(pids) == []
    assert [d for name in names for d in _cgroup_dirs(name)] == []


@pytest.fixture(scope="module")
def witness(cluster: ClusterLab) -> WitnessHandle:
    """The witness on the third host."""
    return WitnessHandle(cluster, cluster.hosts[-1]).start()


def put_ok(cluster: ClusterLab, via: str, key: str, value: str, hosts: list[str]) -> bool:
    proc = cluster.etcdctl(via, "put", key, value, endpoints=cluster.endpoints(hosts), check=False)
    return proc.returncode == 0


def test_each_host_has_its_name_and_address(cluster: ClusterLab) -> None:
    for i, host in enumerate(cluster.hosts):
        assert cluster.run(host, "hostname").stdout.strip() == host
        assert cluster.address(host) == f"10.77.0.{i + 1}"
        out = cluster.run(host, "ip", "-4", "-o", "address", "show", "dev", "eth0").stdout
        assert f"inet 10.77.0.{i + 1}/24" in out
    assert cluster.endpoints() == [f"http://10.77.0.{i}:2379" for i in (1, 2, 3)]


def test_etcd_members_form_one_cluster_seen_from_every_host(cluster: ClusterLab) -> None:
    for host in cluster.hosts:
        health = cluster.etcdctl(host, "endpoint", "health")  # over the bridge addresses
        assert health.stderr.count("is healthy") == 3, health.stderr
        members = cluster.etcdctl(host, "member", "list").stdout
        assert sorted(line.split(", ")[2] for line in members.splitlines()) == list(cluster.hosts)
    cluster.etcdctl("host-a", "put", "greeting", "hello")
    got = cluster.etcdctl("host-c", "get", "--print-value-only", "greeting").stdout
    assert got.strip() == "hello"
    assert cluster.etcd_leader() in cluster.hosts


def test_a_partitioned_host_reaches_nobody_and_the_others_keep_quorum(
    cluster: ClusterLab,
) -> None:
    cut = cluster.etcd_leader()  # the hard case: the leader is the one cut off
    others = [h for h in cluster.hosts if h != cut]
    cluster.partition(cut)
    try:
        assert cluster.connected() == others
        reach = cluster.run(
            cut,
            "curl",
            "-sS",
            "--max-time",
            "1",
            f"http://{cluster.address(others[0])}:2379/version",
            check=False,
        )
        assert reach.returncode != 0
        assert not put_ok(cluster, cut, "during", "cut", others)
        # its own loopback still works (the member answers, without a quorum)
        local = cluster.run(cut, "curl", "-sS", "--max-time", "1", "http://127.0.0.1:2379/version")
        assert "etcdserver" in local.stdout
        cluster.lab(others[0]).wait_for(
            lambda: put_ok(cluster, others[0], "during", "partition", others),
            timeout=15,
            interval=0.2,
            what="a write to the two connected members",
        )
        cluster.lab(others[0]).wait_for(
            lambda: cluster.etcd_leader() in others, timeout=15, what="a leader among the others"
        )
    finally:
        cluster.heal(cut)
    assert cluster.connected() == list(cluster.hosts)
    cluster.wait_etcd_healthy(timeout=20)
    cluster.lab(cut).wait_for(
        lambda: put_ok(cluster, cut, "after", "heal", list(cluster.hosts)),
        timeout=15,
        what="a write from the healed host",
    )
    local = cluster.etcdctl(
        cut, "get", "--print-value-only", "during", endpoints=["http://127.0.0.1:2379"]
    )
    assert local.stdout.strip() == "partition"


def test_killing_etcds_leader_elects_another_and_the_member_comes_back(
    cluster: ClusterLab,
) -> None:
    cluster.wait_etcd_healthy()
    old = cluster.kill_etcd_leader()
    lab = cluster.lab(old)
    lab.wait_for(
        lambda: cluster.etcd_leader() != old,
        timeout=15,
        interval=0.1,
        what="a new etcd leader",
    )
    lab.wait_for(
        lambda: (
            int(lab.show(ETCD_UNIT, "NRestarts")["NRestarts"]) >= 1
            and lab.show(ETCD_UNIT, "ActiveState")["ActiveState"] == "active"
        ),
        timeout=15,
        what="the killed member restarted",
    )
    cluster.wait_etcd_healthy(timeout=20)
    assert lab.show(ETCD_UNIT, "Result")["Result"] == "success"


def test_sigstop_and_sigcont_a_units_main_process(cluster: ClusterLab) -> None:
    host = cluster.hosts[1]
    lab = cluster.lab(host)
    lab.install_unit("sleeper.service", SLEEPER)
    lab.systemctl("start", "sleeper.service")
    try:

        def state(pid: int) -> str:
            status = lab.run("cat", f"/proc/{pid}/status").stdout
            return next(line.split()[1] for line in status.splitlines() if line[:6] == "State:")

        pid = cluster.sigstop(host, "sleeper.service")
        lab.wait_for(lambda: state(pid) == "T", timeout=5, what="the main process stopped")
        assert cluster.sigcont(host, "sleeper.service") == pid
        lab.wait_for(lambda: state(pid) == "S", timeout=5, what="the main process running")
    finally:
        lab.systemctl("stop", "sleeper.service")


def test_the_witness_orders_tokens_and_flags_a_shared_one(
    cluster: ClusterLab, witness: WitnessHandle
) -> None:
    a, b, _ = cluster.hosts
    witness.reset()
    assert witness.write(a, 5, via=a)[0] == 200  # over the bridge
    assert witness.write(a, 6, via=a)[0] == 200
    status, body = witness.write(b, 4, via=b)
    assert (status, body["ok"], body["highest_token"]) == (409, False, 6)
    assert witness.write(b, 6, via=b)[0] == 409  # a's token
    report = witness.report(via=b)
    assert report["highest_token"] == 6
    assert report["highest_token_host"] == a
    assert report["rejected_stale"] == 1
    assert report["rejected_stale_by_host"] == {b: 1}
    assert [s["hosts"] for s in report["same_token_two_hosts"]] == [[a, b]]
    witness.reset()
    assert witness.report()["writes_by_host"] == {}


def run_clients(cluster: ClusterLab, witness: WitnessHandle, tokens: dict[str, int]) -> None:
    """``witness-client.service`` on each host with its token for about a second, then
    stopped with SIGTERM: each must have exited cleanly."""
    for host, token in tokens.items():
        cluster.lab(host).install_unit(CLIENT_UNIT, client_unit(witness.url, token=token))
    for host in tokens:
        cluster.lab(host).systemctl("start", CLIENT_UNIT)
    time.sleep(1.0)
    for host in tokens:
        lab = cluster.lab(host)
        lab.systemctl("stop", CLIENT_UNIT)
        assert lab.show(CLIENT_UNIT, "Result", "ExecMainStatus") == {
            "Result": "success",
            "ExecMainStatus": "0",
        }


def test_one_client_alone_is_no_overlap(cluster: ClusterLab, witness: WitnessHandle) -> None:
    a = cluster.hosts[0]
    witness.reset()
    run_clients(cluster, witness, {a: 1})
    report = witness.report()
    assert report["writes_by_host"][a] >= 10  # every 50 ms for a second
    assert report["accepted_by_host"][a] == report["writes_by_host"][a]
    assert report["overlaps"] == []


def test_two_clients_at_once_are_an_overlap(cluster: ClusterLab, witness: WitnessHandle) -> None:
    a, b, _ = cluster.hosts
    witness.reset()
    run_clients(cluster, witness, {a: 1, b: 2})
    report = witness.report()
    assert report["writes_by_host"][a] >= 10
    assert report["writes_by_host"][b] >= 10
    assert report["rejected_stale_by_host"][a] > 0  # once b's token 2 was seen
    overlaps = report["overlaps"]
    assert overlaps, report
    assert all(o["hosts"] == [a, b] and o["tokens"] == {a: [1], b: [2]} for o in overlaps)
    # one episode from the second start to the first stop, unless a stall of more than
    # the window (a loaded machine) split it
    assert sum(o["writes"] for o in overlaps) >= 10


def test_a_client_outlives_a_partition(cluster: ClusterLab, witness: WitnessHandle) -> None:
    a = cluster.hosts[0]
    lab = cluster.lab(a)
    token_file = "/run/witness-token"
    (lab.root / token_file.lstrip("/")).write_text("9\n")
    lab.install_unit(CLIENT_UNIT, client_unit(witness.url, token_file=token_file))
    witness.reset()
    lab.systemctl("start", CLIENT_UNIT)
    try:
        lab.wait_for(lambda: witness.report()["writes_by_host"].get(a), what="a first write")
        cluster.partition(a)
        time.sleep(0.2)
        cut_at = witness.report()["writes_by_host"][a]
        time.sleep(0.6)
        assert witness.report()["writes_by_host"][a] == cut_at
        assert lab.show(CLIENT_UNIT, "ActiveState")["ActiveState"] == "active"
        (lab.root / token_file.lstrip("/")).write_text("10\n")  # read again at each write
        cluster.heal(a)
        lab.wait_for(
            lambda: witness.report()["last_token_by_host"].get(a) == 10,
            timeout=10,
            what="writes again after the heal",
        )
    finally:
        cluster.heal()
        lab.systemctl("stop", CLIENT_UNIT)
    assert lab.show(CLIENT_UNIT, "Result")["Result"] == "success"


def test_killing_a_host_leaves_nothing_of_it_and_the_others_keep_quorum(
    cluster: ClusterLab,
) -> None:
    dead = cluster.hosts[0]
    lab = cluster.lab(dead)
    pids = _identities(lab.processes())
    cgroup_name = lab.shared_dir.name
    assert pids
    cluster.kill_host(dead)
    assert not lab.running
    assert lab.processes() == []
    assert _still_alive(pids) == []
    assert _cgroup_dirs(cgroup_name) == []
    assert cluster.alive() == list(cluster.hosts[1:])
    assert not cluster.hub.has_port(cluster.port(dead))
    others = cluster.alive()
    cluster.lab(others[0]).wait_for(
        lambda: put_ok(cluster, others[0], "after", "kill", others),
        timeout=15,
        interval=0.2,
        what="a write to the two remaining members",
    )
    cluster.lab(others[0]).wait_for(
        lambda: cluster.etcd_leader() in others, timeout=15, what="a leader among the survivors"
    )
