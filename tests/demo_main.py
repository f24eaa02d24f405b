"""The demo of the main job, in a lab systemd: detect a crash over D-Bus, restart it."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from supervisor.testing.lab import Lab, lab_unavailable_reason
from tests.lab_units import active_with_new_pid, cli, install_daemon, web_unit

POLICY = """\
# The policy an operator would drop in /etc/host-supervisor/policies.d/
unit: demo-web.service
checks:
  - name: state
    unit: {}
recovery:
  ladder: [restart]
  cooldown: 5s
  settle: 2s
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    reason = lab_unavailable_reason()
    if reason:
        print(f"demo: {reason}", file=sys.stderr)
        return 1
    with Lab() as lab:
        say("booting a real systemd as PID 1 of new namespaces")
        lab.boot()
        print(lab.run("systemctl", "is-system-running", check=False).stdout.strip())

        say("a small web service: demo-web.service (python3 -m http.server on 127.0.0.1:8080)")
        lab.install_unit("demo-web.service", web_unit(8080))
        lab.run("systemctl", "start", "demo-web.service")
        print(textwrap.indent(POLICY, "    "))

        config = Path(lab.shared_dir) / "etc"
        (config / "policies.d").mkdir(parents=True)
        (config / "policies.d" / "demo-web.yaml").write_text(POLICY)
        say("host-supervisor running as a Type=notify unit with a watchdog")
        install_daemon(lab, config, Path(lab.shared_dir) / "state")
        print(
            lab.run("systemctl", "show", "-p", "ActiveState,StatusText", "host-supervisor").stdout
        )

        pid = lab.show("demo-web.service", "MainPID")["MainPID"]
        say(f"kill -9 {pid} (the web service's main process)")
        killed_at = time.monotonic()
        lab.run("kill", "-9", pid)
        lab.wait_for(
            lambda: active_with_new_pid(lab, "demo-web.service", pid),
            timeout=20,
            what="demo-web.service active again with a new main PID",
        )
        back = lab.show("demo-web.service", "MainPID")["MainPID"]
        took_ms = 1000 * (time.monotonic() - killed_at)
        print(f"active again with main PID {back}, {took_ms:.0f} ms after the kill")
        # Type=simple is active once forked: give the server a moment to bind.
        answer = lab.wait_for(
            lambda: lab.run(
                "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8080/",
                check=False,
            ).stdout.strip() == "200" and "200",
            timeout=10,
            what="the web service answering again",
        )  # fmt: skip
        print(f"GET http://127.0.0.1:8080/ -> {answer}")

        say("the daemon's own log lines (journalctl -u host-supervisor UNIT=demo-web.service)")
        time.sleep(0.3)
        print(
            lab.run(
                "journalctl",
                "-q",
                "--no-pager",
                "-o",
                "short-precise",
                "_SYSTEMD_UNIT=host-supervisor.service",
                "UNIT=demo-web.service",
            ).stdout
        )
        say("host-supervisor status")
        print(cli(lab, "status"))
        say("powering the lab off")
    print("done: nothing left behind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
