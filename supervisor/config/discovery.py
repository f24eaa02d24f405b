"""What `host-supervisor discover` writes for one unit: systemd's facts about it, mapped
to an observe-only policy. Pure: the facts are read elsewhere (commands/discover.py).

The mapping, in the order a policy file shows it:

* every policy says `mode: observe`: watched and alerted on, never acted on; editing
  that one key to `act` promotes the unit;
* it alerts every channel the main config defines (a policy alerts only the channels
  it names); with none defined, a comment says so;
* each TCP address a triggering .socket unit listens on (`ListenStream=`) becomes a
  tcp check, when it can be reached over loopback: 0.0.0.0 becomes 127.0.0.1 and [::]
  becomes ::1; other addresses, unix sockets and datagram sockets are named in a
  comment only;
* `ExecReload=` set gives the ladder [restart, reload], otherwise [restart];
* `Restart=` other than "no" is noted: the daemon leaves such a unit to systemd while
  systemd restarts it and steps in only when systemd gives up (README, "Cooperation
  with systemd"); the policy language needs no key for that;
* a unit that `guard.protected` matches is noted as protected; one that looks like a
  database (by name) but that no glob matches gets a warning, in the file and for the
  operator, since `mode: act` would let the daemon restart it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = [
    "DATABASE_GLOBS",
    "Discovered",
    "Listen",
    "UnitFacts",
    "discovered_policy",
    "policy_file_name",
    "tcp_target",
]

DATABASE_GLOBS = (
    "postgresql*",
    "mysql*",
    "mariadb*",
    "redis*",
    "valkey*",
    "mongod*",
    "etcd*",
    "clickhouse*",
    "cassandra*",
    "couchdb*",
    "influxdb*",
    "elasticsearch*",
    "opensearch*",
)
"""Unit names that look like a database: protected, whatever the guard's list says."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Listen:
    """One `Listen` entry of a socket unit, as systemd's D-Bus property gives it."""

    socket: str  # the .socket unit, e.g. "cups.socket"
    kind: str  # Stream | Datagram | SequentialPacket | FIFO | Netlink | ...
    address: str  # "0.0.0.0:631", "[::]:80", "/run/cups/cups.sock", ...


@dataclass(frozen=True)
class UnitFacts:
    """What systemd says about one enabled service unit."""

    unit: str
    description: str = ""
    restart: str = "no"  # Service.Restart
    can_reload: bool = False  # ExecReload= is set
    listens: tuple[Listen, ...] = ()


@dataclass(frozen=True)
class Discovered:
    """One policy file to write: its name in policies.d, its text, and what the
    operator should hear about it (one line each)."""

    file_name: str
    text: str
    warnings: tuple[str, ...] = ()


def policy_file_name(unit: str) -> str:
    """`nginx.service` -> `nginx.yaml`; another unit type keeps its suffix in the name."""
    stem = unit.removesuffix(".service")
    return f"{stem}.yaml"


def tcp_target(listen: Listen) -> tuple[str, int] | None:
    """The (host, port) a tcp check connects to for this listener, or None when it
    cannot be reached over loopback (not a TCP stream, a unix socket, a remote address)."""
    if listen.kind != "Stream":
        return None
    host, sep, port_text = listen.address.rpartition(":")
    if not sep or not port_text.isdigit():
        return None
    port = int(port_text)
    if not 1 <= port <= 65535:
        return None
    host = host.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a unix socket path, vsock:..., a scoped link-local address
    if address.is_unspecified:
        return ("127.0.0.1" if address.version == 4 else "::1"), port
    if address.is_loopback:
        return str(address), port
    return None


def _check_name(host: str, port: int) -> str:
    if host == "127.0.0.1":
        return f"tcp-{port}"
    if host == "::1":
        return f"tcp6-{port}"
    return f"tcp-{host.replace(':', '-')}-{port}"


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())[:200]


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar; hosts and names here are plain, but be safe."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def discovered_policy(
    facts: UnitFacts, protected: tuple[str, ...], channels: tuple[str, ...] = ()
) -> Discovered:
    """The observe-only policy for `facts`; `protected` is the main config's
    guard.protected (globs), `channels` the names of its alert channels."""
    unit = facts.unit
    about = f" ({_one_line(facts.description)})" if facts.description.strip() else ""
    lines = [
        f"# Written by `host-supervisor discover` from systemd's metadata of {unit}{about}.",
        "# It only watches and alerts: change mode to act to let the daemon repair the unit.",
        f"unit: {unit}",
        "mode: observe",
    ]
    if channels:
        lines.append(f"alerts: [{', '.join(channels)}]")
    else:
        lines.append(
            "# alerts: no channel in host-supervisor.yaml yet; define one there and name it "
            "here to be told."
        )
    checks: list[tuple[str, str, int, str]] = []
    unreachable: list[str] = []
    for listen in facts.listens:
        target = tcp_target(listen)
        if target is None:
            unreachable.append(f"{listen.socket} {listen.kind} {_one_line(listen.address)}")
            continue
        host, port = target
        name = _check_name(host, port)
        if all(name != seen for seen, *_ in checks):
            checks.append((name, host, port, listen.socket))
    if checks:
        lines.append("checks:")
        for name, host, port, socket in checks:
            lines.append(f"  - name: {name}  # {socket} listens here")
            lines.append(f"    tcp: {{host: {_quoted(host)}, port: {port}}}")
    for entry in unreachable:
        lines.append(f"# Not checked (not a loopback TCP address): {entry}")
    lines.append("recovery:")
    if facts.can_reload:
        lines.append("  ladder: [restart, reload]  # ExecReload= is set")
    else:
        lines.append("  ladder: [restart]  # no ExecReload=: nothing to reload")
    if facts.restart and facts.restart != "no":
        lines.append(
            f"# Restart={facts.restart}: systemd restarts it itself; the daemon steps in "
            "only when systemd gives up."
        )
    warnings: list[str] = []
    glob = next((g for g in protected if fnmatchcase(unit, g)), None)
    if glob is not None:
        lines.append(
            f"# Protected (guard.protected matches {glob!r}): even with mode: act it is "
            "alerted on, never repaired, unless allow_automatic: true."
        )
    elif any(fnmatchcase(unit, g) for g in DATABASE_GLOBS):
        warning = (
            f"{unit} looks like a database but guard.protected does not match it: add it "
            "there before setting mode: act, or the daemon may restart it"
        )
        lines.append(f"# Warning: {warning}.")
        warnings.append(warning)
    return Discovered(policy_file_name(unit), "\n".join(lines) + "\n", tuple(warnings))
