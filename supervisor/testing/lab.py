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
import ctypes
import errno
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

#: Where each lab's shared directory is created: outside ``/tmp`` (private in the lab).
LAB_PARENT = Path("/var/tmp")
LAB_PREFIX = "host-supervisor-lab-"

#: Units that would otherwise change the host from inside the lab.
MASKED_UNITS: tuple[str, ...] = (
    "systemd-sysusers.service",  # adds users to the host's /etc/passwd
    "systemd-sysctl.service",  # sets the host kernel's settings
    "systemd-binfmt.service",  # registers binfmt handlers in the host kernel
    "systemd-modules-load.service",  # loads kernel modules
    "systemd-remount-fs.service",  # remounts the host's root file system
    "systemd-journal-flush.service",  # flushes the lab's journal into the host's /var/log
    "systemd-update-utmp.service",  # writes the host's /var/log/wtmp
    "systemd-tmpfiles-clean.timer",  # ages out files under the host's /var/tmp
)

#: The environment of every command run inside the lab (the host's is not passed on:
#: NOTIFY_SOCKET, DBUS_*_BUS_ADDRESS or SYSTEMD_* would point at the host).
LAB_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "HOME": "/root",
}

_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
_TMPFILES_DROPIN = (
    "[Service]\nExecStart=\nExecStart=systemd-tmpfiles --create --remove --boot --prefix=/run\n"
)
_PR_SET_PDEATHSIG = 1


class LabUnavailable(RuntimeError):
    """This machine cannot boot a lab (not root, or a tool is missing); the message says why."""


class LabError(RuntimeError):
    """The lab did not boot or did not shut down as it should; the message says what was seen."""


class LabCommandError(subprocess.CalledProcessError):
    """A command inside the lab failed; unlike its base class, its message shows the output."""

    def __str__(self) -> str:
        parts = [super().__str__()]
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                parts.append(f"{label}:\n{str(text).rstrip()}")
        return "\n".join(parts)


def lab_unavailable_reason() -> str | None:
    """Why no lab can be booted here, or None when it can."""
    if sys.platform != "linux":
        return "the systemd lab needs Linux"
    if os.geteuid() != 0:
        return "the systemd lab needs root (unshare --pid --mount)"
    for tool in ("unshare", "nsenter", "mount", "ip"):
        if shutil.which(tool) is None:
            return f"the systemd lab needs `{tool}` (util-linux / iproute2), not found on PATH"
    if not os.access("/lib/systemd/systemd", os.X_OK):
        return "the systemd lab needs systemd installed (/lib/systemd/systemd)"
    return None


def host_timers() -> list[str]:
    """Every timer the host enables through a ``.wants`` directory.

    Booted in the lab, they would run the host's maintenance jobs on the host's files
    (``apt-daily``, ``dpkg-db-backup``, ``man-db``, ``e2scrub_all``...), and persistent
    ones fire at once when their stamp in ``/var/lib/systemd/timers`` is old. So the lab
    masks them all.
    """
    names: set[str] = set()
    for unit_dir in _UNIT_DIRS:
        for link in glob.glob(f"{unit_dir}/*.wants/*.timer"):
            names.add(os.path.basename(link))
    return sorted(names)


def _paths_under_tmp(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The paths (resolved) that a private tmpfs on /tmp would hide, nested ones dropped."""
    found: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        if real.startswith("/tmp/") and os.path.isdir(real):
            found.append(real)
    found.sort()
    kept: list[str] = []
    for path in found:
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def default_keep() -> list[str]:
    """What the lab needs to see even if it lives under /tmp: this source tree and Python."""
    source_root = Path(__file__).resolve().parents[2]
    return [
        str(source_root),
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    ]


@dataclass(frozen=True)
class _Cgroup:
    mount_point: str
    controllers: str  # "memory", "name=systemd", "" for the unified hierarchy
    parent: str  # our own cgroup's directory in that hierarchy


def _own_cgroups() -> list[_Cgroup]:
    """Each cgroup hierarchy mounted here, with this process's cgroup directory in it."""
    mine: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        mine[controllers] = path
    result: list[_Cgroup] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3]
        root, mount_point = fields[3], fields[4]
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            opts = set(options.split(","))
            key = next((k for k in mine if k and set(k.split(",")) <= opts), "")
            if not key:
                continue
        else:
            continue
        if key not in mine:
            continue
        rel = os.path.relpath(mine[key], root)
        if rel.startswith(".."):
            continue  # our cgroup is outside what is mounted here
        parent = os.path.normpath(os.path.join(mount_point, rel))
        if os.path.isdir(parent):
            result.append(_Cgroup(mount_point, key, parent))
    return result


