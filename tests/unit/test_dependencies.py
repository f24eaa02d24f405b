"""What pyproject.toml declares, what the code imports and what the packages ship agree
(issue 16, item 1): every third-party import declared, every dependency with a floor and a
cap, the lock pinning each within its range with hashes, no stale package data."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = [Requirement(d) for d in PYPROJECT["project"]["dependencies"]]
DECLARED = {canonicalize_name(r.name) for r in DEPENDENCIES}
LOCK = ROOT / "packaging" / "requirements.lock"


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files of supervisor/ that import it (not stdlib, not ours)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "supervisor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "supervisor":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def lock_pins() -> dict[str, tuple[Version, str, int]]:
    """name -> (version, marker, number of hashes) of every entry in the lock."""
    pins: dict[str, tuple[Version, str, int]] = {}
    entries = re.split(r"\n(?=[a-z0-9])", LOCK.read_text())
    for entry in entries:
        m = re.match(r"([a-z0-9._-]+)==([^\s;\\]+)(?: ; ([^\\\n]+))?", entry)
        if m:
            pins[canonicalize_name(m[1])] = (Version(m[2]), m[3] or "", entry.count("--hash="))
    return pins


def test_every_third_party_import_is_declared() -> None:
    providers = packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not {canonicalize_name(d) for d in providers.get(module, [module])} & DECLARED
    }
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_dependency_has_a_floor_and_a_cap() -> None:
    for req in DEPENDENCIES:
        operators = sorted(spec.operator for spec in req.specifier)
        assert operators == ["<", ">="], f"{req}: want NAME>=FLOOR,<CAP"


def test_the_lock_pins_every_dependency_within_its_range_with_hashes() -> None:
    pins = lock_pins()
    assert pins, LOCK
    for req in DEPENDENCIES:
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in {LOCK.name}: run packaging/lock-refresh"
        version, marker, _ = pins[name]
        assert marker == "", f"{name} is locked only for {marker}"
        assert version in req.specifier, f"{name}=={version} is outside {req.specifier}"
    for name, (_, _, hashes) in pins.items():
        assert hashes >= 1, f"{name} has no --hash in {LOCK.name}"
    # Nothing the code dropped lingers in the lock.
    assert "cysystemd" not in pins and "sdnotify" not in pins


def test_the_oldest_python_we_ship_for_is_requires_python() -> None:
    pythons = [
        line for line in (ROOT / "packaging" / "pythons").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert pythons == sorted(pythons, key=Version) and len(set(pythons)) == len(pythons)
    assert PYPROJECT["project"]["requires-python"] == f">={pythons[0]}"


def test_package_data_names_files_that_exist() -> None:
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        base = ROOT / package.replace(".", "/")
        for pattern in patterns:
            assert list(base.glob(pattern)), f"package-data {package}: {pattern} matches nothing"
