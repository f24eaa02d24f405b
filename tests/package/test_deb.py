"""The .deb, installed and run for real in a booted Debian 12 (bookworm, Python 3.11) and
Debian 13 (trixie, Python 3.13): one package for both (issue 6, item 6; issue 16, item 3).

The tests run in file order on one booted root, then again on the other: install,
supervise a web unit through a crash, refuse a broken policy, recompile when Python's
standard library changes, upgrade over an edited conffile, purge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.core.notices import MessageId
from tests.package.conftest import TIMINGS, ChrootLab

pytestmark = pytest.mark.lab

DAEMON = "host-supervisor.service"
MAIN_CONFIG = "/etc/host-supervisor/host-supervisor.yaml"
VENV = "/usr/lib/host-supervisor"
RECIPES = sorted(p.name for p in (Path(__file__).parents[2] / "docs/recipes").glob("*.yaml"))
COMPLETIONS = (  # bash first: the test loads it
    "/usr/share/bash-completion/completions/host-supervisor",
    "/usr/share/zsh/vendor-completions/_host-supervisor",
    "/usr/share/fish/vendor_completions.d/host-supervisor.fish",
)
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
#: What an unattended upgrade says about conffiles: keep the operator's, take the
#: package's only where the operator changed nothing (dpkg would ask otherwise).
KEEP_CONFFILES = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]

WEB_UNIT = """\
[Unit]
Description=test web service on port 8080

