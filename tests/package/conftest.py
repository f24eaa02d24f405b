"""Fixtures of the package test: the .deb, and Debian 12 and 13 booted with systemd.

The .deb comes from ``packaging/build-deb --if-changed`` (dist/ is reused when it was
built from the same sources); one .deb serves both releases. The test roots (bookworm
and trixie) are made once each with debootstrap and cached in ``.cache/RELEASE-test``
(HOST_SUPERVISOR_CACHE moves the cache); each module boots one through an overlayfs
whose upper layer is a fresh directory of the lab's, so the cache stays clean. systemd
boots as PID 1 of new pid+mount+uts+net namespaces chrooted into the overlay (DESIGN.md,
"The systemd lab", chroot variant), with the lab's care: units that would change the
host's kernel are masked, every timer of the root is masked, tmpfiles only touch the
root's /run, and the lab gets cgroups of its own.

Without root, unshare, debootstrap (or the cached roots) or overlayfs, the tests skip
with the reason; under HOST_SUPERVISOR_REQUIRE_LAB=1 or CI=true they fail instead.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from supervisor.testing.lab import (
    LAB_ENV,
    MASKED_UNITS,
    Lab,
    LabCommandError,
    lab_unavailable_reason,
)
from supervisor.testing.lab_boot import TMPFILES_DROPIN

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HOST_SUPERVISOR_CACHE", REPO / ".cache"))
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: The releases the .deb is installed on, with the python3 each has.
RELEASES: dict[str, str] = {"bookworm": "3.11", "trixie": "3.13"}
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,python3"]


def root_of(release: str) -> Path:
    """The cached debootstrap of ``release`` (never written once made)."""
    return CACHE / f"{release}-test"


#: Masked in the booted root on top of the lab's own list (the root's timers too).
CHROOT_MASKS: tuple[str, ...] = (
    "systemd-tmpfiles-setup-dev.service",  # creates device nodes in the host's /dev
    "systemd-firstboot.service",  # would ask questions on a console nobody reads
)

#: Wall-clock seconds of each phase, printed at the end of the session (-rA shows it).
TIMINGS: dict[str, float] = {}


def package_test_unavailable_reason() -> str | None:
    """Why the package test cannot run here, or None when it can."""
    if reason := lab_unavailable_reason():
        return reason
    for tool in ("chroot", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"the package test needs `{tool}`, not found on PATH"
    cached = all((root_of(r) / "lib/systemd/systemd").exists() for r in RELEASES)
    if not cached and shutil.which("debootstrap") is None:
        return "the package test needs debootstrap (apt-get install debootstrap) or cached roots"
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems and subprocess.run(["modprobe", "overlay"]).returncode != 0:
        return "the package test needs overlayfs"
    return None


def require_package_test() -> None:
    reason = package_test_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("HOST_SUPERVISOR_REQUIRE_LAB") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"the package test must run here (CI) but {reason}")
    pytest.skip(reason)


class ChrootLab(Lab):
    """The systemd lab booted inside a Debian root, seen through a throw-away overlay.

    The overlay is mounted inside the lab's own mount namespace: it disappears with the
    lab, and its upper layer lives in the lab's shared directory, removed at poweroff.
    """

    def __init__(self, lower: Path, release: str) -> None:
        super().__init__()
        self.lower = lower
        self.release = release
        self.python = RELEASES[release]

    def masks(self) -> list[str]:
        """The lab's masks, ours, and every timer the root ships."""
        timers = {
            os.path.basename(path)
            for unit_dir in ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")
            for path in glob.glob(f"{self.lower}/{unit_dir}/**/*.timer", recursive=True)
        }
        return list(dict.fromkeys([*MASKED_UNITS, *CHROOT_MASKS, *sorted(timers)]))

    def _boot_script(self, control: Path) -> str:
        q = shlex.quote
        assert self._shared is not None
        upper, work, root = (str(self._shared / d) for d in ("upper", "work", "root"))
        dropin = f"{root}/run/systemd/system/systemd-tmpfiles-setup.service.d"
        lines = [
            "set -eu",
            "mount --make-rprivate /",
            f"mkdir -p {q(upper)} {q(work)} {q(root)}",
            f"mount -t overlay overlay -o "
            f"lowerdir={q(str(self.lower))},upperdir={q(upper)},workdir={q(work)} {q(root)}",
            f"mount --bind {q(root)} {q(root)}",
            f"mount -t proc proc {q(root)}/proc",
            f"mount --rbind /dev {q(root)}/dev",
            f"mount --rbind /sys {q(root)}/sys",
            f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(root)}/dev/shm",
            # systemd writes status lines to /dev/console: the host's console.
            f"if [ -e {q(root)}/dev/console ]; then "
            f"mount --bind /dev/null {q(root)}/dev/console; fi",
            # tmpfiles at boot touches the root's /run only (never the host's /dev).
            f"mount -t tmpfs -o mode=755,nosuid,nodev tmpfs {q(root)}/run",
            f"mkdir -p {q(dropin)}",
            f"printf %s {q(TMPFILES_DROPIN)} > {q(dropin)}/50-lab.conf",
            f"cp -L /etc/resolv.conf {q(root)}/etc/resolv.conf",
        ]
        for cgroup in self._cgroups:
            lines.append(f"echo $$ > {q(cgroup + '/cgroup.procs')}")
        mask_args = " ".join(q(f"systemd.mask={unit}") for unit in self.masks())
        lines += [
            "ip link set lo up",
            "export container=unshare",
            f"exec chroot {q(root)} /lib/systemd/systemd --system --unit=basic.target "
            f"{mask_args} </dev/null >/dev/null 2>&1",
        ]
        return "\n".join(lines) + "\n"

    def command(self, *argv: str | Sequence[str], net: bool = True) -> list[str]:
        """``nsenter`` into the lab and its root; ``net=False`` keeps the host's network
        (for apt-get: the lab's network namespace has only loopback)."""
        flags = ["-m", "-p", "-u", *(["-n"] if net else []), "-r", "-w"]
        args = argv[0] if len(argv) == 1 and not isinstance(argv[0], str) else argv
        return ["nsenter", "-t", str(self.pid), *flags, "--", *[str(a) for a in args]]

    def run(
        self,
        *argv: str | Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        net: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*argv, net=net)
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
            raise LabCommandError(
                proc.returncode, cmd[cmd.index("--") + 1 :], proc.stdout, proc.stderr
            )
        return proc


