"""The cluster lab's network: a namespace of the fixture's own holding one bridge (the
switch), and one veth pair per host from that bridge into the host's lab.

Private to :mod:`supervisor.testing.cluster_lab`. Nothing here touches the host's own
network namespace: the hub is a new one (``unshare --net``, held open by a ``sleep`` the
fixture owns), every link is made inside it, and each lab's end is created straight in
that lab's namespace. When the ``sleep`` ends, the hub namespace goes, and with it the
bridge and every veth pair still plugged into it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import time

from supervisor.testing.lab_boot import (
    LAB_ENV,
    LabCommandError,
    LabError,
    in_main_thread,
    set_pdeathsig,
)

BRIDGE = "br0"
LAB_IFNAME = "eth0"


class Hub:
    """The switch between the hosts: a bridge in a network namespace of its own.

    Ports are named ``vh0``, ``vh1``... on the hub side (names are only unique inside the
    hub, so concurrent fixtures don't clash); the other end of each is ``eth0`` in a lab.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process that holds the hub namespace open (``/proc/PID/ns/net``)."""
        if self._proc is None:
            raise LabError("the hub network namespace is not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        """Make the namespace and its bridge (up, forwarding at once: no STP)."""
        own = os.readlink("/proc/self/ns/net")
        self._proc = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(LAB_ENV),
            cwd="/",
            start_new_session=True,
            # dies with the test process, as the labs do (see Lab.boot)
            preexec_fn=set_pdeathsig if in_main_thread() else None,
        )
        atexit.register(self._at_exit)
        deadline = time.monotonic() + timeout
        while True:  # unshare execs sleep once the namespace is made
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.pid}/ns/net") != own:
                    break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError("`unshare --net` did not make the hub network namespace")
            time.sleep(0.01)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        self.ip("link", "set", BRIDGE, "up")

    def stop(self) -> None:
        """End the namespace: the bridge and every veth still in it go with it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip ARGS`` in the hub namespace."""
        cmd = ["nsenter", "-t", str(self.pid), "-n", "--", "ip", *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=10, env=dict(LAB_ENV), check=False
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, cmd[5:], proc.stdout, proc.stderr)
        return proc

    def plug(self, port: str, lab_pid: int) -> None:
        """A veth pair: ``port`` here on the bridge, ``eth0`` in the namespace of
        ``lab_pid`` (down, no address: the lab's side configures it)."""
        self.ip(
            "link", "add", port, "type", "veth", "peer", "name", LAB_IFNAME, "netns", str(lab_pid)
        )
        self.ip("link", "set", port, "master", BRIDGE, "up")

    def unplug(self, port: str) -> None:
        """Take ``port`` off the bridge: its link stays up, but nothing is forwarded
        between it and the other ports (a cut cable between switches, not a dead NIC)."""
        self.ip("link", "set", port, "nomaster")

    def replug(self, port: str) -> None:
        self.ip("link", "set", port, "master", BRIDGE, "up")

    def has_port(self, port: str) -> bool:
        return self.ip("link", "show", "dev", port, check=False).returncode == 0

    def remove(self, port: str, timeout: float = 5.0) -> None:
        """Delete ``port`` (and its peer). A pair whose other end was in a lab that died
        goes by itself, once the kernel has cleaned that namespace up: wait for that."""
        deadline = time.monotonic() + timeout
        while self.has_port(port):
            if time.monotonic() > deadline:
                self.ip("link", "del", "dev", port, check=False)
                if self.has_port(port):
                    raise LabError(f"the hub port {port} would not go away")
                return
            time.sleep(0.05)

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
