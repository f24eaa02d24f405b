"""monitrc text for bench_monit: the same units and endpoints host-supervisor watches.

Every file monit writes (id, state, events) lives in the lab's shared directory; its
log goes to syslog, so the lab's journald stamps each line in microseconds (monit's
own log file stamps have one-second resolution).
"""

from __future__ import annotations

from pathlib import Path

#: Runs first in every cycle: appends the wall clock (ns) to a file, marking the cycle.
TICK = (
    "check program {name} with path \"/bin/sh -c 'date +%s.%N >> {path}'\"\n"
    "  if status != 0 then alert\n"
)


def header(shared: Path) -> str:
    return f"""\
set daemon 1
set log syslog
set idfile {shared}/monit.id
set statefile {shared}/monit.state
set eventqueue basedir {shared}/monit-events slots 100
"""


def tick(name: str, path: Path) -> str:
    return TICK.format(name=name, path=path)


def web(port: int, unit: str) -> str:
    """A systemd service checked by its command line, restarted with systemctl (monit docs)."""
    return f"""\
check process web matching "http.server {port}"
  start program = "/bin/systemctl start {unit}"
  stop program = "/bin/systemctl stop {unit}"
"""


def flaky(port: int) -> str:
    """HTTP every cycle (1 s), 1 s timeout, restart after 3 consecutive failures."""
    return f"""\
check process flaky matching "flaky_server.py {port}"
  start program = "/bin/systemctl start flaky.service"
  stop program = "/bin/systemctl stop flaky.service"
  if failed host 127.0.0.1 port {port} protocol http request "/" with timeout 1 seconds
     3 times within 3 cycles then restart
"""


def scaled(n: int, port: int, timeout: int) -> str:
    """bench@N.service by its pidfile, with one HTTP and one TCP test; alert only."""
    return f"""\
check process bench{n} with pidfile /run/bench-{n}.pid
  start program = "/bin/systemctl start bench@{n}.service"
  stop program = "/bin/systemctl stop bench@{n}.service"
  if failed host 127.0.0.1 port {port} protocol http request "/{n}"
     with timeout {timeout} seconds then alert
  if failed host 127.0.0.1 port {port} type tcp with timeout {timeout} seconds then alert
"""


def scaled_host(n: int, port: int, timeout: int) -> str:
    """The same two tests as `scaled`, probing only: `check host`, no process to read
    from /proc every cycle (monit's cost as a pure prober)."""
    return f"""\
check host bench{n} with address 127.0.0.1
  if failed port {port} protocol http request "/{n}"
     with timeout {timeout} seconds then alert
  if failed port {port} type tcp with timeout {timeout} seconds then alert
"""
