"""The control socket in-process, on a socket of its own, with a fake daemon: roles
from peer credentials, the caller passed on, 400s for bad parameters, one-line
500s, and bounded connections under a flood of half-open ones."""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from supervisor.commands.client import call
from supervisor.config.main import ControlConfig
from supervisor.daemon import control, control_connections
from supervisor.daemon.control import ControlServer, Groups, Peer, Role, role_for

ROOT = Peer(pid=1, uid=0, gid=0)
ALICE = Peer(pid=2, uid=4242, gid=4242)
OWN_GROUP = grp.getgrgid(os.getgid()).gr_name


class FakeDaemon:
    """The Control the socket serves, recording what it was asked."""

    def __init__(self) -> None:
        self.unsaved: str | None = None  # why an accepted request is not stored, if not
        self.units = ["web.service"]
        self.calls: list[tuple[Any, ...]] = []
        self.entries: dict[str | None, list[dict[str, Any]]] = {"gone.service": [{"kind": "x"}]}
        self.refuse_failover: str | None = None
        self.explode = False
        self.pauses: list[tuple[float | None, str]] = []

    @property
    def dry_run(self) -> bool:
        return False

    def status_line(self) -> str:
        if self.explode:
            raise RuntimeError("boom\nsecond line")
        return "1 unit healthy"

    def unit_status(self) -> list[dict[str, object]]:
        return [{"unit": unit} for unit in self.units]

    def guard_status(self) -> dict[str, object]:
        return {"frozen": False}

    async def reload(self, caller: str = "") -> bool:
        self.calls.append(("reload", caller))
        return True

    def reset(self, unit: str, caller: str = "") -> bool:
        self.calls.append(("reset", unit, caller))
        return unit in self.units

    def pause(
        self, unit: str, caller: str = "", duration: float | None = None, reason: str = ""
    ) -> bool:
        self.calls.append(("pause", unit, caller))
        self.pauses.append((duration, reason))
        return unit in self.units

    def resume(self, unit: str | None, caller: str = "") -> bool:
        self.calls.append(("resume", unit, caller))
        return unit is None or unit in self.units

    def manual_failover(self, unit: str, to: str | None, caller: str = "") -> str | None:
        self.calls.append(("failover", unit, to, caller))
        return self.refuse_failover

    def manual_failback(self, unit: str, caller: str = "") -> str | None:
        self.calls.append(("failback", unit, caller))
        return None

    async def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]:
        self.calls.append(("history", unit, since, limit))
        return self.entries.get(unit, [])

    async def persisted(self) -> str | None:
        return self.unsaved

    def metrics_snapshot(self) -> dict[str, object]:
        return {"checks": 0}

    def reset_lateness(self) -> None:
        self.calls.append(("reset_lateness",))


class Harness:
    def __init__(self, server: ControlServer, daemon: FakeDaemon, path: Path) -> None:
        self.server, self.daemon, self.path = server, daemon, path
        self.peer = ROOT
        self.groups: frozenset[int] = frozenset()

    async def ask(self, method: str, url: str) -> tuple[int, Any]:
        return await asyncio.to_thread(call, self.path, method, url, 5.0)


def _other_groups() -> tuple[str, str]:
    names = [g.gr_name for g in grp.getgrall() if g.gr_name != OWN_GROUP]
    return names[0], names[1]


READ_GROUP, ACT_GROUP = _other_groups()


async def _started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: ControlConfig, **kwargs: Any
) -> Harness:
    daemon = FakeDaemon()
    path = tmp_path / "c.sock"
    server = ControlServer(daemon, path, config, **kwargs)
    harness = Harness(server, daemon, path)
    monkeypatch.setattr(control_connections, "peer_credentials", lambda _sock: harness.peer)
    monkeypatch.setattr(control_connections, "groups_of", lambda _uid, _gid: harness.groups)
    await server.start()
    return harness


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    config = ControlConfig(socket_group=OWN_GROUP, read_group=READ_GROUP, act_group=ACT_GROUP)
    harness = await _started(tmp_path, monkeypatch, config)
    try:
        yield harness
    finally:
        await harness.server.stop()