def _set_pdeathsig() -> None:
    """In the unshare child: die with the test process, taking the whole lab with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _remove_cgroup_tree(top: str, deadline: float) -> list[str]:
    """rmdir a cgroup directory and its children, bottom up; the ones that stayed busy."""
    while True:
        busy: list[str] = []
        if not os.path.isdir(top):
            return []
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                busy.append(dirpath)
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.05)


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
            self._cgroups = self._make_cgroups(self._shared.name)
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
                    preexec_fn=_set_pdeathsig if _in_main_thread() else None,
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

    def _make_cgroups(self, name: str) -> list[str]:
        """A cgroup of the lab's own below ours in every hierarchy.

        Without it, the lab's systemd takes our cgroup as its root: two labs (or a lab and
        the host's systemd, when tests run at the root cgroup) would share ``system.slice``
        and kill each other's processes, and empty cgroups would stay on the host.
        """
        made: list[str] = []
        for cgroup in _own_cgroups():
            path = os.path.join(cgroup.parent, name)
            try:
                os.mkdir(path)
            except OSError as exc:
                if cgroup.controllers in ("", "name=systemd"):
                    raise LabError(f"cannot create the lab's cgroup {path}: {exc}") from exc
                continue  # a controller systemd can live without
            made.append(path)
            if "cpuset" in cgroup.controllers.split(","):
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    value = Path(cgroup.parent, knob).read_text()
                    Path(path, knob).write_text(value)
        return made

    def _boot_script(self, control: Path) -> str:
        q = shlex.quote
        lines = [
            "set -eu",
            "mount --make-rprivate /",
            "mount -t proc proc /proc",
        ]
        keep = _paths_under_tmp(self._keep)
        for i, path in enumerate(keep):
            stage = control / f"keep{i}"
            stage.mkdir()
            lines.append(f"mount --rbind {q(path)} {q(str(stage))}")
        lines.append("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp")
        for i, path in enumerate(keep):
            stage = control / f"keep{i}"
            lines.append(f"mkdir -p {q(path)} && mount --move {q(str(stage))} {q(path)}")
        dropin = "/run/systemd/system/systemd-tmpfiles-setup.service.d"
        lines += [
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
            # systemd keeps a /run that is already a mount point: prepare it so that
            # tmpfiles at boot only touches the lab's /run, never the host's /var or /etc
            # (Debian's tmpfiles.d removes /var/tmp/systemd-private-* of the host's services).
            "mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run",
            f"mkdir -p {dropin}",
            f"printf %s {q(_TMPFILES_DROPIN)} > {dropin}/50-lab.conf",
            # systemd writes status lines to /dev/console: the host's console.
            "if [ -e /dev/console ]; then mount --bind /dev/null /dev/console; fi",
        ]
        for cgroup in self._cgroups:
            lines.append(f"echo $$ > {q(cgroup + '/cgroup.procs')}")
        masks = [*MASKED_UNITS, *host_timers()]
        mask_args = " ".join(q(f"systemd.mask={unit}") for unit in dict.fromkeys(masks))
        lines += [
            "ip link set lo up",
            "export container=unshare",
            "exec /lib/systemd/systemd --system --unit=basic.target "
            f"{mask_args} </dev/null >/dev/null 2>&1",
        ]
        return "\n".join(lines) + "\n"

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
            child = _child_of(parent)
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
            if busy := _remove_cgroup_tree(cgroup, deadline):
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


def _child_of(parent: int) -> int | None:
    """The (first) child process of ``parent``, by scanning /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            return int(entry)
    return None
