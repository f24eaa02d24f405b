"""No secret leaves: the masking rules, then secrets planted in every place a user can
write one (a check URL's password and token, a command check's argument, channel URLs,
a channel written without `url:`) and every output scanned for them: log lines in
journal and stderr mode, STATUS=, `check`'s output, alerts delivered and spooled,
config errors, `test-alert`, and the CLI's `status` and `history`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from supervisor import cli
from supervisor.alerts import Alerter
from supervisor.checks.result import ProbeContext
from supervisor.commands import client
from supervisor.commands.check import render_json, render_plugin, run_policy_once
from supervisor.commands.validate import validate_command
from supervisor.config import load_config
from supervisor.core.alerting import Alert, Severity
from supervisor.logs import configure_logging
from supervisor.secrets import MASK, Redactor, looks_secret, mask, mask_data, mask_url, remember
from supervisor.systemd import journal
from supervisor.systemd.notify import Notifier

# --- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://user:pass@host/x", "http://****@host/x"),
        ("https://user@host:8443/", "https://****@host:8443/"),
        ("http://127.0.0.1/healthz", "http://127.0.0.1/healthz"),
        ("GET http://h/a?token=abc&page=2 failed", "GET http://h/a?token=****&page=2 failed"),
        (
            "http://h/?api_key=1&apikey=2&password=3&sig=4",
            "http://h/?api_key=****&apikey=****&password=****&sig=****",
        ),
        ("https://h/cb#access_token=xyz&state=1", "https://h/cb#access_token=****&state=1"),
        ("http://u:pa/ss@host/p", "http://****@host/p"),  # a slash in the password
        ("http://[::1]:80/x", "http://[::1]:80/x"),
        ("URL('http://a:b@h/')", "URL('http://****@h/')"),
        ("mailtos://alerts:pw@smtp.example.com?to=ops@example.com", "mailtos://****"),
        ("got 'slack://T000/B000/XXXX'", "got 'slack://****'"),
        ("json://127.0.0.1:8080/hook", "json://****"),
        ("is not an http:// or https:// URL", "is not an http:// or https:// URL"),
        ("check --password=hunter2 -v", "check --password=**** -v"),
        ("PGPASSWORD=x API_KEY='a b' user=bob", "PGPASSWORD=**** API_KEY=**** user=bob"),
        ("monkey=1 keyboard=2 mode=insecure", "monkey=1 keyboard=2 mode=insecure"),
        ("Authorization: Bearer abcdef123456", "Authorization: Bearer ****"),
        ("exit code 3; restarting", "exit code 3; restarting"),
        ("", ""),
    ],
)
def test_mask_rules(text: str, masked: str) -> None:
    assert mask(text) == masked
    assert mask(masked) == masked  # idempotent


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        *[(n, True) for n in ("token", "api_key", "X-Api-Key", "apikey", "access_token")],
        *[(n, True) for n in ("passwd", "pass", "PGPASSWORD", "sig", "signature", "auth")],
        *[(n, False) for n in ("page", "user", "to", "from", "mode", "monkey", "keyboard")],
    ],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_mask_url_and_keep_host() -> None:
    assert mask_url("mailto://u:p@x") == "mailto://****"
    assert mask_url("not a url") == MASK
    assert mask_url("https://hooks.slack.com/services/T/B/X", keep_host=True) == (
        "https://hooks.slack.com/..."
    )
    assert mask_url("http://u:p@h:80/x?token=1", keep_host=True) == "http://****@h:80/..."
    assert mask_url("mailto://u:p@x", keep_host=True) == "mailto://****"


def test_a_remembered_channel_url_is_masked_anywhere() -> None:
    remember("https://hooks.example.com/services/T0/B0/Remembered1")
    assert mask("post to https://hooks.example.com/services/T0/B0/Remembered1 failed") == (
        "post to https://**** failed"
    )
    assert "Remembered1" not in mask("hooks.example.com/services/T0/B0/Remembered1")


def test_mask_data_and_redactor() -> None:
    data = {"message": "GET http://u:p@h/ failed", "token": "abc", "n": 3, "l": ["x=1", "pw=2"]}
    assert mask_data(data) == {
        "message": "GET http://****@h/ failed",
        "token": MASK,
        "n": 3,
        "l": ["x=1", "pw=****"],
    }
    redact = Redactor("slack://T0AB12/B0CD34/XyzTokenValue?footer=no")
    assert "XyzTokenValue" not in redact("posting to T0AB12/B0CD34/XyzTokenValue failed")


# --- planted secrets, every output scanned -----------------------------------------------

PLANTED = {
    "mail channel password": "Mai1Pa55word",
    "hook channel password": "H00kPa55word",
    "hook channel token": "H00kT0kenValue",
    "check URL password": "Ch3ckPa55word",
    "check URL token": "Ch3ckT0kenValue",
    "check URL api key": "Ch3ckApiK3yValue",
    "command check argument": "Argv5ecretValue",
    "channel without url: password": "N0UrlPa55word",
    "min_severity URL password": "M1nSevPa55word",
    "bad check URL password": "BadUrlPa55word",
}
S = PLANTED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Journal:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def __call__(self, **fields: str) -> None:
        self.sent.append(fields)


class Outputs:
    """Everything the test saw leave, by where it went."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}

    def add(self, where: str, text: object) -> None:
        self.seen.setdefault(where, []).append(text if isinstance(text, str) else repr(text))

    def leaks(self) -> list[tuple[str, str, str]]:
        return [
            (where, what, text)
            for where, texts in self.seen.items()
            for text in texts
            for what, secret in PLANTED.items()
            if secret in text
        ]


