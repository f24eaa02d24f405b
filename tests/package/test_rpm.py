"""The .rpm: its spec checked with rpmlint, built by packaging/build-rpm with rpmbuild on
this machine, then inspected with `rpm -qp` and installed with `rpm --root` into a scratch
root, whose venv is then imported by every Python of packaging/pythons this machine has.

Run explicitly: .venv/bin/pytest tests/package/test_rpm.py -q  (about a minute; the
wheels come from PyPI, cached by pip). Skipped only when rpmbuild is missing and
cannot be installed; with HOST_SUPERVISOR_REQUIRE_LAB=1 that is a failure.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = "/usr/lib/host-supervisor"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
SPEC = REPO / "packaging" / "rpm" / "host-supervisor.spec"
PYTHONS = [
    line
    for line in (REPO / "packaging" / "pythons").read_text().splitlines()
    if line and not line.startswith("#")
]


def _need_rpmbuild() -> None:
    if shutil.which("rpmbuild") and shutil.which("rpmlint"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "rpm", "rpmlint"],
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=600,
            check=False,
        )
    if shutil.which("rpmbuild") and shutil.which("rpmlint"):
        return
    reason = (
        "rpmbuild or rpmlint is missing and could not be installed (apt-get install rpm rpmlint)"
    )
    if os.environ.get("HOST_SUPERVISOR_REQUIRE_LAB") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _rpm(*args: str) -> str:
    done = subprocess.run(["rpm", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def package() -> Path:
    _need_rpmbuild()
    done = subprocess.run(
        [str(REPO / "packaging" / "build-rpm")],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    built = Path(done.stdout.strip().splitlines()[-1])
    assert built.name.startswith(f"host-supervisor-{VERSION}-1.")
    assert built.parent == REPO / "dist"
    assert built.is_file()
    return built


@pytest.fixture(scope="module")
def scratch_root(package: Path) -> Iterator[Path]:
    Path("/var/tmp").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="host-supervisor-rpm-root.", dir="/var/tmp"))
    try:
        _rpm("--root", str(root), "-i", "--nodeps", "--noscripts", str(package))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert not root.exists()


def test_the_spec_passes_rpmlint() -> None:
    _need_rpmbuild()
    done = subprocess.run(
        ["rpmlint", "--rpmlintrc", str(SPEC.with_name("rpmlintrc")), str(SPEC)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stdout, done.stdout


def test_version_comes_from_pyproject(package: Path) -> None:
    assert _rpm("-qp", "--queryformat", "%{NAME} %{VERSION}", str(package)) == (
        f"host-supervisor {VERSION}"
    )
    spec = SPEC.read_text()
    # The fallbacks used when the source rpm is rebuilt without build-rpm's --define.
    assert f"%{{!?hs_version:{VERSION}}}" in spec
    assert f"%{{!?hs_python_min:%global hs_python_min {PYTHONS[0]}}}" in spec
    abi = " or ".join(f"python(abi) = {v}" for v in PYTHONS)
    assert f"%global hs_python_abi ({abi})" in spec
    # The glibc floor build-rpm read from the wheels is the fallback's.
    built = re.search(r"^glibc >= (\S+)$", _rpm("-qp", "--requires", str(package)), re.M)
    assert built and f"%global hs_glibc {built[1]}}}" in spec, built


def test_file_list(package: Path) -> None:
    files = set(_rpm("-qpl", str(package)).split())
    expected = {
        f"{VENV}/bin/python",
        f"{VENV}/bin/host-supervisor",
        f"{VENV}/pyvenv.cfg",
        "/usr/bin/host-supervisor",
        "/usr/lib/systemd/system/host-supervisor.service",
        "/usr/lib/systemd/catalog/host-supervisor.catalog",
        "/etc/host-supervisor",
        "/etc/host-supervisor/host-supervisor.yaml",
        "/etc/host-supervisor/policies.d",
        "/etc/host-supervisor/policies.d/nginx.yaml.example",
        "/usr/share/man/man8/host-supervisor.8.gz",
        "/usr/share/man/man5/host-supervisor.yaml.5.gz",
        "/usr/share/bash-completion/completions/host-supervisor",
        "/usr/share/zsh/site-functions/_host-supervisor",
        "/usr/share/fish/vendor_completions.d/host-supervisor.fish",
        "/var/lib/host-supervisor",
    }
    assert expected <= files, expected - files
    assert any(
        f.startswith(f"{VENV}/lib/python3") and f.endswith("/site-packages/supervisor/cli.py")
        for f in files
    )
    assert any("/site-packages/pydantic/" in f for f in files)
    assert not any("BUILDROOT" in f or "/dist/rpm" in f for f in files)


def test_config_files(package: Path) -> None:
    configs = set(_rpm("-qp", "--configfiles", str(package)).split())
    shipped = {
        f"/etc/host-supervisor/{p.relative_to(REPO / 'etc' / 'host-supervisor')}"
        for p in (REPO / "etc" / "host-supervisor").rglob("*")
        if p.is_file()
    }
    assert "/etc/host-supervisor/host-supervisor.yaml" in shipped
    assert configs == shipped
    # noreplace: rpm shows %config(noreplace) as flag "n" in --dump... check the flags.
    flags = _rpm("-qp", "--queryformat", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", str(package))
    for line in flags.splitlines():
        fflags, name = line.split(" ", 1)
        if name in shipped:
            assert "c" in fflags and "n" in fflags, line


def test_scriptlets_are_the_systemd_ones(package: Path) -> None:
    scripts = _rpm("-qp", "--scripts", str(package))
    post = scripts.split("postinstall scriptlet", 1)[1].split("scriptlet", 1)[0]
    preun = scripts.split("preuninstall scriptlet", 1)[1].split("scriptlet", 1)[0]
    postun = scripts.split("postuninstall scriptlet", 1)[1]
    # Debian's rpm: the fallbacks (systemctl); Fedora: systemd-update-helper.
    assert "preset" in post or "install-system-units" in post
    assert "host-supervisor.service" in post
    assert "$1 -eq 1" in post  # first install only
    assert "disable" in preun or "remove-system-units" in preun
    assert "host-supervisor.service" in preun
    assert "$1 -eq 0" in preun  # removal, not upgrade
    assert "try-restart" in postun or "mark-restart" in postun
    assert "host-supervisor.service" in postun
    assert "%systemd" not in scripts  # every macro expanded


def test_requires_are_sane(package: Path) -> None:
    lines = _rpm("-qp", "--requires", str(package)).splitlines()
    requires = {line.split()[0] for line in lines}
    # A python3 range and one of its ABIs, not one binary; the glibc floor.
    last = PYTHONS[-1].split(".")
    after = f"{last[0]}.{int(last[1]) + 1}"
    assert f"(python3 >= {PYTHONS[0]} with python3 < {after})" in lines, lines
    assert f"({' or '.join(f'python(abi) = {v}' for v in PYTHONS)})" in lines, lines
    assert any(line.startswith("glibc >= 2.") for line in lines), lines
    assert not any(r.startswith("/usr/bin/python") for r in requires), requires
    assert "systemd" in requires
    assert "/bin/sh" in requires
    # Nothing the package itself carries, nothing from pip's metadata, no build paths.
    for r in requires:
        assert not r.startswith(VENV), r
        assert "dist(" not in r, r
        assert "BUILDROOT" not in r, r
        assert not (r.startswith("lib") and "-" in r.split(".so")[0]), r
    provides = _rpm("-qp", "--provides", str(package))
    assert ".so" not in provides  # the venv's libraries are private


def test_installs_the_layout_into_a_scratch_root(scratch_root: Path) -> None:
    root = scratch_root
    venv = root / VENV.lstrip("/")
    link = root / "usr/bin/host-supervisor"
    assert link.is_symlink()
    assert (link.parent / os.readlink(link)).resolve() == (venv / "bin/host-supervisor").resolve()
    assert (root / "usr/lib/systemd/system/host-supervisor.service").is_file()
    assert (root / "etc/host-supervisor/host-supervisor.yaml").is_file()
    assert (root / "etc/host-supervisor/policies.d/nginx.yaml.example").is_file()
    assert (root / "usr/share/man/man8/host-supervisor.8.gz").is_file()
    assert (root / "usr/share/man/man5/host-supervisor.yaml.5.gz").is_file()
    assert (root / "usr/share/bash-completion/completions/host-supervisor").is_file()
    assert (root / "usr/share/zsh/site-functions/_host-supervisor").is_file()
    assert (root / "usr/share/fish/vendor_completions.d/host-supervisor.fish").is_file()
    state = root / "var/lib/host-supervisor"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700

    # The venv's interpreter is the system's python3, whichever of ours it is.
    assert os.readlink(venv / "bin/python3") == "/usr/bin/python3"
    assert glob.glob(str(root / "usr/share/doc/host-supervisor*/sbom.cdx.json"))
    assert glob.glob(str(root / "usr/share/doc/host-supervisor*/examples/nginx.yaml"))
    # The venv points at its installed path, not at the buildroot.
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "BUILDROOT" not in cfg and "/dist/rpm" not in cfg
    script = (venv / "bin/host-supervisor").read_text()
    assert script.startswith(f"#!{VENV}/bin/python")
    leftovers = subprocess.run(
        ["grep", "-rlI", "BUILDROOT", str(venv)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == ""

    # And it runs (the interpreter directly: the shebang names the final path).
    done = subprocess.run(
        [str(venv / "bin/python"), str(venv / "bin/host-supervisor"), "--version"],
        capture_output=True,
        cwd=root,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert VERSION in done.stdout
    done = subprocess.run(
        [str(venv / "bin/python"), "-I", "-c", "import supervisor; print(supervisor.__file__)"],
        capture_output=True,
        cwd=root,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(venv))


@pytest.mark.parametrize("version", PYTHONS)
def test_every_python_imports_the_venv(scratch_root: Path, version: str) -> None:
    """Each Python's tree with the shared one, loaded by that Python (when this machine
    has it: pyenv's, or the system's); the booted Debian 12 and 13 run 3.11 and 3.13."""
    candidates = [
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
        *sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}")),
    ]
    found = next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        pytest.skip(f"no python{version} on this machine")
    site = scratch_root / VENV.lstrip("/") / f"lib/python{version}/site-packages"
    script = (
        "import site, sys; site.addsitedir(sys.argv[1]); "
        "import aiohttp, dbus_fast, httptools, psutil, pydantic_core, uvloop, yaml, yarl; "
        "from yaml import CSafeLoader; import apprise, supervisor.cli, supervisor.daemon.startup; "
        "print(supervisor.cli.__file__)"
    )
    done = subprocess.run(
        [found, "-I", "-S", "-B", "-c", script, str(site)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "/lib/python3/site-packages/supervisor/cli.py" in done.stdout