# -- roles ------------------------------------------------------------------------------------


def test_role_rule() -> None:
    assert role_for(0, frozenset(), None, None) is Role.ACT
    assert role_for(5, frozenset({10}), 10, 11) is Role.READ
    assert role_for(5, frozenset({10, 11}), 10, 11) is Role.ACT
    assert role_for(5, frozenset({11}), None, 11) is Role.ACT
    assert role_for(5, frozenset({12}), 10, 11) is Role.NONE
    assert role_for(5, frozenset({10}), None, None) is Role.NONE


def test_socket_group_alone_still_reads_and_sets_the_file_group() -> None:
    assert Groups.of(ControlConfig(socket_group="adm")) == Groups("adm", "adm", None)
    assert Groups.of(ControlConfig(read_group="adm")) == Groups("adm", "adm", None)
    assert Groups.of(ControlConfig(act_group="ops")) == Groups("ops", None, "ops")
    assert Groups.of(ControlConfig()) == Groups(None, None, None)


async def test_root_may_act_and_is_named_as_the_caller(h: Harness) -> None:
    assert await h.ask("POST", "/v1/units/web.service/pause") == (200, {"ok": True})
    assert await h.ask("POST", "/v1/reload") == (200, {"ok": True, "status": "1 unit healthy"})
    assert h.daemon.calls == [("pause", "web.service", "uid 0 (root)"), ("reload", "uid 0 (root)")]


async def test_a_pause_may_carry_an_end_and_a_reason(h: Harness) -> None:
    url = "/v1/units/web.service/pause"
    assert await h.ask("POST", f"{url}?for_s=7200&reason=deploy%0Anow") == (200, {"ok": True})
    assert h.daemon.pauses == [(7200.0, "deploy now")]  # one line
    for bad in ("0", "-5", "nan", "inf", "soon", "31536001"):
        code, body = await h.ask("POST", f"{url}?for_s={bad}")
        assert code == 400 and body["error"].startswith("for_s must be a number of seconds")
    code, body = await h.ask("POST", f"{url}?reason={'x' * 201}")
    assert (code, body) == (400, {"error": "reason must be at most 200 characters"})
    assert len(h.daemon.pauses) == 1  # nothing refused reached the daemon


async def test_a_reader_reads_but_may_not_act(h: Harness) -> None:
    h.peer, h.groups = ALICE, frozenset({grp.getgrnam(READ_GROUP).gr_gid})
    assert (await h.ask("GET", "/v1/status"))[0] == 200
    assert (await h.ask("GET", "/v1/metrics"))[0] == 200
    assert (await h.ask("GET", "/v1/history"))[0] == 200
    for url in ("/v1/units/web.service/pause", "/v1/reload", "/v1/resume", "/v1/metrics/reset"):
        code, body = await h.ask("POST", url)
        assert code == 403, url
        assert body["error"].startswith(f"uid {ALICE.uid}"), body
        assert f"needs the act role (group {ACT_GROUP})" in body["error"]
    assert [c for c in h.daemon.calls if c[0] != "history"] == []


async def test_an_actor_acts_with_its_uid_recorded(h: Harness) -> None:
    h.peer, h.groups = ALICE, frozenset({grp.getgrnam(ACT_GROUP).gr_gid})
    assert (await h.ask("POST", "/v1/units/web.service/failover?to=b.service"))[0] == 200
    assert h.daemon.calls == [("failover", "web.service", "b.service", ALICE.caller)]
    assert ALICE.caller.startswith(f"uid {ALICE.uid}")


async def test_a_peer_without_a_role_is_refused_with_its_uid_and_the_role(h: Harness) -> None:
    h.peer = ALICE
    code, body = await h.ask("GET", "/v1/status")
    assert code == 403
    assert body == {
        "error": f"{ALICE.caller} may not read status: needs the read role (group {READ_GROUP})"
    }