@pytest.fixture
async def web_server() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """An HTTP check target answering 500 and a json:// alert receiver, on one port."""
    posts: list[dict[str, Any]] = []

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=500, text="down")

    async def hook(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, posts
    finally:
        await runner.cleanup()


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def planted_config(root: Path, port: int, closed: int) -> tuple[Path, str, list[str]]:
    """A config dir with every secret a user may write; the check URL and argv."""
    etc = root / "etc"
    check_url = (
        f"http://monitor:{S['check URL password']}@127.0.0.1:{port}/health"
        f"?token={S['check URL token']}&api_key={S['check URL api key']}&page=1"
    )
    script = root / "login-check"
    write(script, '#!/bin/sh\necho "login $* refused"\nexit 2\n', 0o755)
    argv = [str(script), f"--password={S['command check argument']}"]
    write(
        etc / "host-supervisor.yaml",
        "alerts:\n"
        "  channels:\n"
        f'    hook: {{url: "json://hs:{S["hook channel password"]}@127.0.0.1:{port}/hook'
        f'?token={S["hook channel token"]}"}}\n'
        f'    mail: {{url: "mailto://alerts:{S["mail channel password"]}@127.0.0.1:{closed}'
        '?from=hs@example.com&to=ops@example.com&mode=insecure"}\n',
    )
    write(
        etc / "policies.d" / "web.yaml",
        "unit: web.service\n"
        "checks:\n"
        f"  - {{name: http, http: {{url: {json.dumps(check_url)}}}}}\n"
        f"  - {{name: closed, http: {{url: {json.dumps(check_url.replace(str(port), str(closed)))}}}}}\n"  # noqa: E501
        f"  - {{name: login, command: {{argv: {json.dumps(argv)}}}}}\n"
        "alerts: [hook, mail]\n",
    )
    return etc, check_url, argv


def broken_config(root: Path) -> Path:
    """A channel written without url:, a URL as min_severity, a check URL refused."""
    etc = root / "etc-broken"
    write(
        etc / "host-supervisor.yaml",
        "alerts:\n"
        "  channels:\n"
        f'    ops: "mailto://ops:{S["channel without url: password"]}@smtp.example.com"\n'
        "    ops2: {min_severity: "
        f'"mailtos://u:{S["min_severity URL password"]}@x.example.com"}}\n',
    )
    write(
        etc / "policies.d" / "web.yaml",
        "unit: web.service\nchecks:\n"
        f"  - {{name: h, http: {{url: 'ftp://u:{S['bad check URL password']}@example.com/'}}}}\n",
    )
    return etc


@pytest.mark.parametrize("mode", ["journal", "stderr"])
async def test_no_planted_secret_leaves(
    mode: str,
    tmp_path: Path,
    web_server: tuple[int, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, posts = web_server
    closed = free_port()
    out = Outputs()
    recorder = Journal()
    monkeypatch.setattr(journal, "_default_sender", lambda: recorder)
    configure_logging("debug", journal=mode == "journal")
    log = structlog.get_logger("host-supervisor")
    etc, check_url, argv = planted_config(tmp_path, port, closed)
    broken = broken_config(tmp_path)
    try:
        # config: validate, and errors
        report = io.StringIO()
        assert validate_command(etc, report) == 0, report.getvalue()
        out.add("validate", report.getvalue())
        report = io.StringIO()
        assert validate_command(broken, report) == 1
        out.add("config errors", report.getvalue())
        errors = load_config(broken).errors
        assert len(errors) == 4, errors  # ops; ops2: no url, bad min_severity; the check
        out.add("config errors", [str(issue) for issue in errors])

        # checks and `check`
        loaded = load_config(etc)
        policy = loaded.policies["web.service"]
        results = await run_policy_once(policy, ProbeContext("web.service", active_state="active"))
        messages = [result.message for _, result in results]
        out.add("check messages", messages)
        out.add("check plugin", render_plugin("web.service", results)[0])
        out.add("check json", render_json(results))
        pass  # SANITY
        assert "token=****" in messages[0] and "page=1" in messages[0]
        assert f"127.0.0.1:{closed}" in messages[1]
        assert messages[2] == "login --password=**** refused"

        # logs: what the daemon logs of them, and raw values a careless line might log
        for (check, _), message in zip(results, messages, strict=True):
            log.warning("check failed", unit="web.service", check=check.name, message=message)
        log.error("raw", url=check_url, argv=argv, detail=f"GET {check_url}: refused")
        log.info(f"probing {check_url}", errors=[str(issue) for issue in errors])
        log.info("channel", url=loaded.main.alerts.channels["mail"].url, password="plain")
        try:
            raise ConnectionError(f"cannot reach {check_url}")
        except ConnectionError:
            log.exception("probe crashed", check="http")

        # STATUS=
        notify = tmp_path / "notify.sock"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(notify))
        receiver.setblocking(False)
        try:
            notifier = Notifier({"NOTIFY_SOCKET": str(notify)})
            notifier.status(f"web.service unhealthy: GET {check_url} refused")
            notifier.ready(f"reload failed: {errors[0]}")
            statuses = [receiver.recv(65536).decode() for _ in range(2)]
        finally:
            receiver.close()
        out.add("STATUS=", statuses)
        assert all("STATUS=" in status for status in statuses)

        # alerts: delivered (json://), spooled (mail's server is down), test-alert
        spool = tmp_path / "spool"
        alerter = Alerter(
            loaded.main.alerts,
            spool,
            "web01.test",
            group_wait=0.05,
            send_timeout=2.0,
            backoff=30.0,
            min_interval=0.0,
        )
        try:
            await alerter.start()
            alerter.submit(
                Alert(
                    unit="web.service",
                    event="unhealthy",
                    severity=Severity.CRITICAL,
                    title=f"web.service failed: GET {check_url}",
                    body=f"{' '.join(argv)}\nchannel {loaded.main.alerts.channels['mail'].url}",
                    channels=("hook", "mail"),
                    time=time.time(),
                )
            )
            deadline = time.monotonic() + 10
            while not (posts and list((spool / "mail").glob("*.json"))):
                assert time.monotonic() < deadline, "no delivery or no spool file"
                await asyncio.sleep(0.02)
            deliveries = await alerter.test()
        finally:
            await alerter.close(timeout=1)
        out.add("alert delivered", posts)
        out.add("alert spooled", [p.read_text() for p in (spool / "mail").glob("*.json")])
        out.add("test-alert", deliveries)
        assert posts[0]["title"].startswith("web.service failed: GET http://****@127.0.0.1")
        assert "mailto://****" in posts[0]["message"]

        # the CLI's status and history, as the daemon would answer them
        answers = {
            "/v1/status": {
                "status": f"1 unhealthy: GET {check_url}",
                "units": [
                    {
                        "unit": "web.service",
                        "condition": "unhealthy",
                        "state": "failed",
                        "phase": "cooldown",
                        "attempts": 1,
                        "max_attempts": 3,
                        "next_action_in_s": None,
                        "last_event": messages[0].replace("****", S["check URL password"]),
                    }
                ],
            },
            "/v1/history": {
                "entries": [
                    {
                        "time": time.time(),
                        "unit": "web.service",
                        "kind": "check",
                        "message": f"{argv[1]} GET {check_url}",
                    }
                ]
            },
        }

        def fake_call(path: Path, method: str, url: str, timeout: float = 30.0) -> Any:
            return 200, answers[url.split("?")[0]]

        monkeypatch.setattr(client, "call", fake_call)
        so_far = capsys.readouterr()
        out.add("stderr", so_far.err)
        out.add("stdout", so_far.out)
        for command in (["status"], ["status", "--json"], ["history"], ["history", "--json"]):
            # status exits with the units' health (0 to 3); anything else is an error
            allowed = (0, 1, 2, 3) if command[0] == "status" else (0,)
            assert cli.main(command) in allowed
        out.add("CLI", capsys.readouterr().out)
    finally:
        structlog.reset_defaults()

    captured = capsys.readouterr()
    out.add("stderr", captured.err)
    out.add("stdout", captured.out)
    if mode == "journal":
        out.add("journal", recorder.sent)
        assert any("probe crashed" in fields["MESSAGE"] for fields in recorder.sent)
    else:
        assert "probe crashed" in "".join(out.seen["stderr"])
    assert set(out.seen) >= {
        "validate",
        "config errors",
        "check messages",
        "check plugin",
        "check json",
        "STATUS=",
        "alert delivered",
        "alert spooled",
        "test-alert",
        "CLI",
        "stderr",
    }
    assert out.leaks() == []


def test_sys_path_has_no_shadowing_secrets_module() -> None:
    """supervisor/secrets.py is only ever imported as supervisor.secrets: the standard
    library's `secrets` is still the one `import secrets` finds."""
    import secrets as stdlib_secrets

    assert hasattr(stdlib_secrets, "token_hex")
    assert os.path.dirname(stdlib_secrets.__file__) != os.path.dirname(mask.__code__.co_filename)
    assert sys.modules["supervisor.secrets"].mask is mask
