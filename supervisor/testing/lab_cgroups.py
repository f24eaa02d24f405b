"""The systemd lab's cgroups: one of its own below ours in every hierarchy, made before
boot and removed after poweroff.

Private to :mod:`supervisor.testing.lab`.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor.testing.lab_boot import LabError


@dataclass(frozen=True)
class Cgroup:
    mount_point: str
    controllers: str  # "memory", "name=systemd", "" for the unified hierarchy
    parent: str  # our own cgroup's directory in that hierarchy


def own_cgroups() -> list[Cgroup]:
    """Each cgroup hierarchy mounted here, with this process's cgroup directory in it."""
    mine: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        mine[controllers] = path
    result: list[Cgroup] = []
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
            result.append(Cgroup(mount_point, key, parent))
    return result


def make_cgroups(name: str) -> list[str]:
    """A cgroup of the lab's own below ours in every hierarchy.

    Without it, the lab's systemd takes our cgroup as its root: two labs (or a lab and
    the host's systemd, when tests run at the root cgroup) would share ``system.slice``
    and kill each other's processes, and empty cgroups would stay on the host.
    """
    made: list[str] = []
    for cgroup in own_cgroups():
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


def remove_cgroup_tree(top: str, deadline: float) -> list[str]:
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