def _ensure_test_root(release: str) -> Path:
    root = root_of(release)
    if (root / "lib/systemd/systemd").exists():
        return root
    started = time.monotonic()
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"debootstrap-{release}-test.log"
    with open(log, "wb") as out:
        proc = subprocess.run([*DEBOOTSTRAP, release, str(tmp), MIRROR], stdout=out, stderr=out)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        pytest.fail(f"debootstrap of the {release} test root failed:\n" + "\n".join(tail))
    tmp.rename(root)
    TIMINGS[f"debootstrap ({release} test root)"] = time.monotonic() - started
    return root


@pytest.fixture(scope="session")
def deb() -> Path:
    """dist/host-supervisor_<version>_amd64.deb, built (or reused) for these sources."""
    require_package_test()
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "packaging/build-deb"), "--if-changed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    TIMINGS["build-deb"] = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(f"packaging/build-deb failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    debs = sorted((REPO / "dist").glob("host-supervisor_*_amd64.deb"), key=os.path.getmtime)
    assert debs, f"packaging/build-deb made no .deb in dist/:\n{proc.stdout}"
    return debs[-1]


@pytest.fixture(scope="module", params=list(RELEASES))
def debian(request: pytest.FixtureRequest) -> Iterator[ChrootLab]:
    """Debian 12, then 13, booted with systemd in its own namespaces, on a fresh overlay.
    Module-scoped and parametrized: each test module runs whole on one, then the other."""
    require_package_test()
    release: str = request.param
    lower = _ensure_test_root(release)
    started = time.monotonic()
    lab = ChrootLab(lower, release).boot(timeout=60)
    TIMINGS[f"boot ({release})"] = time.monotonic() - started
    shared = lab.shared_dir
    try:
        yield lab
    finally:
        lab.poweroff()
        # Nothing of the session is left on the host: no mount, no directory, no
        # process, and the cached root untouched.
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(shared) not in mounts, f"a mount of the lab is left on the host: {shared}"
        assert not shared.exists(), f"the lab's directory is left on the host: {shared}"
        assert not (lower / "usr/lib/host-supervisor").exists(), "the cached root was changed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "package test timings")
        for phase, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{phase}: {seconds:.1f}s")
