"""The .deb as built, before anyone installs it (issue 16, items 3 and 5): reproducible to
the byte, its dependencies a python3 range, its venv the locked set for every Python we
support (and nothing vendored from libsystemd), its SBOM the same set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.package.conftest import REPO, TIMINGS

VENV = "usr/lib/host-supervisor"


def pythons() -> list[str]:
    lines = (REPO / "packaging/pythons").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def locked() -> dict[str, str]:
    """name -> version of every pin of the lock that applies on Linux."""
    pins = re.findall(
        r"^([a-z0-9._-]+)==([^\s;\\]+)( ; [^\\\n]+)?",
        (REPO / "packaging/requirements.lock").read_text(),
        re.M,
    )
    return {name: version for name, version, marker in pins if "win32" not in marker}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def members(deb: Path) -> Iterator[tarfile.TarInfo]:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        yield from tar.getmembers()


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_two_builds_give_the_same_bytes(deb: Path, tmp_path: Path) -> None:
    """A second build, in other temporary directories, from the same commit and lock."""
    out = tmp_path / "again"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        [str(REPO / "packaging/build-deb"), "--output", str(out), "--no-lintian"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "TMPDIR": str(scratch)},
        check=False,
    )
    TIMINGS["build-deb again (reproducibility)"] = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = out / deb.name
    first, second = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (deb, again))
    if first != second:  # say which member differs, for the one who has to fix it
        a = {m.name: (m.mode, m.mtime, m.size) for m in members(deb)}
        b = {m.name: (m.mode, m.mtime, m.size) for m in members(again)}
        diff = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
        pytest.fail(f"{deb.name} differs between two builds ({first} != {second}): {diff[:20]}")


def test_depends_on_a_python3_range_and_the_libraries_it_uses(deb: Path) -> None:
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    first, last = pythons()[0], pythons()[-1]
    after = f"{last.split('.')[0]}.{int(last.split('.')[1]) + 1}"
    assert f"python3 (>= {first})" in depends and f"python3 (<< {after})" in depends, depends
    assert any(d.startswith("libc6 (>= ") for d in depends), depends  # the glibc floor
    for need in ("systemd", "dbus"):
        assert need in depends, depends


def test_the_venv_holds_the_lock_for_every_python(deb: Path) -> None:
    names = {m.name.removeprefix("./") for m in members(deb)}
    shared = f"{VENV}/lib/python3/site-packages"
    for version in pythons():
        site = f"{VENV}/lib/python{version}/site-packages"
        assert f"{site}/host-supervisor.pth" in names
        tag = "cpython-" + version.replace(".", "")
        assert any(n.startswith(f"{site}/pydantic_core/") and tag in n for n in names), version
    installed: dict[str, str] = {}
    for name in names:
        m = re.fullmatch(
            rf"{VENV}/lib/python3[.0-9]*/site-packages/([^/]+)-([^-/]+)\.dist-info", name
        )
        if m:
            installed[normalize(m[1])] = m[2]
    expected = {normalize(k): v for k, v in locked().items()}
    assert {k: v for k, v in installed.items() if k != "host-supervisor"} == expected
    assert f"{shared}/supervisor/cli.py" in names
    # Nothing vendored beside the Python modules, nothing byte-compiled, no pip.
    assert not [n for n in names if ".libs/" in n or "cysystemd" in n], "vendored libraries"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if "/site-packages/pip/" in n]


def test_the_sbom_lists_the_venv(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(tmp_path)], check=True)
    sbom = json.loads((tmp_path / "usr/share/doc/host-supervisor/sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("host-supervisor", field(deb, "Version"))
    components = {normalize(c["name"]): c["version"] for c in sbom["components"]}
    assert components == {normalize(k): v for k, v in locked().items()}
    assert all(c["purl"].startswith("pkg:pypi/") for c in sbom["components"])
    # Reproducible: no random serial number; the time is the source's (SOURCE_DATE_EPOCH).
    assert "serialNumber" not in sbom
    epoch = int(subprocess.check_output(["git", "-C", str(REPO), "log", "-1", "--format=%ct"]))
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat()
    assert sbom["metadata"].get("timestamp", stamp) == stamp
