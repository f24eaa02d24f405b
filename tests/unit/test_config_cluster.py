"""The cluster sections: etcd in the main config, the hosts of a clustered policy. Every
mistake is one error at its FILE:LINE:COL; TLS errors name the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from supervisor.config import load_config
from tests.unit.test_config_loader import issues, policy, write

MAIN = """\
cluster:
  endpoints: [http://10.77.0.1:2379, http://10.77.0.2:2379]
  host: host-a
"""
CLUSTERED = """\
unit: db.service
cluster:
  hosts: [host-a, host-b, host-c]
"""


def main_config(config_dir: Path, text: str = MAIN) -> Path:
    return write(config_dir / "host-supervisor.yaml", text)


def test_a_cluster_and_a_clustered_policy_load_with_their_defaults(tmp_path: Path) -> None:
    main_config(tmp_path)
    policy(tmp_path, "db.yaml", CLUSTERED)
    loaded = load_config(tmp_path)
    assert loaded.errors == []
    cluster = loaded.main.cluster
    assert cluster is not None
    assert cluster.endpoints == ("http://10.77.0.1:2379", "http://10.77.0.2:2379")
    assert (cluster.prefix, cluster.host, cluster.timeout) == ("/host-supervisor/", "host-a", 2.0)
    assert cluster.compact == 3600.0  # the beats' history is dropped hourly by default
    spec = loaded.policies["db.service"].cluster
    assert spec is not None
    assert (spec.ttl, spec.failback, spec.hold_off, spec.release_on) == (
        5.0,
        False,
        30.0,
        "exhausted",
    )


def test_a_clustered_policy_needs_etcd_in_the_main_config(tmp_path: Path) -> None:
    path = policy(tmp_path, "db.yaml", CLUSTERED)
    assert issues(tmp_path) == [
        f"{path}:3:3: cluster: a cluster: section needs etcd: add cluster: {{endpoints: [...]}} "
        "to host-supervisor.yaml"
    ]


def test_ttl_below_etcds_floor_or_fractional_is_refused(tmp_path: Path) -> None:
    main_config(tmp_path)
    one = policy(tmp_path, "a.yaml", CLUSTERED.replace("db.", "a.") + "  ttl: 1s\n")
    half = policy(tmp_path, "b.yaml", CLUSTERED.replace("db.", "b.") + "  ttl: 2500ms\n")
    assert issues(tmp_path) == [
        f"{one}:4:8: cluster.ttl: ttl must be from 2s (etcd's floor) to 1h, got 1s",
        f"{half}:4:8: cluster.ttl: etcd leases count whole seconds, got 2.5s",
    ]


def test_duplicate_host_bad_endpoint_and_failover_with_cluster(tmp_path: Path) -> None:
    main = main_config(tmp_path, 'cluster:\n  endpoints: ["ftp://h:1"]\n')
    dup = policy(tmp_path, "a.yaml", "unit: a.service\ncluster:\n  hosts: [x, y, x]\n")
    both = policy(
        tmp_path,
        "b.yaml",
        "unit: b.service\nfailover: {backup: c.service}\ncluster: {hosts: [x]}\n",
    )
    found = issues(tmp_path)
    assert found[0].startswith(f"{main}:2:15: cluster.endpoints[0]: expected an etcd client URL")
    assert f"{dup}:3:17: cluster.hosts[2]: host 'x' is listed twice" in found
    assert (
        f"{both}:3:10: cluster: a unit fails over either to a backup unit (failover:) or to "
        "another host (cluster:), not both" in found
    )


def test_tls_errors_name_the_file(tmp_path: Path) -> None:
    garbage = write(tmp_path / "ca.pem", "not a certificate\n")
    main = main_config(
        tmp_path,
        MAIN
        + f"  tls:\n    ca: {garbage}\n    cert: {tmp_path}/client.pem\n"
        + f"    key: {tmp_path}/nope-key.pem\n",
    )
    found = issues(tmp_path)
    assert found[0].startswith(f"{main}:5:9: cluster.tls.ca: CA file {garbage} is not a PEM")
    assert (
        found[1] == f"{main}:6:11: cluster.tls.cert: cert file {tmp_path}/client.pem does not exist"
    )
    assert found[2] == (
        f"{main}:7:10: cluster.tls.key: key file {tmp_path}/nope-key.pem does not exist"
    )


def test_a_cert_without_its_key_and_a_mismatched_pair(tmp_path: Path) -> None:
    main = main_config(tmp_path, MAIN + f"  tls:\n    cert: {tmp_path}/c.pem\n")
    assert issues(tmp_path) == [
        f"{main}:5:5: cluster.tls: cert and key go together: key is missing"
    ]

    for name in ("one", "two"):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={name}",
                "-keyout",
                f"{tmp_path}/{name}-key.pem",
                "-out",
                f"{tmp_path}/{name}.pem",
            ],
            check=True,
            capture_output=True,
        )
    main = main_config(
        tmp_path, MAIN + f"  tls:\n    cert: {tmp_path}/one.pem\n    key: {tmp_path}/two-key.pem\n"
    )
    found = issues(tmp_path)
    assert len(found) == 1
    assert found[0].startswith(
        f"{main}:6:10: cluster.tls.key: client certificate {tmp_path}/one.pem and key "
        f"{tmp_path}/two-key.pem do not load together"
    )
