"""SystemdManager against a real systemd: the lab's, over its system bus from the host."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from supervisor.errors import BusError, JobFailed, UnitNotFound
from supervisor.systemd.bus import Connection
from supervisor.systemd.manager import SystemdManager, UnitSnapshot
from supervisor.testing.lab import Lab

SLEEPER = "[Service]\nExecStart=/bin/sleep 100000\n"
RELOADABLE = "[Service]\nExecStart=/bin/sleep 100000\nExecReload=/bin/true\n"


@dataclass
class Recorder:
    """Collects on_change calls with the time each arrived."""

    seen: list[tuple[float, UnitSnapshot]] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, snap: UnitSnapshot) -> None:
        self.seen.append((time.monotonic(), snap))
        self.event.set()

    def of(self, unit: str) -> list[UnitSnapshot]:
        return [s for _, s in self.seen if s.name == unit]

    async def wait(
        self, predicate: Callable[[UnitSnapshot], bool], within: float = 5.0, what: str = ""
    ) -> tuple[float, UnitSnapshot]:
        """The first on_change (already seen or to come) that satisfies ``predicate``."""
        deadline = time.monotonic() + within
        checked = 0
        while True:
            for at, snap in self.seen[checked:]:
                if predicate(snap):
                    return at, snap
            checked = len(self.seen)
            self.event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no on_change for {what or predicate} within {within}s; saw {self.seen}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), left)


@dataclass
class Client:
    manager: SystemdManager
    changes: Recorder
    runner: asyncio.Task[None]


@pytest.fixture
async def client(lab: Lab) -> AsyncIterator[Client]:
    changes = Recorder()
    manager = SystemdManager(changes, address=lab.bus_address, call_timeout=5.0)
    await manager.connect()
    runner = asyncio.create_task(manager.run())
    try:
        yield Client(manager, changes, runner)
    finally:
        await manager.close()
        await asyncio.wait_for(runner, 5)


async def in_lab(lab: Lab, *argv: str) -> str:
    """Run a command in the lab without blocking the event loop (signals keep flowing)."""
    return (await asyncio.to_thread(lab.run, *argv)).stdout


async def test_sigkill_is_reported_by_signal_not_by_polling(lab: Lab, client: Client) -> None:
    lab.install_unit("mgr-kill.service", SLEEPER)
    await in_lab(lab, "systemctl", "start", "mgr-kill.service")
    first = await client.manager.watch("mgr-kill.service")
    assert (first.load_state, first.active_state, first.sub_state) == (
        "loaded",
        "active",
        "running",
    )
    assert first.main_pid > 0 and first.result == "success"

    killed_at = time.monotonic()
    await in_lab(lab, "systemctl", "kill", "-s", "KILL", "mgr-kill.service")
    at, snap = await client.changes.wait(
        lambda s: s.name == "mgr-kill.service" and s.active_state == "failed", what="failed"
    )
    latency = at - killed_at
    print(f"\nSIGKILL -> on_change(failed) in {latency * 1000:.1f} ms")
    assert snap.result == "signal" and snap.main_pid == 0 and snap.sub_state == "failed"
    # The manager never polls; a signal takes milliseconds (the lab command itself ~30 ms).
    assert latency < 0.5
    # Service and Unit signals are reported together: never the new Result on an old state.
    for s in client.changes.of("mgr-kill.service"):
        assert not (s.result == "signal" and s.active_state == "active"), s
    assert await client.manager.snapshot("mgr-kill.service") == snap
    await client.manager.reset_failed("mgr-kill.service")
    await client.changes.wait(
        lambda s: s.name == "mgr-kill.service" and s.active_state == "inactive", what="reset"
    )


async def test_restart_gives_a_new_main_pid(lab: Lab, client: Client) -> None:
    lab.install_unit("mgr-restart.service", SLEEPER)
    assert await client.manager.start("mgr-restart.service") == "done"
    before = await client.manager.watch("mgr-restart.service")
    assert before.active_state == "active"
    started = time.monotonic()
    assert await client.manager.restart("mgr-restart.service") == "done"
    print(f"\nrestart() -> done in {(time.monotonic() - started) * 1000:.1f} ms")
    after = await client.manager.snapshot("mgr-restart.service")
    assert after.active_state == "active" and after.sub_state == "running"
    assert after.main_pid not in (0, before.main_pid)
    assert lab.show("mgr-restart.service", "MainPID")["MainPID"] == str(after.main_pid)
    assert await client.manager.stop("mgr-restart.service") == "done"
    assert (await client.manager.snapshot("mgr-restart.service")).active_state == "inactive"


async def test_start_of_a_unit_that_fails(lab: Lab, client: Client) -> None:
    lab.install_unit("mgr-false.service", "[Service]\nExecStart=/bin/false\n")
    lab.install_unit("mgr-false-oneshot.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
    await client.manager.watch("mgr-false.service")
    await client.manager.watch("mgr-false-oneshot.service")

    # Type=simple: the job is done once the process runs; the failure follows.
    assert await client.manager.start("mgr-false.service") == "done"
    _, snap = await client.changes.wait(
        lambda s: s.name == "mgr-false.service" and s.active_state == "failed", what="failed"
    )
    assert snap.result == "exit-code"
    # Type=oneshot: the job itself fails.
    assert await client.manager.start("mgr-false-oneshot.service") == "failed"
    snap = await client.manager.snapshot("mgr-false-oneshot.service")
    assert (snap.active_state, snap.result) == ("failed", "exit-code")

    with pytest.raises(UnitNotFound, match=r"mgr-nowhere\.service"):
        await client.manager.start("mgr-nowhere.service")


async def test_job_timeout_raises_job_failed(lab: Lab, client: Client) -> None:
    lab.install_unit("mgr-slow.service", "[Service]\nType=oneshot\nExecStart=/bin/sleep 100000\n")
    with pytest.raises(JobFailed, match=r"mgr-slow\.service: job /org/freedesktop/systemd1/job/"):
        await client.manager.start("mgr-slow.service", timeout=0.3)
    assert await client.manager.stop("mgr-slow.service") == "done"


async def test_a_missing_unit_is_reported_when_it_appears(lab: Lab, client: Client) -> None:
    snap = await client.manager.watch("mgr-late.service")
    assert snap.load_state == "not-found"
    assert "mgr-late.service" in client.manager.watched()
    # Other units coming and going, and a daemon-reload that does not add ours: no spam.
    lab.install_unit("mgr-other.service", SLEEPER)
    await in_lab(lab, "systemctl", "start", "mgr-other.service")
    await in_lab(lab, "systemctl", "stop", "mgr-other.service")
    await asyncio.sleep(0.3)
    assert client.changes.of("mgr-late.service") == []

    installed_at = time.monotonic()
    await asyncio.to_thread(lab.install_unit, "mgr-late.service", SLEEPER)  # + daemon-reload
    at, snap = await client.changes.wait(
        lambda s: s.name == "mgr-late.service" and s.load_state == "loaded", what="loaded"
    )
    print(
        f"\nunit file + daemon-reload -> on_change(loaded) in {(at - installed_at) * 1000:.1f} ms"
    )
    assert snap.active_state == "inactive"
    await asyncio.sleep(0.3)
    assert len(client.changes.of("mgr-late.service")) == 1, client.changes.of("mgr-late.service")

    assert await client.manager.start("mgr-late.service") == "done"
    await client.changes.wait(
        lambda s: s.name == "mgr-late.service" and s.active_state == "active", what="active"
    )
    client.manager.unwatch("mgr-late.service")
    assert "mgr-late.service" not in client.manager.watched()
    count = len(client.changes.of("mgr-late.service"))
    await in_lab(lab, "systemctl", "stop", "mgr-late.service")
    await asyncio.sleep(0.2)
    assert len(client.changes.of("mgr-late.service")) == count


async def test_a_missing_unit_started_without_daemon_reload(lab: Lab, client: Client) -> None:
    """systemd 252 loads a new unit file on start even without daemon-reload; the
    snapshot must then not mix not-found with active."""
    assert (await client.manager.watch("mgr-noreload-late.service")).load_state == "not-found"
    lab.install_unit("mgr-noreload-late.service", SLEEPER, reload=False)
    await in_lab(lab, "systemctl", "start", "mgr-noreload-late.service")
    _, snap = await client.changes.wait(
        lambda s: s.name == "mgr-noreload-late.service" and s.active_state == "active",
        what="active",
    )
    assert snap.load_state == "loaded"
    assert all(s.load_state == "loaded" for s in client.changes.of("mgr-noreload-late.service"))


async def test_unpinned_missing_unit_does_not_loop(
    lab: Lab, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Unit.Ref() (refused to an unprivileged client), systemd unloads a missing
    unit right after each read and announces it again with UnitNew: re-checks triggered
    by UnitNew are rate limited instead of chasing their own tail."""
    manager = client.manager
    calls = 0
    attach = manager._attach

    async def no_ref(watch: Any) -> None:
        return None

    async def counting(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        await attach(*args, **kwargs)

    monkeypatch.setattr(manager, "_ref", no_ref)
    monkeypatch.setattr(manager, "_attach", counting)
    await manager.watch("mgr-unpinned.service")
    await asyncio.to_thread(lab.run, "systemctl", "status", "mgr-unpinned.service", check=False)
    await asyncio.sleep(2.5)
    assert 2 <= calls <= 5, calls
    assert client.changes.of("mgr-unpinned.service") == []


async def test_bad_unit_name_is_refused_and_not_watched(client: Client) -> None:
    with pytest.raises(BusError, match="not valid"):
        await client.manager.watch("no such name")
    assert "no such name" not in client.manager.watched()


async def test_reload(lab: Lab, client: Client) -> None:
    lab.install_unit("mgr-reload.service", RELOADABLE)
    lab.install_unit("mgr-noreload.service", SLEEPER)
    for unit in ("mgr-reload.service", "mgr-noreload.service"):
        assert await client.manager.start(unit) == "done"
    assert (await client.manager.watch("mgr-reload.service")).can_reload
    assert not (await client.manager.watch("mgr-noreload.service")).can_reload
    assert await client.manager.reload("mgr-reload.service") == "done"
    with pytest.raises(BusError, match="JobTypeNotApplicable"):
        await client.manager.reload("mgr-noreload.service")


async def test_reconnects_after_the_bus_dies(lab: Lab, client: Client) -> None:
    """Kill the lab's dbus-daemon: run() reconnects (socket activation brings the bus
    back), and a watched unit's change is reported again."""
    lab.install_unit("mgr-bus.service", SLEEPER)
    await in_lab(lab, "systemctl", "start", "mgr-bus.service")
    await client.manager.watch("mgr-bus.service")
    bus_pid = lab.show("dbus.service", "MainPID")["MainPID"]

    killed_at = time.monotonic()
    await in_lab(lab, "systemctl", "kill", "-s", "KILL", "dbus.service")
    deadline = time.monotonic() + 15
    # Sampling `connected` (the manager has no event for it), not polling systemd.
    while client.manager.connected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    assert not client.manager.connected, "the loss of the bus went unnoticed"
    while not client.manager.connected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert client.manager.connected, "run() did not reconnect within 15 s"
    print(f"\ndbus-daemon SIGKILL -> reconnected in {(time.monotonic() - killed_at) * 1000:.0f} ms")
    assert lab.show("dbus.service", "MainPID")["MainPID"] not in ("0", bus_pid)

    before = len(client.changes.of("mgr-bus.service"))
    await in_lab(lab, "systemctl", "kill", "-s", "KILL", "mgr-bus.service")
    _, snap = await client.changes.wait(
        lambda s: s.name == "mgr-bus.service" and s.active_state == "failed", what="failed"
    )
    assert snap.result == "signal"
    assert len(client.changes.of("mgr-bus.service")) > before
    assert await client.manager.start("mgr-bus.service") == "done"


# -- without a lab ------------------------------------------------------------------------


async def test_unreachable_bus_names_the_address() -> None:
    address = "unix:path=/var/tmp/host-supervisor-no-such-bus.sock"
    manager = SystemdManager(lambda s: None, address=address, call_timeout=1.0)
    with pytest.raises(BusError, match=r"host-supervisor-no-such-bus\.sock"):
        await manager.connect()
    assert not manager.connected
    with pytest.raises(BusError, match="not connected"):
        await manager.start("x.service")
    await manager.close()


async def test_environment_address_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/var/tmp/hs-env-bus.sock")
    manager = SystemdManager(lambda s: None, call_timeout=1.0)
    with pytest.raises(BusError, match=r"hs-env-bus\.sock"):
        await manager.connect()


class _FakeBus:
    connected = True


class _RacingManagerProxy:
    """StartUnit whose JobRemoved arrives before its reply, as systemd may do."""

    def __init__(self, owner: SystemdManager) -> None:
        self.owner = owner

    async def call_start_unit(self, unit: str, mode: str) -> str:
        assert mode == "replace"
        self.owner._on_job_removed(7, "/org/freedesktop/systemd1/job/7", unit, "done")
        return "/org/freedesktop/systemd1/job/7"

    async def call_stop_unit(self, unit: str, mode: str) -> str:
        return "/org/freedesktop/systemd1/job/8"  # its JobRemoved never comes


async def test_job_removed_before_the_reply_is_not_lost() -> None:
    manager = SystemdManager(lambda s: None)
    fake: Any = _FakeBus()
    manager._conn = Connection(bus=fake, manager=_RacingManagerProxy(manager), address="fake")
    assert await manager.start("race.service", timeout=1.0) == "done"
    with pytest.raises(JobFailed, match=r"race\.service.*job/8"):
        await manager.stop("race.service", timeout=0.05)
