"""A real nginx in the lab, for change-aware rollback: its config tree, its unit, the
policy that rolls it back, and the figure the benchmark and the lab test measure.

nginx is Debian's (tests/setup-env installs it) with a config tree of its own in the
lab's shared directory: the lab shares the host's /etc, which must stay untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from supervisor.testing.lab import Lab
from tests.lab_units import daemon_cli

NGINX = "/usr/sbin/nginx"
UNIT = "nginx-lab.service"
PLANTED = "hunter2-planted-secret"


@dataclass(frozen=True)
class Tree:
    root: Path

    @property
    def conf_dir(self) -> Path:
        return self.root / "nginx"

    @property
    def main_conf(self) -> Path:
        return self.conf_dir / "nginx.conf"

    @property
    def site(self) -> Path:
        return self.conf_dir / "sites" / "default.conf"


def good_site(port: int, version: str = "v1") -> str:
    return f"""\
server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "{version}\\n"; }}
}}
"""


def broken_site(port: int) -> str:
    """A syntax error (a missing ;) and a planted secret the alert must mask."""
    return f"""\
server {{
    listen 127.0.0.1:{port}
    # db_password = {PLANTED}
    location / {{ return 200 "v2\\n"; }}
}}
"""


def write_tree(root: Path, port: int) -> Tree:
    tree = Tree(root)
    tree.site.parent.mkdir(parents=True, exist_ok=True)
    tree.main_conf.write_text(
        f"""\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    include {tree.site.parent}/*.conf;
}}
"""
    )
    tree.site.write_text(good_site(port))
    return tree


def nginx_unit(tree: Tree) -> str:
    conf = tree.main_conf
    return f"""\
[Unit]
Description=Debian's nginx on a config tree of the lab's

[Service]
ExecStartPre={NGINX} -t -q -c {conf}
ExecStart={NGINX} -c {conf} -g "daemon off;"
ExecReload={NGINX} -s reload -c {conf}
Restart=no
"""


def policy(tree: Tree, *, channels: tuple[str, ...] = (), max_attempts: int = 3) -> str:
    alerts = f"alerts: [{', '.join(channels)}]\n" if channels else ""
    return f"""\
unit: {UNIT}
recovery:
  ladder: [restart, reload, restore]
  cooldown: 1s
  settle: 1s
  reset_after: 2s
  max_attempts: {max_attempts}
  restore:
    paths: [{tree.conf_dir}]
    from: last-known-good
    snapshot_after: 1s
    rollback_window: 10m
    validate: [{NGINX}, -t, -q, -c, {tree.main_conf}]
{alerts}"""


def history(lab: Lab, socket: str, kinds: tuple[str, ...] = ()) -> list[str]:
    out = lab.run(*daemon_cli(), "history", UNIT, "--socket", socket, "--json").stdout
    entries: list[dict[str, object]] = json.loads(out)["entries"]
    return [f"{e['kind']}: {e['message']}" for e in entries if not kinds or e["kind"] in kinds]


def wait_for_proven_snapshot(lab: Lab, socket: str) -> None:
    lab.wait_for(
        lambda: any("newest proven" in m for m in history(lab, socket, ("restore",))),
        timeout=30,
        interval=0.2,
        what=f"a proven snapshot of {UNIT}'s config",
    )


def failures_us(lab: Lab) -> list[int]:
    """Monotonic times (µs) at which systemd logged that the unit failed: its own
    "Failed with result" line in the journal (the unit's timestamps of entering
    failed are cleared by the next start)."""
    out = lab.run("journalctl", "-q", "--no-pager", "-o", "json", "-u", UNIT, check=False).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [
        int(entry["__MONOTONIC_TIMESTAMP"])
        for entry in entries
        if "Failed with result" in str(entry.get("MESSAGE", ""))
    ]


def rollback_figure_ms(lab: Lab, failures_before: int) -> tuple[float, float]:
    """(first failure -> the restored nginx starting, nginx's own start) in ms, on the
    kernel's monotonic clock: the first failure logged after `failures_before` ones,
    the unit leaving inactive for the rollback's start (InactiveExit), and nginx up
    (ActiveEnter); the first figure excludes nginx's own start time, the second is it."""
    failed = lab.wait_for(
        lambda: failures_us(lab)[failures_before:], timeout=5, what="the failure in the journal"
    )[0]
    stamps = {
        key: int(value)
        for key, value in lab.show(
            UNIT, "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"
        ).items()
    }
    restarted = stamps["InactiveExitTimestampMonotonic"]
    active = stamps["ActiveEnterTimestampMonotonic"]
    return (restarted - failed) / 1000, (active - restarted) / 1000


def break_and_restart(lab: Lab, tree: Tree, port: int, socket: str) -> None:
    """Apply a broken config, wait until the daemon has seen the change, and restart
    nginx the way an operator would: the start fails (nginx -t refuses it)."""
    seen = len([m for m in history(lab, socket, ("restore",)) if "configuration changed" in m])
    tree.site.write_text(broken_site(port))
    lab.wait_for(
        lambda: (
            len([m for m in history(lab, socket, ("restore",)) if "configuration changed" in m])
            > seen
        ),
        timeout=10,
        interval=0.05,
        what="the daemon seeing the change",
    )
    lab.run("systemctl", "restart", "--no-block", UNIT)
