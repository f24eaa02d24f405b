"""The `discover` command: an observe-only policy for every enabled service unit, from
systemd's own metadata read over D-Bus; never over an existing policy file.

Which units: the service units whose unit file is `enabled` (or `enabled-runtime`),
and the services an enabled .socket unit triggers (those are usually `static`: they
are enabled through their socket). Skipped: templates (`name@.service`; systemd does
not list their instances as enabled), units not loaded, transient or generated units,
the daemon itself, and units that already have a policy (by unit, or by file name).
The facts are mapped to a policy by `supervisor.config.discovery`, which is pure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from supervisor.config.discovery import (
    Discovered,
    Listen,
    UnitFacts,
    discovered_policy,
    policy_file_name,
)
from supervisor.config.loader import POLICY_DIR, ConfigIssue, load_config
from supervisor.config.policy import Policy
from supervisor.errors import BusError, ConfigError
from supervisor.fsutil import create_new_at
from supervisor.systemd.bus import Caller, describe, system_bus_address
from supervisor.systemd.introspection import (
    BUS_NAME,
    MANAGER_INTERFACE,
    MANAGER_PATH,
    PROPERTIES_INTERFACE,
    SERVICE_INTERFACE,
    UNIT_INTERFACE,
)

__all__ = ["Found", "discover_command", "read_units"]

SOCKET_INTERFACE = "org.freedesktop.systemd1.Socket"
DAEMON_UNIT = "host-supervisor.service"
ENABLED = ("enabled", "enabled-runtime")
"""Unit file states discover takes: enabled for good, or for this boot (`enable --runtime`)."""
SKIPPED_FILE_STATES = ("transient", "generated", "masked", "masked-runtime")
CALL_TIMEOUT = 10.0


@dataclass
class Found:
    """What systemd has: the units to write policies for, and the units passed over
    with the reason (unit -> reason)."""

    units: list[UnitFacts] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class _Bus:
    """Calls to systemd on one connection, each under a timeout."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.caller = Caller(CALL_TIMEOUT)

    async def call(
        self, path: str, interface: str, member: str, signature: str, body: list[Any], what: str
    ) -> list[Any]:
        message = Message(
            destination=BUS_NAME,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        reply = await self.caller(self.bus.call(message), what)
        if reply is None or reply.message_type is MessageType.ERROR:
            detail = reply.body[0] if reply is not None and reply.body else "no reply"
            name = reply.error_name if reply is not None else ""
            raise BusError(f"{what}: {detail} ({name})")
        return list(reply.body)

    async def manager(self, member: str, signature: str, body: list[Any]) -> Any:
        reply = await self.call(MANAGER_PATH, MANAGER_INTERFACE, member, signature, body, member)
        return reply[0]

    async def properties(self, path: str, interface: str, what: str) -> dict[str, Any]:
        body = await self.call(
            path, PROPERTIES_INTERFACE, "GetAll", "s", [interface], f"{what}: GetAll"
        )
        return {name: variant.value for name, variant in body[0].items()}


async def read_units(address: str | None = None) -> Found:
    """Read the enabled service units and their facts from systemd over D-Bus."""
    where = address or system_bus_address()
    try:
        raw = MessageBus(bus_address=where, bus_type=BusType.SYSTEM)
        async with asyncio.timeout(CALL_TIMEOUT):
            bus = await raw.connect()
    except Exception as exc:
        raise BusError(f"cannot connect to the system bus at {where}: {describe(exc)}") from exc
    try:
        return await _read(_Bus(bus))
    finally:
        bus.disconnect()


async def _read(bus: _Bus) -> Found:
    found = Found()
    files = await bus.manager(
        "ListUnitFilesByPatterns", "asas", [list(ENABLED), ["*.service", "*.socket"]]
    )
    names = sorted({os.path.basename(path) for path, _state in files})
    services = [n for n in names if n.endswith(".service")]
    for socket in (n for n in names if n.endswith(".socket") and "@" not in n):
        try:
            unit = await _unit(bus, socket)
        except BusError as exc:
            found.skipped[socket] = f"not read: {exc}"
            continue
        if unit is not None:
            services += [t for t in map(str, unit.get("Triggers", ())) if t.endswith(".service")]
    wanted: list[str] = []
    for name in sorted(set(services)):
        if "@" in name:
            found.skipped[name] = "a template or an instance of one"
        elif name == DAEMON_UNIT:
            found.skipped[name] = "the daemon itself"
        else:
            wanted.append(name)

    async def read(name: str) -> UnitFacts | None:
        try:
            return await _service(bus, name, found)
        except BusError as exc:
            found.skipped[name] = f"not read: {exc}"
            return None

    seen: set[str] = set()
    for facts in await asyncio.gather(*(read(name) for name in wanted)):
        if facts is not None and facts.unit not in seen:  # an alias and its unit: once
            seen.add(facts.unit)
            found.units.append(facts)
    return found


async def _unit(bus: _Bus, name: str) -> dict[str, Any] | None:
    path = await bus.manager("LoadUnit", "s", [name])
    unit = await bus.properties(path, UNIT_INTERFACE, name)
    unit["_path"] = path
    return unit if unit.get("LoadState") == "loaded" else None


async def _service(bus: _Bus, name: str, found: Found) -> UnitFacts | None:
    unit = await _unit(bus, name)
    if unit is None:
        found.skipped[name] = "not loaded"
        return None
    unit_id = str(unit.get("Id") or name)
    file_state = str(unit.get("UnitFileState", ""))
    if unit.get("Transient") or file_state in SKIPPED_FILE_STATES:
        found.skipped[name] = f"unit file state {file_state or 'transient'}"
        return None
    if unit_id == DAEMON_UNIT:
        found.skipped[name] = "the daemon itself"
        return None
    service = await bus.properties(unit["_path"], SERVICE_INTERFACE, name)
    listens: list[Listen] = []
    for socket in sorted(t for t in unit.get("TriggeredBy", ()) if t.endswith(".socket")):
        socket_unit = await _unit(bus, socket)
        if socket_unit is None:
            continue
        props = await bus.properties(socket_unit["_path"], SOCKET_INTERFACE, socket)
        listens += [Listen(socket, kind, address) for kind, address in props.get("Listen", ())]
    return UnitFacts(
        unit=unit_id,
        description=str(unit.get("Description", "")),
        restart=str(service.get("Restart", "no")),
        can_reload=bool(service.get("ExecReload")),
        listens=tuple(listens),
    )


# -- the command ---------------------------------------------------------------------------


def _wanted(requested: list[str]) -> set[str]:
    return {name if "." in name else f"{name}.service" for name in requested}


def discover_command(
    config_dir: Path,
    *,
    dry_run: bool,
    units: list[str],
    out: TextIO,
    err: TextIO,
    address: str | None = None,
) -> int:
    """Write (or with dry_run print) a policy per discovered unit; 0 when every policy
    wanted was written or already there, 1 otherwise."""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        print(f"host-supervisor discover: {exc}", file=err)
        return 1
    directory = config_dir / POLICY_DIR
    refused = [i for i in loaded.errors if i.refused and i.path in (config_dir, directory)]
    if refused:  # its policies could not be read: what has one is unknown
        print(f"host-supervisor discover: {refused[0]}", file=err)
        return 1
    claimed = {**_units_of_broken_files(loaded.errors), **loaded.sources}
    try:
        found = asyncio.run(read_units(address))
    except BusError as exc:
        print(f"host-supervisor discover: {exc}", file=err)
        return 1
    wanted = _wanted(units)
    missing = sorted(wanted - {facts.unit for facts in found.units})
    code = 0
    for name in missing:
        reason = found.skipped.get(name, "not an enabled service unit")
        print(f"{name}: no policy discovered: {reason}", file=err)
        code = 1
    plans: list[Discovered] = []
    for facts in found.units:
        if wanted and facts.unit not in wanted:
            continue
        if facts.unit in claimed:
            print(f"skipped {facts.unit}: has a policy in {claimed[facts.unit]}", file=out)
            continue
        path = directory / policy_file_name(facts.unit)
        if path.is_symlink() or path.exists():
            print(f"skipped {facts.unit}: {path} exists (never overwritten)", file=out)
            continue
        channels = tuple(loaded.main.alerts.channels)
        plans.append(discovered_policy(facts, loaded.main.guard.protected, channels))
    if not wanted:
        for name, reason in sorted(found.skipped.items()):
            print(f"skipped {name}: {reason}", file=out)
    valid: list[Discovered] = []
    for plan in plans:
        if problem := _invalid(plan):  # a bug of the mapping: say so, write nothing for it
            print(f"{directory / plan.file_name}: not written: {problem}", file=err)
            code = 1
        else:
            valid.append(plan)
    plans = valid
    if dry_run:
        for plan in plans:
            print(f"# would write {directory / plan.file_name}:\n{plan.text}", file=out)
        return code
    written = _write(directory, plans, out, err)
    for plan in plans:
        for warning in plan.warnings:
            print(f"warning: {warning}", file=err)
    if written < len(plans):
        code = 1
    print(
        f"{written} observe-only {'policy' if written == 1 else 'policies'} written"
        + ("; check with `host-supervisor validate`, then `systemctl reload host-supervisor`")
        * bool(written),
        file=out,
    )
    return code


def _units_of_broken_files(issues: list[ConfigIssue]) -> dict[str, Path]:
    """The units that policy files with errors name, as far as they can be read: a
    policy being fixed still has its unit, and a second one would be a duplicate."""
    units: dict[str, Path] = {}
    for path in sorted({issue.path for issue in issues}):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(document, dict) and isinstance(document.get("unit"), str):
            units.setdefault(document["unit"], path)
    return units


def _invalid(plan: Discovered) -> str:
    try:
        Policy.model_validate(yaml.safe_load(plan.text))
    except Exception as exc:
        return " ".join(str(exc).split())
    return ""


def _write(directory: Path, plans: list[Discovered], out: TextIO, err: TextIO) -> int:
    """Create each policy file atomically, never over an existing one; the count written."""
    if not plans:
        return 0
    try:
        directory.mkdir(mode=0o755, exist_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        print(f"host-supervisor discover: {directory}: {exc.strerror or exc}", file=err)
        return 0
    written = 0
    try:
        for plan in plans:
            path = directory / plan.file_name
            try:
                create_new_at(dir_fd, plan.file_name, plan.text.encode(), 0o644)
            except FileExistsError:
                print(f"skipped {path}: it appeared meanwhile (never overwritten)", file=out)
                continue
            except OSError as exc:
                print(f"{path}: not written: {exc.strerror or exc}", file=err)
                continue
            written += 1
            print(f"wrote {path}", file=out)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return written


def run(args: argparse.Namespace) -> int:
    """`host-supervisor discover`."""
    return discover_command(
        args.config, dry_run=args.dry_run, units=args.unit, out=sys.stdout, err=sys.stderr
    )
