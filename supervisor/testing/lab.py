"""The systemd lab: a real systemd booted as PID 1 of new namespaces, for integration tests.

As root, ``unshare --pid --fork --mount --uts --net`` starts a shell that prepares a private
view of the host (its own ``/proc``, ``/tmp``, ``/run``, ``/dev/shm`` and loopback) and then
execs ``/lib/systemd/systemd --system --unit=basic.target``. Tests talk to it with
``nsenter`` (:meth:`Lab.run`) or over its system bus (:attr:`Lab.bus_address`).

The filesystem is otherwise the host's, so everything that could write to the host is
switched off (see :data:`MASKED_UNITS` and :func:`host_timers`), and each lab gets cgroups
of its own below the caller's, removed at poweroff. After :meth:`Lab.poweroff` no process
and no file of the lab is left on the host.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from supervisor.testing.lab_boot import LAB_ENV as LAB_ENV
from supervisor.testing.lab_boot import LAB_PARENT as LAB_PARENT
from supervisor.testing.lab_boot import LAB_PREFIX as LAB_PREFIX
from supervisor.testing.lab_boot import MASKED_UNITS as MASKED_UNITS
from supervisor.testing.lab_boot import LabCommandError as LabCommandError
from supervisor.testing.lab_boot import LabError as LabError
from supervisor.testing.lab_boot import LabUnavailable as LabUnavailable
from supervisor.testing.lab_boot import boot_script, child_of, in_main_thread, set_pdeathsig
from supervisor.testing.lab_boot import default_keep as default_keep
from supervisor.testing.lab_boot import host_timers as host_timers
from supervisor.testing.lab_boot import lab_unavailable_reason as lab_unavailable_reason
from supervisor.testing.lab_cgroups import make_cgroups, remove_cgroup_tree

T = TypeVar("T")


class Lab:
    """A systemd booted as PID 1 of new pid+mount+uts+net namespaces.

    ``keep`` lists extra directories the lab must see even when they are under /tmp (the
    source tree and the Python in use are always kept). Booted from the main thread, the
    lab is killed with the test process (``PR_SET_PDEATHSIG``), so even a test run killed
    with SIGKILL leaves no systemd behind (its shared directory and cgroups then stay);
    a normal exit powers it off (``atexit``).
    """

    def __init__(self, *, keep: Sequence[str | os.PathLike[str]] = ()) -> None:
        self._keep = [*default_keep(), *keep]
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._shared: Path | None = None
        self._cgroups: list[str] = []
        self._pid_ns: str | None = None
        self.boot_seconds: float | None = None
        self.state: str = "offline"

    # -- life cycle -------------------------------------------------------------------

    def boot(self, timeout: float = 20.0) -> Self:
        """Start the lab and wait until ``systemctl is-system-running`` is running/degraded.

        Returns the lab; a no-op on a lab that is already running.
        """
        if self._proc is not None:
            if self.running:
                return self
            self._teardown(timeout=5.0)  # it died: clean up before booting again
        reason = lab_unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        started = time.monotonic()
        self._shared = Path(tempfile.mkdtemp(prefix=LAB_PREFIX, dir=LAB_PARENT))
        self._shared.chmod(0o755)
        control = self._shared / ".lab"
        control.mkdir()
        try:
            self._cgroups = make_cgroups(self._shared.name)
            script = self._boot_script(control)
            with open(control / "boot.log", "wb") as log:
                self._proc = subprocess.Popen(
                    [
                        "unshare",
                        "--pid",
                        "--fork",
                        "--kill-child",
                        "--mount",
                        "--uts",
                        "--net",
                        "sh",
                        "-c",
                        script,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=dict(LAB_ENV),
                    cwd="/",
                    start_new_session=True,
                    # PR_SET_PDEATHSIG fires when the forking *thread* ends: only safe
                    # from the main thread (a worker thread's lab would die with it).
                    preexec_fn=set_pdeathsig if in_main_thread() else None,
                )
            atexit.register(self._at_exit)
            self._pid = self._find_init(started + timeout)
            self._pid_ns = os.readlink(f"/proc/{self._pid}/ns/pid")
            self._wait_running(started + timeout)
        except BaseException:
            self._teardown(timeout=5.0)
            raise
        self.boot_seconds = time.monotonic() - started
        return self

    def poweroff(self, timeout: float = 10.0) -> None:
        """``systemctl poweroff`` inside, wait for the lab to end (SIGKILL after timeout),
        remove its cgroups and its shared directory."""
        self._teardown(timeout)

    def __enter__(self) -> Self:
        if self._proc is None:
            self.boot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.poweroff()

    # -- properties -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """systemd's PID as the host sees it (the child of ``unshare``)."""
        if self._pid is None:
            raise LabError("the lab is not booted")
        return self._pid

    @property
    def unshare_pid(self) -> int | None:
        """The ``unshare`` process on the host, None before boot."""
        return None if self._proc is None else self._proc.pid

    @property
    def root(self) -> Path:
        """The lab's file system as the host can reach it (``/proc/PID/root``)."""
        return Path(f"/proc/{self.pid}/root")

    @property
    def bus_address(self) -> str:
        """The lab's system bus, reachable from a process on the host."""
        return f"unix:path=/proc/{self.pid}/root/run/dbus/system_bus_socket"

    @property
    def shared_dir(self) -> Path:
        """A fresh directory outside /tmp that host and lab both see; removed at poweroff."""
        if self._shared is None:
            raise LabError("the lab is not booted")
        return self._shared

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- commands ---------------------------------------------------------------------

    def command(self, *argv: str | Sequence[str]) -> list[str]:
        """The host command line that runs ``argv`` inside the lab."""
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-n", "--", *_argv(argv)]

    def run(
        self,
        *argv: str | Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the lab and return its completed process (text output).

        ``argv`` may be given as separate strings or as one list. With ``check``, a
        non-zero exit raises :class:`LabCommandError` showing stdout and stderr.
        """
        cmd = self.command(*argv)
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**LAB_ENV, **(env or {})},
            cwd="/",
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, cmd[8:], proc.stdout, proc.stderr)
        return proc

    def spawn(self, *argv: str | Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a long-running command inside the lab; it dies at the latest at poweroff."""
        popen_kwargs.setdefault("env", dict(LAB_ENV))
        popen_kwargs.setdefault("cwd", "/")
        return subprocess.Popen(self.command(*argv), **popen_kwargs)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check)

    def install_unit(self, name: str, text: str, *, reload: bool = True) -> Path:
        """Write ``/run/systemd/system/NAME`` inside the lab, then daemon-reload."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a unit file name: {name!r}")
        path = self.root / "run/systemd/system" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if reload:
            self.daemon_reload()
        return Path("/run/systemd/system") / name

    def remove_unit(self, name: str, *, reload: bool = True) -> None:
        """Remove a unit file written by :meth:`install_unit` (and its drop-ins)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a unit file name: {name!r}")
        base = self.root / "run/systemd/system"
        (base / name).unlink(missing_ok=True)
        shutil.rmtree(base / f"{name}.d", ignore_errors=True)
        if reload:
            self.daemon_reload()

    def daemon_reload(self) -> None:
        self.run("systemctl", "daemon-reload")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p PROP... UNIT`` as a dict (every property when none named)."""
        args = ["systemctl", "show"]
        for prop in props:
            args += ["-p", prop]
        out = self.run(*args, "--", unit).stdout
        result: dict[str, str] = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                result[key] = value
        return result

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "a condition in the lab",
    ) -> T:
        """Call ``predicate`` until it returns a true value and return that value.

        Raises AssertionError naming ``what`` (and the last value or error) on timeout.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
            except Exception as exc:  # e.g. a command that fails until the lab is ready
                last = exc
            else:
                if value:
                    return value
                last = value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
                )
            time.sleep(interval)

    def processes(self) -> list[int]:
        """Host PIDs of every process still in the lab's pid namespace."""
        if self._pid_ns is None:
            return []
        pids: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == self._pid_ns:
                    pids.append(int(entry))
        return pids

    # -- internals --------------------------------------------------------------------

    def _boot_script(self, control: Path) -> str:
        """The shell script ``unshare`` runs (a subclass may boot another way)."""
        return boot_script(self._keep, control, self._cgroups)

    def _boot_log(self) -> str:
        if self._shared is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._shared / ".lab" / "boot.log").read_text(errors="replace").strip()
        return ""

    def _find_init(self, deadline: float) -> int:
        """The child of unshare: the lab's PID 1 (first a shell, which execs systemd)."""
        assert self._proc is not None
        parent = self._proc.pid
        while True:
            if self._proc.poll() is not None:
                raise LabError(
                    f"the lab exited during boot with status {self._proc.returncode}: "
                    f"{self._boot_log() or '(no output)'}"
                )
            child = child_of(parent)
            if child is not None:
                return child
            if time.monotonic() > deadline:
                raise LabError("unshare started no child process")
            time.sleep(0.01)

    def _wait_running(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise LabError(
                    f"the lab's systemd exited during boot with status {self._proc.returncode}"
                    f": {self._boot_log() or '(no output)'}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc = self.run("systemctl", "is-system-running", check=False, timeout=5)
                self.state = proc.stdout.strip()
                if self.state in ("running", "degraded"):
                    return
            if time.monotonic() > deadline:
                raise LabError(
                    f"the lab did not finish booting (is-system-running: {self.state!r}); "
                    f"boot output: {self._boot_log() or '(none)'}"
                )
            time.sleep(0.05)

    def _teardown(self, timeout: float) -> None:
        proc = self._proc
        problems: list[str] = []
        if proc is not None:
            if proc.poll() is None and self._pid is not None:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    self.run("systemctl", "poweroff", check=False, timeout=timeout)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"did not power off within {timeout:g}s; killed")
                proc.kill()  # --kill-child: systemd follows, and with it the namespace
                proc.wait(timeout=10)
            deadline = time.monotonic() + 5.0
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.02)
            if left := self.processes():
                problems.append(f"processes still in its pid namespace: {left}")
            with contextlib.suppress(Exception):
                atexit.unregister(self._at_exit)
        deadline = time.monotonic() + 5.0
        for cgroup in self._cgroups:
            if busy := remove_cgroup_tree(cgroup, deadline):
                problems.append(f"cgroups still busy: {busy}")
        self._cgroups = []
        if self._shared is not None:
            shutil.rmtree(self._shared, ignore_errors=True)
            if self._shared.exists():
                problems.append(f"could not remove {self._shared}")
            self._shared = None
        self._proc = None
        self._pid = None
        self.state = "offline"
        if problems:
            raise LabError("lab teardown: " + "; ".join(problems))

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self._teardown(timeout=5.0)


def _argv(argv: Sequence[str | Sequence[str]]) -> list[str]:
    if len(argv) == 1 and not isinstance(argv[0], str):
        return [str(a) for a in argv[0]]
    if not all(isinstance(a, str) for a in argv):
        raise TypeError("give the command as separate strings or as one list of strings")
    return [str(a) for a in argv]
