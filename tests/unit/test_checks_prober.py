"""The Prober: dispatch, the timeout backstop, never raising, never blocking others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.checks import BACKSTOP_GRACE, Prober, unit
from supervisor.checks.result import CheckResult, ProbeContext, Status
from supervisor.config.check import Check

CONTEXT = ProbeContext(unit="app.service", active_state="active")


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    running = Prober()
    yield running
    await running.close()


@pytest.mark.parametrize(
    ("state", "expect", "status", "message"),
    [
        ("active", "active", Status.OK, "app.service is active"),
        ("failed", "active", Status.CRITICAL, "app.service is failed, expected active"),
        ("inactive", "inactive", Status.OK, "app.service is inactive"),
        ("", "active", Status.UNKNOWN, "state of app.service not known yet"),
    ],
)
async def test_unit_probe(
    prober: Prober, state: str, expect: str, status: Status, message: str
) -> None:
    check = Check(name="state", unit={"expect": expect})
    result = await prober.run(check, ProbeContext(unit="app.service", active_state=state))
    assert (result.status, result.message) == (status, message)


async def test_dispatches_each_kind(prober: Prober, tmp_path: Path) -> None:
    checks = [
        Check(name="d", disk={"path": str(tmp_path), "max_used": "100%"}),
        Check(name="m", memory={"host_max_used": "100%"}),
        Check(name="c", command={"argv": ["/bin/echo", "hello"]}),
        Check(name="u", unit={}),
        Check(name="t", tcp={"port": 1}),
        Check(name="p", process={}),
    ]
    results = [await prober.run(check, CONTEXT) for check in checks]
    assert [r.status for r in results] == [Status.OK] * 4 + [Status.CRITICAL] * 2
    assert results[2].message == "hello"
    assert results[5].message == "app.service has no main process"
    assert all(r.duration >= 0 for r in results)


async def test_a_probe_that_raises_is_unknown(
    prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> CheckResult:
        raise RuntimeError("psutil said no")

    monkeypatch.setattr(unit, "run", broken)
    result = await prober.run(Check(name="state", unit={}), CONTEXT)
    assert result.status is Status.UNKNOWN
    assert result.message == "probe failed: RuntimeError: psutil said no"


async def test_a_probe_raising_its_own_timeout_error_is_unknown(
    prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> CheckResult:
        raise TimeoutError

    monkeypatch.setattr(unit, "run", broken)
    result = await prober.run(Check(name="state", unit={}, timeout="10s"), CONTEXT)
    assert result.status is Status.UNKNOWN  # not the backstop: that did not expire
    assert result.message == "probe failed: TimeoutError"


async def test_the_backstop_stops_a_probe_that_overruns(
    prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(*_: object) -> CheckResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(unit, "run", stuck)
    result = await prober.run(Check(name="state", unit={}, timeout="200ms"), CONTEXT)
    assert result.status is Status.CRITICAL
    assert result.message == "timed out after 200ms"
    assert 0.2 + BACKSTOP_GRACE <= result.duration < 0.2 + BACKSTOP_GRACE + 0.5


async def test_a_multi_line_message_becomes_one_line(
    prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def chatty(*_: object) -> CheckResult:
        return CheckResult(Status.OK, "first\nsecond\n\tthird", 0.0)

    monkeypatch.setattr(unit, "run", chatty)
    result = await prober.run(Check(name="state", unit={}), CONTEXT)
    assert result.message == "first second third"


async def test_a_hung_probe_delays_no_other(prober: Prober, tmp_path: Path) -> None:
    hung = _script(tmp_path, "hung", "sleep 60\n")
    slow = asyncio.create_task(
        prober.run(Check(name="hung", command={"argv": [hung]}, timeout="3s"), CONTEXT)
    )
    quick = [
        asyncio.create_task(prober.run(check, CONTEXT))
        for check in (
            Check(name="disk", disk={"path": str(tmp_path), "max_used": "100%"}),
            Check(name="mem", memory={"host_max_used": "100%"}),
            Check(name="port", tcp={"port": 1}),
        )
    ]
    done, _ = await asyncio.wait([slow, *quick], return_when=asyncio.FIRST_COMPLETED)
    assert slow not in done
    await asyncio.gather(*quick)
    assert not slow.done(), "the quick checks finished while the hung one still runs"
    result = await slow
    assert result.message == f"{hung} timed out after 3s; killed"


def _script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_at_least_one_command_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Prober(max_concurrent_commands=0)