async def test_without_groups_only_root_gets_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await _started(tmp_path, monkeypatch, ControlConfig())
    try:
        assert stat.S_IMODE(harness.path.stat().st_mode) == 0o600
        harness.peer = ALICE
        code, body = await harness.ask("GET", "/v1/status")
        assert code == 403 and "control.read_group is not set" in body["error"]
    finally:
        await harness.server.stop()
    assert not harness.path.exists()


async def test_the_socket_file_is_group_connectable(h: Harness) -> None:
    info = h.path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == grp.getgrnam(OWN_GROUP).gr_gid


def test_peer_credentials_are_the_real_ones() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = control_connections.peer_credentials(left)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.getuid(), os.getgid())


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=-1", "limit must be a whole number from 1 to 100000, got '-1'"),
        ("limit=abc", "got 'abc'"),
        ("limit=0", "got '0'"),
        ("limit=100001", "got '100001'"),
        ("since_s=nan", "since_s must be a number of seconds, 0 or more, got 'nan'"),
        ("since_s=inf", "got 'inf'"),
        ("since_s=-5", "got '-5'"),
        ("since_s=soon", "got 'soon'"),
        ("unit=", "unit must not be empty"),
    ],
)
async def test_bad_history_parameters_answer_400(h: Harness, query: str, words: str) -> None:
    code, body = await h.ask("GET", f"/v1/history?{query}")
    assert code == 400
    assert words in body["error"]


async def test_history_of_an_unknown_unit_is_404_but_a_gone_unit_keeps_its_history(
    h: Harness,
) -> None:
    assert await h.ask("GET", "/v1/history?unit=nope.service") == (
        404,
        {"error": "no policy for unit nope.service"},
    )
    assert await h.ask("GET", "/v1/history?unit=gone.service&since_s=60&limit=5") == (
        200,
        {"entries": [{"kind": "x"}]},
    )


@pytest.mark.parametrize(
    "url",
    [
        "/v1/units/nope.service/pause",
        "/v1/units/nope.service/resume",
        "/v1/units/nope.service/reset",
        "/v1/units/nope.service/failover",
        "/v1/units/nope.service/failback",
    ],
)
async def test_acting_on_an_unknown_unit_is_404_with_its_name(h: Harness, url: str) -> None:
    assert await h.ask("POST", url) == (404, {"error": "no policy for unit nope.service"})


async def test_a_refused_failover_is_409_with_the_daemons_reason(h: Harness) -> None:
    h.daemon.refuse_failover = "x.service is not a backup of web.service; backups: b.service"
    code, body = await h.ask("POST", "/v1/units/web.service/failover?to=x.service")
    assert code == 409 and body["error"] == h.daemon.refuse_failover
    code, body = await h.ask("POST", "/v1/units/web.service/failover?to=")
    assert code == 400 and body["error"] == "to must name a backup unit"


async def test_unknown_requests_answer_json(h: Harness) -> None:
    assert await h.ask("GET", "/v1/nothing") == (404, {"error": "no such request: GET /v1/nothing"})
    assert await h.ask("GET", "/v1/reload") == (405, {"error": "GET is not allowed on /v1/reload"})


async def test_a_handler_that_raises_answers_one_line_500_and_logs_once(h: Harness) -> None:
    h.daemon.explode = True
    with structlog.testing.capture_logs() as logs:
        code, body = await h.ask("GET", "/v1/status")
    assert code == 500
    assert body == {"error": "internal error: RuntimeError: boom second line"}
    assert [entry["event"] for entry in logs] == ["control request failed"]


# -- slow clients and floods ------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_one_request_per_connection(h: Harness) -> None:
    def exchange() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(str(h.path))
            sock.sendall(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):  # ends at EOF: the server closed it
                data += chunk
            return data

    answer = await asyncio.to_thread(exchange)
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer


