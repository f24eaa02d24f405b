"""Replays a whole-host scenario through the daemon, with every port faked.

A scenario is `tests/scenarios/host/NAME/input.yaml`:

    description: one line
    shadow: true                 # run --shadow (default false)
    main: {...}                  # the main config (host-supervisor.yaml)
    policies: {web: {...}}       # policies.d/web.yaml, and so on
    units:                       # fake systemd's units at the start
      web.service: {state: active, restart: "no", can_reload: true, after_start: active}
      app.service: {requires: [db.service], after: [db.service]}  # also binds_to, part_of:
                                 # what systemd's Requires= (...) name, as the daemon reads it
    events:                      # in time order
      - {at: 5s, unit: web.service, state: failed, result: exit-code}
      - {at: 5s, probe: web.service/http, status: critical, message: refused}
      - {at: 6s, after_start: {web.service: crash}}      # what the next starts lead to
      - {at: 9s, operator: pause, unit: web.service}     # pause resume resume-all reset;
                                                         # pause: for: 1min, reason: ...
                                                         # failover (to:) failback;
                                                         # by: who asked (the socket's caller)
      - {at: 9s, reload: {policies: {...}, main: {...}}} # rewrite the files, reload
      - {at: 9s, daemon: kill}                           # SIGKILL and start again
      - {at: 9s, daemon: kill, down: 3s}                 # ... 3 s later
      - {at: 9s, daemon: restart}                        # SIGTERM and start again
      - {at: 9s, bus: down}                              # or up
      - {at: 9s, daemon_reload: {app.service: {requires: [db.service]}}}  # new unit
                                                         # files, then systemd's Reloading
      - {at: 9s, store: full}                            # or locked; ok
      - {at: 9s, host: {disk: 95, memory: 20}}
      - {at: 9s, can_recover: {web.service: false}}
      - {at: 9s, restore: failing}                       # or working
      - {at: 9s, config_changed: web.service}            # its restore paths changed
    proven: [web.service]        # units with a proven snapshot (for a rollback)
    until: 10m

The daemon runs on a virtual-time event loop: every timer fires at its exact time
and no test sleeps. A kill abandons the daemon's loop (nothing of it runs again)
and starts a new daemon on a new loop at the same virtual time, over the same
store and fake systemd. The summary lists what the world saw (systemd jobs,
alerts, history, sd_notify) with times, and each unit's final state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from supervisor.checks.result import Status
from supervisor.config import load_config
from supervisor.config.values import parse_duration
from supervisor.daemon import Daemon, DaemonOptions
from supervisor.daemon.loop import Stored
from supervisor.daemon.ports import Ports
from supervisor.testing.fake_changes import FakeChanges
from supervisor.testing.fake_cluster import FakeCluster, FakeEtcd
from supervisor.testing.fakes import (
    FakeAlerts,
    FakeCommands,
    FakeControl,
    FakeHost,
    FakeNotifier,
    FakeProbes,
    FakeRepairs,
    FakeStore,
    FakeSystemd,
    FakeUnit,
    Timeline,
)
from supervisor.testing.virtual_time import VirtualTimeLoop

EPOCH = 1_800_000_000.0  # the scenario's time 0, as a wall-clock time
HOSTNAME = "host1"


class World:
    """Everything that outlives one daemon process: systemd, the store, the files."""

    def __init__(self, spec: dict[str, Any], config_dir: Path) -> None:
        self.loop: VirtualTimeLoop | None = None
        self.timeline = Timeline(self.clock, EPOCH)
        units = {
            name: FakeUnit(
                name,
                active_state=raw.get("state", "active"),
                sub_state=raw.get("sub", _sub(raw.get("state", "active"))),
                result=raw.get("result", "success"),
                main_pid=100 if raw.get("state", "active") == "active" else 0,
                can_reload=raw.get("can_reload", False),
                restart=raw.get("restart", "no"),
                after_start=raw.get("after_start", "active"),
                depends_on=_depends_on(raw),
            )
            for name, raw in (spec.get("units") or {}).items()
        }
        self.systemd = FakeSystemd(self.timeline, units)
        self.store = FakeStore(self.timeline)
        self.probes = FakeProbes()
        self.commands = FakeCommands(self.timeline)
        self.host = FakeHost()
        self.repairs = FakeRepairs(self.systemd, self.timeline)
        self.repairs.proven_units.update(spec.get("proven") or ())
        self.changes = FakeChanges(self.timeline)
        self.etcd = FakeEtcd(self.timeline, self.clock)
        self.config_dir = config_dir
        self.shadow = bool(spec.get("shadow", False))
        self.write_config(spec.get("main") or {}, spec.get("policies") or {})

    def clock(self) -> float:
        return EPOCH + (self.loop.time() if self.loop is not None else 0.0)

    def write_config(self, main: dict[str, Any], policies: dict[str, Any]) -> None:
        policy_dir = self.config_dir / "policies.d"
        policy_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "host-supervisor.yaml").write_text(yaml.safe_dump(main))
        for old in policy_dir.glob("*.yaml"):
            old.unlink()
        for name, policy in policies.items():
            (policy_dir / f"{name}.yaml").write_text(yaml.safe_dump(policy))

    def daemon(self) -> Daemon:
        loaded = load_config(self.config_dir)
        assert not loaded.errors, [str(e) for e in loaded.errors]
        ports = Ports(
            manager=self.systemd,
            repairs=self.repairs,
            probes=self.probes,
            commands=self.commands,
            alerts=FakeAlerts(self.timeline),
            store=self.store,
            notifier=FakeNotifier(self.timeline),
            host=self.host,
            control=FakeControl,
            clock=self.clock,
            hostname=HOSTNAME,
            log_level=lambda level: self.timeline.add(f"log level: {level}"),
            cluster=self._cluster,
            changes=self.changes,
        )
        options = DaemonOptions(
            self.config_dir, self.config_dir / "state", Path("/nonexistent"), dry_run=self.shadow
        )
        stored = Stored(self.store.load_units(), self.store.load_doc("guard") or {})
        return Daemon(options, loaded, ports, stored)

    def _cluster(
        self, config: Any, me: str, units: dict[str, float], jobs: Any, feed: Any, **_: Any
    ) -> FakeCluster:
        self.etcd.watchers.clear()  # the previous process's watch died with it
        return FakeCluster(self.etcd, self.systemd, me, units, feed)


DEPENDENCY_KEYS = ("requires", "binds_to", "part_of", "after")


def _depends_on(raw: dict[str, Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for key in DEPENDENCY_KEYS for name in raw.get(key, ())))


def _sub(state: str) -> str:
    return {"active": "running", "failed": "failed", "activating": "start"}.get(state, "dead")


class _Restart(Exception):
    def __init__(self, index: int, how: str, down: float) -> None:
        self.index, self.how, self.down = index, how, down


async def _drive(
    world: World, daemon: Daemon, events: list[dict[str, Any]], start: int, until: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(daemon.run())
    for index in range(start, len(events)):
        raw = events[index]
        await asyncio.sleep(max(0.0, parse_duration(raw["at"]) - loop.time()))
        if "daemon" in raw:
            if raw["daemon"] == "restart":
                daemon.request_stop()
                await runner
            raise _Restart(index, raw["daemon"], parse_duration(raw.get("down", "0s")))
        await _apply(world, daemon, raw)
    await asyncio.sleep(max(0.0, until - loop.time()))
    final = _final(daemon, world)
    daemon.request_stop()
    await runner
    return final


async def _apply(world: World, daemon: Daemon, raw: dict[str, Any]) -> None:
    if "unit" in raw and "state" in raw:
        world.timeline.add(f"world: {raw['unit']} {raw['state']} {raw.get('result', '')}".strip())
        world.systemd.set_state(
            raw["unit"],
            raw["state"],
            raw.get("sub", _sub(raw["state"])),
            raw.get("result", "success"),
        )
    elif "probe" in raw:
        unit, check = raw["probe"].split("/", 1)
        world.timeline.add(f"world: probe {unit}/{check} answers {raw['status']}")
        world.probes.set(unit, check, Status(raw["status"]), raw.get("message", raw["status"]))
    elif "after_start" in raw:
        for unit, what in raw["after_start"].items():
            world.systemd.units.setdefault(unit, FakeUnit(unit)).after_start = what
    elif "operator" in raw:
        world.timeline.add(f"operator: {raw['operator']} {raw.get('unit', '')}".strip())
        world.timeline.add(f"  -> {_operator(daemon, raw)}")
    elif "reload" in raw:
        world.write_config(raw["reload"].get("main") or {}, raw["reload"].get("policies") or {})
        world.timeline.add("operator: systemctl reload host-supervisor")
        ok = await daemon.reload()
        world.timeline.add(f"  -> reload {'ok' if ok else 'refused'}")
    elif "daemon_reload" in raw:
        world.timeline.add("world: systemctl daemon-reload")
        for unit, deps in raw["daemon_reload"].items():
            world.systemd.units.setdefault(unit, FakeUnit(unit)).depends_on = _depends_on(deps)
        world.systemd.reloaded()
    elif "bus" in raw:
        world.timeline.add(f"world: system bus {raw['bus']}")
        world.systemd.bus_down = raw["bus"] == "down"
    elif "store" in raw:
        world.timeline.add(f"world: state database {raw['store']}")
        if raw["store"] == "ok":
            world.store.available()
        else:
            world.store.unavailable = f"state database is {raw['store']} (fake)"
    elif "host" in raw:
        world.host.disk = raw["host"].get("disk", world.host.disk)
        world.host.memory = raw["host"].get("memory", world.host.memory)
        world.timeline.add(f"world: disk {world.host.disk:g}% memory {world.host.memory:g}%")
    elif "can_recover" in raw:
        world.commands.ok.update(raw["can_recover"])
    elif "config_changed" in raw:
        world.changes.change(raw["config_changed"])
    elif "restore" in raw:
        world.repairs.restore_ok = raw["restore"] == "working"
    elif "etcd" in raw:
        world.timeline.add(f"world: etcd {raw['etcd']}")
        world.etcd.down = raw["etcd"] == "down"
    elif "etcd_other" in raw:
        other = raw["etcd_other"]
        world.etcd.put_other(other["unit"], other["holder"], bool(other.get("beats", False)))
    elif "etcd_beat" in raw:
        world.etcd.beat(raw["etcd_beat"])
    elif "etcd_delete" in raw:
        world.etcd.delete(raw["etcd_delete"], why="deleted by the other host")
    else:
        raise ValueError(f"unknown scenario event {raw!r}")


def _operator(daemon: Daemon, raw: dict[str, Any]) -> str:
    verb, unit, by = raw["operator"], raw.get("unit", ""), raw.get("by", "")
    match verb:
        case "pause":
            duration = parse_duration(raw["for"]) if "for" in raw else None
            paused = daemon.pause(unit, by, duration, raw.get("reason", ""))
            return "ok" if paused else "no such unit"
        case "resume":
            return "ok" if daemon.resume(unit, by) else "no such unit"
        case "resume-all":
            return "ok" if daemon.resume(None, by) else "refused"
        case "reset":
            return "ok" if daemon.reset(unit, by) else "no such unit"
        case "failover":
            refused = daemon.manual_failover(unit, raw.get("to"), by)
            return refused or "ok"
        case "failback":
            refused = daemon.manual_failback(unit, by)
            return refused or "ok"
        case "handover":
            refused = daemon.handover(unit, raw["to_host"], by)
            return refused or "ok"
    raise ValueError(f"unknown operator command {verb!r}")


_FINAL_FIELDS = ("condition", "state", "phase", "attempts", "next_action_in_s", "held", "paused")


def _final(daemon: Daemon, world: World) -> dict[str, Any]:
    units: dict[str, Any] = {}
    for row in daemon.unit_status():
        entry = {key: row[key] for key in _FINAL_FIELDS}
        if row["flapping"]:
            entry["flapping"] = True
        if row["failover"] is not None:
            entry["failover"] = row["failover"]
        if row.get("cluster") is not None:
            entry["cluster"] = row["cluster"]
        entry["checks"] = {c["name"]: c["state"] for c in row["checks"]}
        units[str(row["unit"])] = entry
    return {
        "status": daemon.status_line(),
        "units": units,
        "systemd": {
            name: f"{unit.active_state}/{unit.sub_state}"
            for name, unit in sorted(world.systemd.units.items())
        },
        "stored": sorted(world.store.units),
    }


def replay(scenario_dir: Path, work_dir: Path) -> str:
    return replay_world(scenario_dir, work_dir)[0]


def replay_world(scenario_dir: Path, work_dir: Path) -> tuple[str, World]:
    """The summary, and the world it leaves (its store holds the recorded history)."""
    spec = yaml.safe_load((scenario_dir / "input.yaml").read_text())
    world = World(spec, work_dir)
    events: list[dict[str, Any]] = spec.get("events") or []
    until = parse_duration(spec.get("until", "0s"))
    start, now = 0, 0.0
    final: dict[str, Any] = {}
    while True:
        loop = VirtualTimeLoop()
        loop.advance(now)
        world.loop = loop
        daemon = world.daemon()
        try:
            final = loop.run_until_complete(_drive(world, daemon, events, start, until))
            _abandon(loop)
            break
        except _Restart as restart:
            world.timeline.add(f"world: daemon {restart.how}")
            now, start = loop.time() + restart.down, restart.index + 1
            _abandon(loop)
    lines = [f"# {spec['description']}", *world.timeline.render(), "final:"]
    lines += json.dumps(final, indent=2, sort_keys=True).splitlines()
    return "\n".join(lines) + "\n", world


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """The process is gone: nothing it started runs again (as after SIGKILL)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


Replayer = Callable[[Path, Path], str]
