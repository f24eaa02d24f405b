"""Booting the systemd lab: its errors, what the host must have, what the lab must not
touch on it, and the shell script that ``unshare`` runs to make its namespaces.

Private to :mod:`supervisor.testing.lab`, which re-exports the public names.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

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
TMPFILES_DROPIN = (
    "[Service]\nExecStart=\nExecStart=systemd-tmpfiles --create --remove --boot --prefix=/run\n"
)
PR_SET_PDEATHSIG = 1


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


def paths_under_tmp(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
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


def set_pdeathsig() -> None:
    """In the unshare child: die with the test process, taking the whole lab with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def child_of(parent: int) -> int | None:
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


def boot_script(
    keep: Sequence[str | os.PathLike[str]], control: Path, cgroups: Sequence[str]
) -> str:
    """The shell script ``unshare`` runs: it prepares the lab's private mounts, moves
    itself into the lab's ``cgroups`` and execs systemd. ``keep``: the directories under
    /tmp the lab must still see, staged below ``control``."""
    q = shlex.quote
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        "mount -t proc proc /proc",
    ]
    kept = paths_under_tmp(keep)
    for i, path in enumerate(kept):
        stage = control / f"keep{i}"
        stage.mkdir()
        lines.append(f"mount --rbind {q(path)} {q(str(stage))}")
    lines.append("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp")
    for i, path in enumerate(kept):
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
        f"printf %s {q(TMPFILES_DROPIN)} > {dropin}/50-lab.conf",
        # systemd writes status lines to /dev/console: the host's console.
        "if [ -e /dev/console ]; then mount --bind /dev/null /dev/console; fi",
    ]
    for cgroup in cgroups:
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