async def test_a_stalled_request_is_closed_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await _started(tmp_path, monkeypatch, ControlConfig(), request_timeout=0.3)

    def stalled() -> float:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(harness.path))
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost:")
            start = time.monotonic()
            assert sock.recv(4096) == b""
            return time.monotonic() - start

    try:
        assert await asyncio.to_thread(stalled) < 2.0
        assert harness.server.dropped == 1
    finally:
        await harness.server.stop()


FLOOD = """
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
held = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    if i % 2:
        s.send(b"GET /v1/status HTTP/1.1\\r\\nHost: x\\r\\n")  # headers never end
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


async def _wait_until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_thousand_half_open_connections_neither_starve_nor_exhaust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await _started(tmp_path, monkeypatch, ControlConfig(), request_timeout=2.0)
    baseline = _open_fds()
    most = 0

    def sample() -> None:
        nonlocal most
        most = max(most, _open_fds())

    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, str(harness.path), "1000",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert flood.stdout is not None
        ready = await asyncio.wait_for(flood.stdout.readline(), timeout=30)
        assert ready == b"ready\n"
        # The accept loop has seen all of them: 1,000 accepted, all but 64 dropped.
        assert await _wait_until(lambda: harness.server.dropped >= 1000 - 64, 10)
        sample()
        start = time.monotonic()
        code, body = await harness.ask("GET", "/v1/status")
        assert code == 200 and body["status"] == "1 unit healthy"
        assert time.monotonic() - start < 2.0
        sample()
        # The half-open ones still held are closed at their deadline.
        assert await _wait_until(lambda: _open_fds() <= baseline + 2, 5)
    finally:
        flood.kill()
        await flood.wait()
        await harness.server.stop()
    assert most <= baseline + control.MAX_CONNECTIONS + 4


# -- the CLI against it: one line on stderr and an exit code, never a traceback ---------------


async def _cli(h: Harness, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from supervisor.cli import main

    capsys.readouterr()
    code = await asyncio.to_thread(main, [*argv, "--socket", str(h.path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


async def test_cli_bad_parameters_exit_2_with_the_daemons_message(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = await _cli(h, capsys, "history", "--limit", "-1")
    assert (code, err) == (
        2,
        "host-supervisor: limit must be a whole number from 1 to 100000, got '-1'\n",
    )


async def test_cli_refusals_exit_1_and_forbidden_4(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h.daemon.refuse_failover = "x.service is not a backup of web.service; backups: b.service"
    assert await _cli(h, capsys, "failover", "web.service", "--to", "x.service") == (
        1,
        f"host-supervisor: {h.daemon.refuse_failover}\n",
    )
    assert await _cli(h, capsys, "pause", "nope.service") == (
        1,
        "host-supervisor: no policy for unit nope.service\n",
    )
    h.peer = ALICE
    code, err = await _cli(h, capsys, "status")
    assert code == 4 and err.startswith(f"host-supervisor: uid {ALICE.uid}")
    assert err.count("\n") == 1


async def test_cli_an_internal_error_is_one_line(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h.daemon.explode = True
    assert await _cli(h, capsys, "reload") == (
        1,
        "host-supervisor: internal error: RuntimeError: boom second line\n",
    )
    # status exits 1 for "degraded": a status it could not get is 4, LSB's "unknown".
    assert await _cli(h, capsys, "status") == (
        4,
        "host-supervisor: internal error: RuntimeError: boom second line\n",
    )


def test_cli_without_a_daemon_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from supervisor.cli import main

    path = tmp_path / "none.sock"
    assert main(["status", "--socket", str(path)]) == 3
    assert capsys.readouterr().err == (
        f"host-supervisor: no daemon answers on {path}: is host-supervisor running?\n"
    )


def test_cli_a_daemon_that_hangs_up_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.cli import main

    path = tmp_path / "rude.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        assert main(["metrics", "--socket", str(path)]) == 3
        thread.join()
    err = capsys.readouterr().err
    assert err == f"host-supervisor: the daemon on {path} closed the connection without an answer\n"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["history", "--since", "soon"], "argument --since: 'soon' is not a duration"),
        (["history", "--limit", "many"], "argument --limit: invalid int value: 'many'"),
        (["pause"], "the following arguments are required: unit"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_cli_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    from supervisor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("host-supervisor")


@pytest.mark.parametrize(
    ("raised", "code", "words"),
    [
        (KeyboardInterrupt(), 130, "host-supervisor: interrupted\n"),
        (ValueError("odd\nthing"), 70, "host-supervisor: internal error: ValueError: odd thing"),
    ],
)
def test_cli_interrupts_and_bugs_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: BaseException,
    code: int,
    words: str,
) -> None:
    from supervisor import cli
    from supervisor.commands import client

    def call(*_args: object, **_kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(client, "call", call)
    monkeypatch.delenv("HOST_SUPERVISOR_DEBUG", raising=False)
    assert cli.main(["status"]) == code
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1


async def test_an_acting_request_is_acknowledged_only_once_stored(h: Harness) -> None:
    h.daemon.unsaved = "state database /x/state.db is locked by another process for 12 s"
    assert await h.ask("POST", "/v1/units/web.service/pause") == (
        503,
        {
            "error": "accepted but not saved: state database /x/state.db is locked by "
            "another process for 12 s"
        },
    )


# -- why ---------------------------------------------------------------------------------

WHY_HISTORY = [
    {"id": 1, "time": 1000.0, "unit": "web.service", "kind": "health",
     "message": "failed: failed/failed (signal)", "data": {"condition": "unhealthy"}},
    {"id": 2, "time": 1000.0, "unit": "web.service", "kind": "action",
     "message": "restart (attempt 1/3)",
     "data": {"reason": "systemd reports failed/failed (signal)", "rung": "restart",
              "rung_index": 1, "ladder": ["restart"], "attempt": 1, "max_attempts": 3,
              "cooldown_s": 30.0, "rule": "ladder rung 1 of 1 (restart), attempt 1 of 3"}},
    {"id": 3, "time": 1001.0, "unit": "web.service", "kind": "result",
     "message": "restart done: job done", "data": {"rung": "restart", "took_ms": 250.0}},
]  # fmt: skip


async def _why_out(h: Harness, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from supervisor.cli import main

    capsys.readouterr()
    code = await asyncio.to_thread(main, ["why", *argv, "--socket", str(h.path)])
    return code, capsys.readouterr().out


async def test_cli_why_tells_the_chain_from_the_history(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h.daemon.entries["web.service"] = WHY_HISTORY
    code, out = await _why_out(h, capsys, "web.service")
    assert code == 0
    assert h.daemon.calls[-1] == ("history", "web.service", None, 5000)
    lines = out.splitlines()
    assert lines[0] == "web.service: the last 1 chain(s) of events and decisions, oldest first"
    assert lines[2].endswith("   unit failed (failed/failed (signal)) -> unhealthy")
    assert lines[3].endswith("-> ladder rung 1 of 1: restart (attempt 1 of 3, cooldown 30s)")
    assert lines[4].endswith("-> restart done: job done (250ms)")


async def test_cli_why_json_has_roles_and_the_rule(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    h.daemon.entries["web.service"] = WHY_HISTORY
    code, out = await _why_out(h, capsys, "web.service", "--json")
    assert code == 0
    doc = json.loads(out)
    [chain] = doc["chains"]
    assert [link["role"] for link in chain["links"]] == ["event", "action", "result"]
    assert chain["links"][1]["rule"] == "ladder rung 1 of 1 (restart), attempt 1 of 3"
    assert chain["started"] == 1000.0 and chain["actions"] == 1


async def test_cli_why_of_an_unknown_unit_or_a_bad_count_is_one_line(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(h, capsys, "why", "nope.service") == (
        1,
        "host-supervisor: no policy for unit nope.service\n",
    )
    assert await _cli(h, capsys, "why", "web.service", "--last", "0") == (
        2,
        "host-supervisor: --last must be 1 or more, got 0\n",
    )
