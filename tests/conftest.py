"""Fixtures shared by every test: the systemd lab.

Integration tests take the ``lab`` fixture; without root or ``unshare`` they skip with
the reason. Set HOST_SUPERVISOR_REQUIRE_LAB=1 (CI does) to make that a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from supervisor.testing.lab import Lab, lab_unavailable_reason


def lab_available() -> bool:
    """True when this machine can boot the systemd lab (root, unshare, nsenter, systemd)."""
    return lab_unavailable_reason() is None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the lab with ``lab``, so ``-m 'not lab'`` skips them."""
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


def skip_without_lab() -> None:
    """Skip the calling test (fail it under HOST_SUPERVISOR_REQUIRE_LAB=1) when no lab can boot."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("HOST_SUPERVISOR_REQUIRE_LAB") == "1":
        pytest.fail(f"HOST_SUPERVISOR_REQUIRE_LAB=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A systemd lab booted once per test module; tests use distinct unit names."""
    skip_without_lab()
    booted = Lab().boot()
    try:
        yield booted
    finally:
        booted.poweroff()
