"""The command line as a user runs it: real processes, real files."""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor.testing.lab import Lab

EXE = str(Path(sys.prefix) / "bin" / "host-supervisor")


def hs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=timeout)


def make_config(root: Path, policies: dict[str, str]) -> Path:
    (root / "policies.d").mkdir(parents=True)
    for name, text in policies.items():
        path = root / "policies.d" / name
        path.write_text(text)
        path.chmod(0o644)
    return root


def test_validate_names_file_line_and_column_and_exits_1(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "etc",
        {
            "good.yaml": "unit: good.service\n",
            "bad.yaml": "unit: bad.service\nrecovery:\n  cooldown: 5x\n",
        },
    )
    result = hs("validate", "--config", str(config))
    assert result.returncode == 1
    bad = config / "policies.d" / "bad.yaml"
    assert f"{bad}:3:13:" in result.stdout
    assert "5x" in result.stdout


def test_validate_accepts_a_valid_config(tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", {"web.yaml": "unit: web.service\n"})
    result = hs("validate", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_is_json_and_refuses_unknown_keys() -> None:
    result = hs("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert "unit" in schema["properties"]


def test_run_with_a_missing_config_dir_says_which_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = hs("run", "--config", str(missing), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 78
    assert str(missing) in result.stderr
    assert len([line for line in result.stderr.splitlines() if str(missing) in line]) == 1


def test_run_refuses_to_start_when_no_policy_is_valid(tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", {"bad.yaml": "unit: [\n"})
    result = hs("run", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 78
    assert "bad.yaml:" in result.stderr


def test_run_retries_an_unreachable_bus_instead_of_crashing(tmp_path: Path) -> None:
    # One broken policy among good ones: logged with its place, the rest kept.
    config = make_config(
        tmp_path / "etc",
        {"web.yaml": "unit: web.service\n", "zz-bad.yaml": "unit: bad.service\nfoo: 1\n"},
    )
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    proc = subprocess.Popen(
        [
            EXE,
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--socket",
            str(tmp_path / "control.sock"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(2.0)  # long enough for at least two attempts (0.5 s, then 1 s)
        assert proc.poll() is None, "the daemon exited instead of retrying"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    bad = config / "policies.d" / "zz-bad.yaml"
    assert f"{bad}:2:1:" in err
    attempts = [line for line in err.splitlines() if "system bus unreachable" in line]
    assert len(attempts) >= 2
    assert f"{tmp_path}/no-bus" in attempts[0]


def test_a_second_daemon_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", {"web.yaml": "unit: web.service\n"})
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    state = str(tmp_path / "state")
    first = subprocess.Popen(
        [
            EXE,
            "run",
            "--config",
            str(config),
            "--state-dir",
            state,
            "--socket",
            str(tmp_path / "a.sock"),
        ],
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "state" / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        second = hs("run", "--config", str(config), "--state-dir", state, env=env)
        assert second.returncode == 75
        assert "in use by another host-supervisor" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=10)


def test_a_state_dir_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", {"web.yaml": "unit: web.service\n"})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = hs("run", "--config", str(config), "--state-dir", str(blocker / "state"))
    assert result.returncode == 73
    assert f"state dir {blocker / 'state'} is not writable" in result.stderr


def test_a_corrupt_state_database_is_moved_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", {"web.yaml": "unit: web.service\n"})
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(b"this is not a database" * 100)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    proc = subprocess.Popen(
        [EXE, "run", "--config", str(config), "--state-dir", str(state),
         "--socket", str(tmp_path / "control.sock")],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not list(state.glob("state.db.corrupt-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "the daemon did not keep running"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    moved = list(state.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert "moved it aside" in err and str(moved[0]) in err


def test_validate_without_a_bus_says_backups_were_not_checked(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "etc",
        {"web.yaml": "unit: web.service\nfailover: {backup: web-b.service}\n"},
    )
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    result = hs("validate", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: backup units not checked" in result.stderr
    assert result.stdout.strip() == "OK: 1 policy for 1 unit"


def _as(user: str, group: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups"]


def test_the_cli_against_a_daemon_one_line_errors_and_roles(lab: Lab) -> None:
    """A daemon on the host, on the lab's bus: every error the CLI meets is one line
    with its exit code; nobody (in the read group) reads but may not act; a user
    outside the socket's group cannot connect at all."""
    scratch = Path(tempfile.mkdtemp(prefix="hs-cli-", dir="/var/tmp"))
    try:
        scratch.chmod(0o755)  # nobody must reach the socket
        config = make_config(scratch / "etc", {"web.yaml": "unit: cli-web.service\n"})
        (config / "host-supervisor.yaml").write_text("control: {read_group: nogroup}\n")
        sock = scratch / "control.sock"
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": lab.bus_address}
        with open(scratch / "daemon.log", "w+") as log:
            proc = subprocess.Popen(
                [EXE, "run", "--config", str(config), "--state-dir", str(scratch / "state"),
                 "--socket", str(sock)],
                stderr=log, env=env,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 20
                while not sock.is_socket() and time.monotonic() < deadline:
                    assert proc.poll() is None, "the daemon exited"
                    time.sleep(0.05)
                _check_the_cli(sock)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            log.seek(0)
            daemon_log = log.read()
        assert proc.returncode == 0, daemon_log
        assert "Traceback" not in daemon_log
        refused = [line for line in daemon_log.splitlines() if "control request refused" in line]
        assert len(refused) == 1 and "uid 65534 (nobody)" in refused[0]
        acted = [line for line in daemon_log.splitlines() if 'event="control request"' in line]
        assert len(acted) == 4 and all("uid 0 (root)" in line for line in acted), acted
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_the_cli(sock: Path) -> None:
    def expect(argv: list[str], code: int, stderr: str = "") -> str:
        cli = [*argv[:4], EXE, *argv[4:]] if argv[0] == "setpriv" else [EXE, *argv]
        result = subprocess.run(
            [*cli, "--socket", str(sock)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == code, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        if stderr:  # an error: one line
            assert result.stderr.count("\n") == 1, result.stderr
            assert stderr in result.stderr, result.stderr
        else:  # done, or a status exiting with the units' health
            assert result.stderr == "", result.stderr
        return result.stdout

    info = sock.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, grp.getgrnam("nogroup").gr_gid)
    # cli-web.service does not exist: status exits 2 (unhealthy), as systemctl is-active would.
    assert json.loads(expect(["status", "--json"], 2))["units"][0]["unit"] == "cli-web.service"
    assert "not-found" in expect(["status", "--no-color"], 2)
    expect(["history", "--limit", "-1"], 2, "limit must be a whole number from 1 to 100000")
    expect(["history", "--limit", "0"], 2, "got '0'")
    expect(["history", "--since", "soon"], 2, "argument --since: 'soon' is not a duration")
    expect(["history", "nope.service"], 1, "no policy for unit nope.service")
    expect(["status", "nope.service"], 4, "no policy for unit nope.service")  # no status
    expect(["pause", "nope.service"], 1, "no policy for unit nope.service")
    expect(["failover", "cli-web.service", "--to", "x.service"], 1, "host-supervisor: ")
    expect(["history", "cli-web.service", "--since", "1h", "--limit", "5"], 0)
    said = expect(["pause", "cli-web.service", "--for", "1h 30min", "--reason", "lab"], 0)
    assert said.startswith("cli-web.service paused for 1h 30m (until ") and "lab" in said
    assert "paused (1h 29m left: lab)" in expect(["status", "--full"], 2)
    assert expect(["resume", "cli-web.service"], 0) == (
        "cli-web.service resumed: it is repaired again when it fails\n"
    )
    # nobody is in nogroup, the read group: reads, and is refused acting with a 403.
    nobody = _as("nobody", "nogroup")
    assert "cli-web.service" in expect([*nobody, "status"], 2)
    expect(
        [*nobody, "pause", "cli-web.service"],
        4,
        "uid 65534 (nobody) may not pause cli-web.service: needs the act role",
    )
    # daemon (uid 1) is not in the socket file's group: the file itself keeps it out.
    expect([*_as("daemon", "daemon"), "status"], 4, "permission denied")
    sock_missing = sock.with_name("missing.sock")
    result = subprocess.run(
        [EXE, "metrics", "--socket", str(sock_missing)], capture_output=True, text=True
    )
    assert result.returncode == 3
    assert result.stderr == (
        f"host-supervisor: no daemon answers on {sock_missing}: is host-supervisor running?\n"
    )
