"""One incident, one message, against a real systemd: a root unit and 50 units that
depend on it (Requires= or BindsTo=, and After=), each with a policy; the root is
killed and its dependents fail with it. Each channel (a real SMTP server and a real
HTTP receiver on the lab's loopback) gets at most two messages: the problem, naming
the root and listing the symptoms, then the recovery. No dependent is restarted by
the daemon before the root is back, and every unit is healthy at the end."""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.integration.test_alerts_lab import hooks, mails
from tests.lab_units import daemon_log, install_daemon, write_config

pytestmark = pytest.mark.lab

ASSETS = Path(__file__).parent / "assets"
ROOT = "incident-db.service"
DEPENDENTS = [f"incident-app{n}.service" for n in range(1, 51)]
LOCK = "/run/incident-db.lock"
MAIN = """\
guard:
  repair_budget: {max: 1000, window: 15m}
  breaker: {failures: 1000, open_for: 1m}
  max_concurrent: 60
  incidents: {window: 10s, gather: 3s}
alerts:
  channels:
    mail:
      url: "mailto://127.0.0.1:2526?from=hs@example.com&to=ops@example.com&mode=insecure"
    hook: {url: "json://127.0.0.1:8598/alerts"}
"""
POLICY = """\
unit: {unit}
recovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}
alerts: [mail, hook]
"""
# The root holds an exclusive lock while it runs; it is active only once it holds it.
ROOT_UNIT = f"""\
[Service]
ExecStart=/usr/bin/flock -x {LOCK} /bin/sleep infinity
ExecStartPost=/bin/sh -c 'until ! /usr/bin/flock -n -s {LOCK} true; do sleep 0.05; done'
"""
# A dependent waits for a shared lock: it gets it the moment the root dies, and fails,
# as a client fails when its database goes away.
DEPENDENT_UNIT = """\
[Unit]
{dependency}={root}
After={root}

[Service]
ExecStart=/usr/bin/flock -s {lock} /bin/sh -c 'exit 3'
"""


def install(lab: Lab, root: Path, policy: str = POLICY, main: str = MAIN) -> None:
    """The mail and JSON sinks, the root and its 50 dependents started, and the daemon
    supervising all 51 (also used by tests/bench/bench_incident.py)."""
    lab.install_unit(
        "incident-smtp.service",
        f"[Service]\nExecStart={sys.executable} {ASSETS / 'smtp_sink.py'} 2526 {root / 'mail'}\n",
        reload=False,
    )
    lab.install_unit(
        "incident-json.service",
        f"[Service]\nExecStart=/usr/bin/python3 {ASSETS / 'json_sink.py'} 8598 {root / 'json'}\n",
        reload=False,
    )
    lab.install_unit(ROOT, ROOT_UNIT, reload=False)
    for n, unit in enumerate(DEPENDENTS):
        dependency = "BindsTo" if n % 2 else "Requires"
        text = DEPENDENT_UNIT.format(dependency=dependency, root=ROOT, lock=LOCK)
        lab.install_unit(unit, text, reload=False)
    lab.daemon_reload()
    lab.run("systemctl", "start", "incident-smtp.service", "incident-json.service", ROOT)
    lab.run("systemctl", "start", *DEPENDENTS, timeout=60)
    policies = {f"{u}.yaml": policy.format(unit=u) for u in [ROOT, *DEPENDENTS]}
    write_config(root / "etc", policies, main=main)
    install_daemon(lab, root / "etc", root / "state")


@pytest.fixture(scope="module")
def root(lab: Lab) -> Iterator[Path]:
    root = Path(lab.shared_dir)
    install(lab, root)
    yield root


def recovered(reader: Callable[[Path], list[str]], root: Path) -> bool:
    return any(f"{ROOT} recovered" in message for message in reader(root))


def all_active(lab: Lab) -> bool:
    out = lab.run("systemctl", "is-active", ROOT, *DEPENDENTS, check=False).stdout.split()
    return out == ["active"] * (1 + len(DEPENDENTS))


def test_a_root_and_50_dependents_make_one_problem_and_one_recovery(lab: Lab, root: Path) -> None:
    lab.wait_for(lambda: all_active(lab), timeout=30, what="every unit active before")
    time.sleep(4)  # the daemon's start: observing, one round of checks, its own alerts
    before = {"mail": len(mails(root)), "hook": len(hooks(root))}
    cursor = len(daemon_log(lab))

    killed = time.monotonic()
    lab.run("systemctl", "kill", "-s", "KILL", ROOT)
    lab.wait_for(lambda: all_active(lab), timeout=60, what="root and dependents active again")
    healthy_after = time.monotonic() - killed
    read = {"mail": mails, "hook": hooks}
    for name, reader in read.items():
        lab.wait_for(
            functools.partial(recovered, reader, root),
            timeout=60,
            what=f"the incident's recovery message by {name}",
        )
    time.sleep(4)  # anything else would have come by now (group_wait is 3 s)
    print(f"\nincident: kill of the root to all 51 units active: {healthy_after:.2f}s")

    for name, reader in read.items():
        new = reader(root)[before[name] :]
        assert len(new) <= 2, f"{name}: {len(new)} messages:\n" + "\n---\n".join(new)
        assert f"{ROOT} failed" in new[0], new[0]
        assert re.search(r"\d+ dependents failed (or stopped )?with it", new[0]), new[0]
        assert "incident-app" in new[0], new[0]
        assert f"{ROOT} recovered" in new[-1], new[-1]
        assert "dependents healthy again" in new[-1], new[-1]

    log = daemon_log(lab)[cursor:]
    root_back = min(
        int(entry["__MONOTONIC_TIMESTAMP"])
        for entry in log
        if entry.get("UNIT") == ROOT and str(entry.get("MESSAGE")).startswith("restart finished")
    )
    early = [
        (entry["UNIT"], int(entry["__MONOTONIC_TIMESTAMP"]))
        for entry in log
        if entry.get("UNIT") in DEPENDENTS
        and str(entry.get("MESSAGE")).startswith("restarting unit")
        and int(entry["__MONOTONIC_TIMESTAMP"]) < root_back
    ]
    assert early == [], f"dependents restarted before {ROOT} was back"
    symptoms = {
        e.get("UNIT")
        for e in log
        if str(e.get("MESSAGE")).startswith("symptom of another unit's failure")
    }
    print(f"incident: {len(symptoms)} symptoms; messages: {new[0].splitlines()[0]!r}")
    assert symptoms and symptoms <= set(DEPENDENTS)
    status = lab.run("systemctl", "is-failed", ROOT, *DEPENDENTS, check=False).stdout.split()
    assert "failed" not in status