[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /
Restart=no
"""

WEB_POLICY = """\
# A small web unit, supervised: a crash is repaired by a restart.
unit: web.service
checks:
  - name: port
    tcp: {host: 127.0.0.1, port: 8080}
    interval: 1s
recovery:
  ladder: [restart]
  cooldown: 1s
  settle: 1s
"""

BROKEN_POLICY = "unit: web-z.service\nchecks:\n  - name: x\n    intervall: 5s\n    tcp: {port: 1}\n"

#: The operator's edit of the main config, which an upgrade must keep.
OPERATOR_EDIT = ("log_level: info", "log_level: debug  # edited by the operator: keep me")
#: The next version's change to the shipped main config.
NEXT_DEFAULT = "\n# a default the next version changed\n"


def status_text(debian: ChrootLab) -> str:
    return debian.show(DAEMON, "StatusText")["StatusText"]


def journal(debian: ChrootLab, *matches: str) -> list[dict[str, str]]:
    out = debian.run("journalctl", "--no-pager", "-o", "json", *matches).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def daemon_python(debian: ChrootLab) -> str:
    """The interpreter the running daemon executes, as a path in the root."""
    pid = debian.show(DAEMON, "MainPID")["MainPID"]
    return debian.run("readlink", f"/proc/{pid}/exe").stdout.strip()


def apt_install(debian: ChrootLab, deb: Path, *options: str) -> str:
    shutil.copy(deb, debian.root / "root" / deb.name)
    done = debian.run(
        "apt-get", "install", "-y", "-q", *options, f"/root/{deb.name}",
        net=False, timeout=600, env=APT_ENV,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="session")
def deb_next(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version N+1 of our package: the .deb with a higher version and a changed default
    config, repacked with dpkg-deb (a second full build would test nothing more about
    conffiles, and take two minutes)."""
    work = tmp_path_factory.mktemp("deb-next")
    tree = work / "tree"
    subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    version = next(
        line.split(": ", 1)[1]
        for line in control.read_text().splitlines()
        if line.startswith("Version: ")
    )
    control.write_text(
        control.read_text().replace(f"Version: {version}", f"Version: {version}+next1")
    )
    with open(tree / MAIN_CONFIG.lstrip("/"), "a") as shipped:
        shipped.write(NEXT_DEFAULT)
    out = work / f"host-supervisor_{version}+next1_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_apt_installs_the_deb_and_starts_the_daemon(debian: ChrootLab, deb: Path) -> None:
    started = time.monotonic()
    # The lab's network namespace has only loopback: apt-get uses the host's network.
    debian.run("apt-get", "update", "-q", net=False, timeout=300, env=APT_ENV)
    install = apt_install(debian, deb)
    TIMINGS[f"apt-get update + install ({debian.release})"] = time.monotonic() - started
    assert "Setting up host-supervisor" in install, install

    debian.wait_for(
        lambda: debian.systemctl("is-active", DAEMON, check=False).stdout.strip() == "active",
        timeout=30,
        what="host-supervisor active after install",
    )
    assert debian.systemctl("is-enabled", DAEMON).stdout.strip() == "enabled"
    debian.wait_for(lambda: "0 units" in status_text(debian), timeout=10, what="STATUS=")
    status = debian.systemctl("status", "--no-pager", DAEMON, check=False).stdout
    assert 'Status: "0 units' in status, status
    # The release's own python3 runs it, from the venv's tree for that version, with the
    # byte-code postinst compiled for it.
    # (readlink in the lab prints the root's path on the host before it.)
    assert daemon_python(debian).endswith(f"/usr/bin/python{debian.python}")
    venv = debian.root / VENV.lstrip("/")
    tag = "cpython-" + debian.python.replace(".", "")
    assert list((venv / "lib/python3/site-packages/supervisor/__pycache__").glob(f"*.{tag}.pyc"))
    assert list(
        (venv / f"lib/python{debian.python}/site-packages").glob(f"*/__pycache__/*.{tag}.pyc")
    )
    # The layout the package promises.
    root = debian.root
    target = debian.run("readlink", "-f", "/usr/bin/host-supervisor").stdout.strip()
    assert target == f"{VENV}/bin/host-supervisor", target
    assert (root / "usr/lib/systemd/system/host-supervisor.service").is_file()
    assert (root / "usr/lib/systemd/catalog/host-supervisor.catalog").is_file()
    # systemd's file trigger ran journalctl --update-catalog: journalctl -x explains ours.
    catalog = debian.run("journalctl", "--list-catalog").stdout
    assert all(message_id.value in catalog for message_id in MessageId), catalog
    for page in ("man8/host-supervisor.8.gz", "man5/host-supervisor.yaml.5.gz"):
        assert (root / "usr/share/man" / page).is_file(), page
    assert (root / "usr/share/doc/host-supervisor/sbom.cdx.json").is_file()
    examples = root / "usr/share/doc/host-supervisor/examples"
    assert sorted(p.name for p in examples.iterdir()) == RECIPES
    for completion in COMPLETIONS:
        assert (root / completion.lstrip("/")).is_file(), completion
    loaded = debian.run("bash", "-c", f"source {COMPLETIONS[0]}; complete -p host-supervisor")
    assert loaded.stdout.split()[-1] == "host-supervisor", loaded.stdout
    conffiles = (root / "var/lib/dpkg/info/host-supervisor.conffiles").read_text().split()
    assert MAIN_CONFIG in conffiles
    assert any(c.endswith(".example") for c in conffiles), conffiles
    version = debian.run("host-supervisor", "--version").stdout
    assert version.startswith("host-supervisor "), version


def test_a_crashed_web_unit_comes_back(debian: ChrootLab) -> None:
    (debian.root / "etc/systemd/system/web.service").write_text(WEB_UNIT)
    debian.daemon_reload()
    debian.systemctl("start", "web.service")
    (debian.root / "etc/host-supervisor/policies.d/web.yaml").write_text(WEB_POLICY)
    debian.systemctl("reload", DAEMON)
    debian.wait_for(
        lambda: status_text(debian).startswith("1 unit:"), timeout=15, what="web.service supervised"
    )

    old_pid = debian.show("web.service", "MainPID")["MainPID"]
    assert old_pid != "0"
    debian.run("kill", "-KILL", old_pid)

    def restarted() -> bool:
        props = debian.show("web.service", "ActiveState", "MainPID")
        return props["ActiveState"] == "active" and props["MainPID"] not in ("0", old_pid)

    debian.wait_for(restarted, timeout=30, what="web.service restarted with a new MainPID")

    def entries() -> list[dict[str, str]]:
        return journal(debian, "-u", "host-supervisor", "UNIT=web.service")

    found = debian.wait_for(
        lambda: (
            (e := entries())
            and any(x.get("MESSAGE", "").startswith("restart finished") for x in e)
            and e
        ),
        timeout=15,
        what="journal entries about web.service from host-supervisor",
    )
    failed = [e for e in found if e.get("MESSAGE", "").startswith("unit failed")]
    assert failed, [e.get("MESSAGE") for e in found]
    # The structured fields, sent over journald's native protocol by the daemon itself.
    entry = failed[-1]
    assert entry["UNIT"] == "web.service" and entry["ACTION"] == "detect", entry
    assert entry["PRIORITY"] == "4" and entry["SYSLOG_IDENTIFIER"] == "host-supervisor", entry
    assert entry["_SYSTEMD_UNIT"] == DAEMON, entry
    restarts = [e for e in found if e.get("MESSAGE", "").startswith("restarting unit")]
    assert restarts and restarts[-1]["ACTION"] == "restart", restarts
    assert debian.systemctl("is-active", DAEMON).stdout.strip() == "active"


def test_a_broken_policy_is_refused_and_named(debian: ChrootLab) -> None:
    broken = "/etc/host-supervisor/policies.d/zz-broken.yaml"
    (debian.root / broken.lstrip("/")).write_text(BROKEN_POLICY)
    try:
        # The shipped ExecReload= waits for the daemon's verdict: the reload fails.
        refused = debian.systemctl("reload", DAEMON, check=False)
        assert refused.returncode != 0, refused
        debian.wait_for(
            lambda: "reload refused" in status_text(debian),
            timeout=15,
            what="StatusText saying the reload was refused",
        )
        assert f"{broken}:4:5" in status_text(debian)
        status = debian.systemctl("status", "--no-pager", DAEMON, check=False).stdout
        assert "reload refused" in status, status
        assert debian.systemctl("is-active", DAEMON).stdout.strip() == "active"

        validate = debian.run("host-supervisor", "validate", check=False)
        assert validate.returncode == 1, validate
        assert f"{broken}:4" in validate.stdout + validate.stderr, validate
    finally:
        (debian.root / broken.lstrip("/")).unlink()
    debian.systemctl("reload", DAEMON)
    debian.wait_for(
        lambda: "reload refused" not in status_text(debian),
        timeout=15,
        what="a clean reload clearing the refusal",
    )


def test_a_change_to_pythons_standard_library_recompiles(debian: ChrootLab) -> None:
    """The trigger that carries the venv from one python3 to the next (Debian 12 -> 13):
    here the same version, so it recompiles and leaves the daemon running."""
    venv = debian.root / VENV.lstrip("/")
    for cache in (venv / "lib/python3/site-packages/supervisor").rglob("__pycache__"):
        shutil.rmtree(cache)
    pid = debian.show(DAEMON, "MainPID")["MainPID"]
    debian.run("dpkg-trigger", "--no-await", f"/usr/lib/python{debian.python}")
    done = debian.run("dpkg", "--triggers-only", "--pending", timeout=120)
    assert "host-supervisor" in done.stdout, done.stdout
    assert list((venv / "lib/python3/site-packages/supervisor/__pycache__").glob("*.pyc"))
    assert debian.show(DAEMON, "MainPID")["MainPID"] == pid  # same interpreter: no restart


def test_an_upgrade_keeps_the_operators_edit(debian: ChrootLab, deb: Path, deb_next: Path) -> None:
    config = debian.root / MAIN_CONFIG.lstrip("/")
    assert OPERATOR_EDIT[0] in config.read_text()
    edited = config.read_text().replace(*OPERATOR_EDIT, 1)
    config.write_text(edited)
    pid = debian.show(DAEMON, "MainPID")["MainPID"]

    upgrade = apt_install(debian, deb_next, *KEEP_CONFFILES)

    assert "Setting up host-supervisor" in upgrade, upgrade
    assert config.read_text() == edited  # the operator's edit, untouched
    # dpkg put the new default beside it for the operator to merge.
    assert NEXT_DEFAULT in (config.parent / (config.name + ".dpkg-dist")).read_text()
    status = debian.run("dpkg-query", "-W", "-f=${Version}", "host-supervisor").stdout
    assert status.endswith("+next1"), status
    # postinst restarted the daemon on the new version, with the edited config.
    debian.wait_for(
        lambda: (
            debian.show(DAEMON, "MainPID")["MainPID"] not in ("0", pid)
            and status_text(debian).startswith("1 unit:")
        ),
        timeout=30,
        what="the daemon restarted by the upgrade, supervising web.service",
    )
    assert debian.systemctl("is-active", DAEMON).stdout.strip() == "active"
    validate = debian.run("host-supervisor", "validate", check=False)
    assert validate.returncode == 0, validate


def test_purge_leaves_nothing(debian: ChrootLab) -> None:
    state_dir = debian.root / "var/lib/host-supervisor"
    assert state_dir.is_dir()  # made by the running daemon: purge must take it
    daemon_pid = debian.show(DAEMON, "MainPID")["MainPID"]
    purge = debian.run(
        "apt-get", "purge", "-y", "-q", "host-supervisor", net=False, timeout=300, env=APT_ENV
    )
    assert "Purging configuration files for host-supervisor" in purge.stdout, purge.stdout
    assert "not empty so not removed" not in purge.stdout + purge.stderr, purge

    active = debian.systemctl("is-active", DAEMON, check=False).stdout.strip()
    assert active != "active", active
    assert daemon_pid == "0" or not (debian.root / f"proc/{daemon_pid}").exists()
    leftover = [
        cmdline
        for pid_dir in (debian.root / "proc").iterdir()
        if pid_dir.name.isdigit()
        for cmdline in [_cmdline(pid_dir)]
        if "host-supervisor" in cmdline
    ]
    assert not leftover, leftover

    dpkg = debian.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "host-supervisor", check=False)
    assert dpkg.returncode != 0 or dpkg.stdout.strip() in ("", "pn"), dpkg
    for path in (
        "usr/lib/host-supervisor",
        "var/lib/host-supervisor",
        "etc/host-supervisor",
        "run/host-supervisor",
        "usr/bin/host-supervisor",
        "usr/share/doc/host-supervisor",
        "usr/lib/systemd/system/host-supervisor.service",
        "etc/systemd/system/multi-user.target.wants/host-supervisor.service",
    ):
        assert not (debian.root / path).exists(), f"/{path} is left after purge"


def _cmdline(pid_dir: Path) -> str:
    try:
        return (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
