"""The lab boots a real systemd, runs a service in it, and leaves nothing on the host."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from supervisor.testing.lab import Lab, LabCommandError
from tests.conftest import skip_without_lab

pytestmark = pytest.mark.lab

HTTP_UNIT = """\
[Unit]
Description=lab test web server

[Service]
ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 {port}
WorkingDirectory={root}
"""

# What a systemd booting on this file system would write to, were the lab not careful.
WATCHED_HOST_PATHS = (
    "/var/log/journal",
    "/var/log/wtmp",
    "/var/lib/systemd",
    "/etc/passwd",
    "/etc/group",
    "/etc/machine-id",
)


@pytest.fixture(autouse=True)
def _need_lab() -> None:
    skip_without_lab()


def _host_state() -> dict[str, tuple[float, int]]:
    """mtime and size of every file and directory under the watched host paths."""
    state: dict[str, tuple[float, int]] = {}
    for top in WATCHED_HOST_PATHS:
        if not os.path.lexists(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [".", *dirnames, *filenames]:
                path = os.path.normpath(os.path.join(dirpath, name))
                st = os.lstat(path)
                state[path] = (st.st_mtime, st.st_size)
        if os.path.isfile(top):
            st = os.lstat(top)
            state[top] = (st.st_mtime, st.st_size)
    return state


def _cgroup_dirs(name: str) -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if name in dirnames:
            found.append(os.path.join(dirpath, name))
    return found


async def _systemd_version(address: str) -> str:
    bus = await MessageBus(bus_address=address).connect()
    try:
        async with asyncio.timeout(5):
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.systemd1",
                    path="/org/freedesktop/systemd1",
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=["org.freedesktop.systemd1.Manager", "Version"],
                )
            )
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
        return str(reply.body[0].value)
    finally:
        bus.disconnect()


def test_boot_serve_poweroff_leaves_nothing(tmp_path: Path) -> None:
    marker = Path("/tmp") / f"host-supervisor-lab-marker-{os.getpid()}"
    marker.write_text("still here\n")
    before = _host_state()
    lab = Lab()
    try:
        lab.boot()
        assert lab.state in ("running", "degraded")
        assert lab.boot_seconds is not None and lab.boot_seconds < 20
        shared = lab.shared_dir
        assert shared.is_dir() and shared.parent == Path("/var/tmp")
        assert not str(shared).startswith("/tmp/")
        unshare_pid = lab.unshare_pid
        assert unshare_pid is not None

        # The masks are in force, and tmpfiles only touched the lab's /run.
        assert lab.show("systemd-journal-flush.service", "LoadState")["LoadState"] == "masked"
        assert lab.show("systemd-tmpfiles-clean.timer", "LoadState")["LoadState"] == "masked"

        # A service on the lab's own loopback.
        (shared / "hello.txt").write_text("hello from the host\n")
        lab.install_unit("lab-web.service", HTTP_UNIT.format(port=8181, root=shared))
        lab.run("systemctl", "start", "lab-web.service")
        props = lab.show("lab-web.service", "ActiveState", "SubState", "MainPID")
        assert props["ActiveState"] == "active", props
        assert int(props["MainPID"]) > 0
        fetch = (
            "import urllib.request;"
            "print(urllib.request.urlopen('http://127.0.0.1:8181/hello.txt').read().decode())"
        )
        answer = lab.wait_for(
            lambda: lab.run("python3", "-c", fetch, check=False).stdout,
            timeout=10,
            what="lab-web.service to answer on 127.0.0.1:8181",
        )
        assert answer.strip() == "hello from the host"

        # The host (a process outside the lab) reaches the lab's system bus.
        assert asyncio.run(_systemd_version(lab.bus_address)).startswith("2")

        # Failing commands say what failed.
        with pytest.raises(LabCommandError, match="no-such-unit"):
            lab.run("systemctl", "start", "no-such-unit.service")
        with pytest.raises(AssertionError, match="a thing that never happens"):
            lab.wait_for(lambda: False, timeout=0.1, what="a thing that never happens")

        cgroup_name = shared.name
        assert _cgroup_dirs(cgroup_name), "the lab should run in cgroups of its own"
    finally:
        lab.poweroff()

    with pytest.raises(ProcessLookupError):
        os.kill(unshare_pid, 0)
    assert lab.processes() == []
    assert not shared.exists()
    assert _cgroup_dirs(cgroup_name) == []
    assert marker.read_text() == "still here\n", "the lab's boot emptied the host's /tmp"
    marker.unlink()
    assert _host_state() == before


def test_directories_under_tmp_stay_visible(tmp_path: Path) -> None:
    """A source tree or venv under /tmp (a CI checkout) is not hidden by the lab's /tmp."""
    kept = tmp_path / "checkout"
    kept.mkdir()
    (kept / "file.txt").write_text("kept\n")
    hidden = tmp_path.parent / f"not-kept-{os.getpid()}"
    hidden.mkdir()
    try:
        with Lab(keep=[kept]) as lab:
            assert lab.run("cat", str(kept / "file.txt")).stdout == "kept\n"
            assert lab.run("test", "-e", str(hidden), check=False).returncode == 1
            lab.run("sh", "-c", f"echo from-lab > {kept}/written.txt")
        assert (kept / "written.txt").read_text() == "from-lab\n"
        assert (kept / "file.txt").read_text() == "kept\n"
        assert hidden.is_dir()
    finally:
        hidden.rmdir()


def test_two_labs_at_once_are_independent() -> None:
    unit = "[Service]\nExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 8282\n"
    with Lab() as one, Lab() as two:
        for lab in (one, two):  # the same port: each lab has its own loopback
            lab.install_unit("twin.service", unit)
            lab.run("systemctl", "start", "twin.service")
        one.run("systemctl", "stop", "twin.service")
        assert two.show("twin.service", "ActiveState")["ActiveState"] == "active"
        assert one.show("twin.service", "ActiveState")["ActiveState"] == "inactive"
