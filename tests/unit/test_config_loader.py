"""Loading a config directory: every error at its FILE:LINE:COL, valid policies kept."""

import os
import textwrap
from pathlib import Path

import pytest

from supervisor.config import ConfigIssue, LoadedConfig, MainConfig, load_config
from supervisor.errors import ConfigError


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write a dedented file with safe permissions (the loader refuses group-writable ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    path.chmod(mode)
    return path


def policy(config_dir: Path, name: str, text: str, mode: int = 0o644) -> Path:
    return write(config_dir / "policies.d" / name, text, mode)


def issues(config_dir: Path) -> list[str]:
    return [str(issue) for issue in load_config(config_dir).errors]


def executable(path: Path) -> Path:
    write(path, "#!/bin/sh\nexit 0\n", mode=0o755)
    return path


# --- files and YAML -------------------------------------------------------------------------


def test_missing_config_dir_raises_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"config directory {missing} does not exist"


def test_no_files_gives_defaults(tmp_path: Path) -> None:
    loaded = load_config(tmp_path)
    assert loaded == LoadedConfig(MainConfig(), {}, {}, [], True)
    assert loaded.ok


def test_not_yaml_gives_the_parsers_position(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: http
            http: {url: "http://127.0.0.1/"
          - name: port
        """,
    )
    assert issues(tmp_path) == [f"{path}:5:3: not valid YAML: did not find expected ',' or '}}'"]


def test_tab_indentation_is_a_yaml_error(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", "unit: web.service\nchecks:\n\t- name: x\n")
    [issue] = load_config(tmp_path).errors
    assert (issue.path, issue.line, issue.col) == (path, 3, 1)
    assert issue.message.startswith("not valid YAML: ")


def test_empty_file_and_non_mapping_are_one_clear_error_each(tmp_path: Path) -> None:
    empty = policy(tmp_path, "a.yaml", "# nothing yet\n")
    listing = policy(tmp_path, "b.yaml", "- unit: web.service\n")
    scalar = policy(tmp_path, "c.yaml", "web.service\n")
    assert issues(tmp_path) == [
        f"{empty}:1:1: the file is empty; a policy needs 'unit:'",
        f"{listing}:1:1: expected a mapping of keys at the top, got a list",
        f"{scalar}:1:1: expected a mapping of keys at the top, got 'web.service'",
    ]


def test_main_config_of_only_comments_means_defaults(tmp_path: Path) -> None:
    write(tmp_path / "host-supervisor.yaml", "# guard:\n#   max_concurrent: 3\n")
    loaded = load_config(tmp_path)
    assert (loaded.errors, loaded.main_ok, loaded.main) == ([], True, MainConfig())


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = policy(tmp_path, "a.yaml", "unit: a.service\nunit: b.service\n")
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{path}:2:1: duplicate key 'unit'; the later value would silently win"
    ]
    assert loaded.policies == {}


def test_only_yaml_files_are_read_in_sorted_order(tmp_path: Path) -> None:
    policy(tmp_path, "b.yml", "unit: b.service\n")
    policy(tmp_path, "a.yaml", "unit: a.service\n")
    policy(tmp_path, "README.txt", "not: [yaml")
    policy(tmp_path, "c.yaml.bak", "not: [yaml")
    policy(tmp_path, ".hidden.yaml", "not: [yaml")
    loaded = load_config(tmp_path)
    assert loaded.errors == []
    assert list(loaded.policies) == ["a.service", "b.service"]
    assert loaded.sources["b.service"] == tmp_path / "policies.d" / "b.yml"


def test_issue_str_is_file_line_col_key_message() -> None:
    issue = ConfigIssue(Path("/etc/p.yaml"), 3, 5, "bad", "checks[0].interval")
    assert str(issue) == "/etc/p.yaml:3:5: checks[0].interval: bad"
    assert str(ConfigIssue(Path("/etc/p.yaml"), 1, 1, "empty")) == "/etc/p.yaml:1:1: empty"


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "who"), [(0o664, "group"), (0o646, "others"), (0o666, "group and others")]
)
def test_writable_policy_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = policy(tmp_path, "web.yaml", "unit: web.service\n", mode=mode)
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{path}:1:1: refused: the file is writable by {who} (mode {mode:04o}); "
        "run chmod go-w on it"
    ]
    assert loaded.policies == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_policy_not_owned_by_root_is_refused_when_running_as_root(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", "unit: web.service\n")
    os.chown(path, 65534, 65534)
    assert issues(tmp_path) == [
        f"{path}:1:1: refused: the file is owned by uid 65534, not root; run chown root on it"
    ]


# --- type and key errors --------------------------------------------------------------------


def test_wrong_types_are_named(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks: {name: http}
        allow_automatic: maybe
        failover:
          backup: 42
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:2:9: checks: expected a list, got a mapping",
        f"{path}:3:18: allow_automatic: expected true or false, got 'maybe'",
        f"{path}:5:11: failover.backup: expected a list, got 42",
    ]


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: port
            tcp: {port: 80, hots: example.com}
            intervall: 5s
        recover: {}
        zzz: 1
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:21: checks[0].tcp.hots: unknown key 'hots' (did you mean 'host'?)",
        f"{path}:5:5: checks[0].intervall: unknown key 'intervall' (did you mean 'interval'?)",
        f"{path}:6:1: recover: unknown key 'recover' (did you mean 'recovery'?)",
        f"{path}:7:1: zzz: unknown key 'zzz'; known keys here: alerts, allow_automatic, "
        "checks, cluster, expect, failover, mode, recovery, unit",
    ]


def test_unknown_key_inside_failback_mapping(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        failover:
          backup: web-b.service
          failback: {dealy: 30s}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:14: failover.failback.dealy: unknown key 'dealy' (did you mean 'delay'?)"
    ]


def test_bad_duration_size_and_percent(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: mem
            memory: {max_rss: 12XB, host_max_used: 120%}
            interval: 5x
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:23: checks[0].memory.max_rss: '12XB' is not a size; "
        "use e.g. 512MiB, 1GiB, 100MB or a number of bytes",
        f"{path}:4:44: checks[0].memory.host_max_used: '120%' is not a percentage; "
        "use a value from 0% to 100%, e.g. 90%",
        f"{path}:5:15: checks[0].interval: '5x' is not a duration; "
        "use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d",
    ]


def test_zero_interval_is_refused(tmp_path: Path) -> None:
    path = policy(
        tmp_path, "web.yaml", "unit: web.service\nchecks:\n  - {name: u, unit: {}, timeout: 0s}\n"
    )
    assert issues(tmp_path) == [
        f"{path}:3:34: checks[0].timeout: '0s' is too short; it must be more than 0s"
    ]


# --- the unit ---------------------------------------------------------------------------------


def test_missing_unit_points_at_the_mapping(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", "# web\nalerts: []\n")
    assert issues(tmp_path) == [f"{path}:2:1: unit: missing required key 'unit'"]


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        (
            "nginx",
            "'nginx' is not a systemd unit name; write it with its type, e.g. 'nginx.service'",
        ),
        (
            "nginx.srv",
            "'nginx.srv' has no known unit type; end it with .service, .socket, .target, "
            ".timer, .mount or another systemd unit type",
        ),
        ("ng inx.service", "'ng inx.service' is not a valid systemd unit name"),
    ],
)
def test_invalid_unit_name(tmp_path: Path, unit: str, message: str) -> None:
    path = policy(tmp_path, "web.yaml", f"unit: {unit}\n")
    assert issues(tmp_path) == [f"{path}:1:7: unit: {message}"]


@pytest.mark.parametrize(
    "unit", ["nginx.service", "getty@tty1.service", "dbus.socket", "backup.timer", "srv-data.mount"]
)
def test_valid_unit_names(tmp_path: Path, unit: str) -> None:
    policy(tmp_path, "web.yaml", f"unit: {unit}\n")
    assert list(load_config(tmp_path).policies) == [unit]


def test_duplicate_policies_for_one_unit_name_both_files(tmp_path: Path) -> None:
    first = policy(tmp_path, "a.yaml", "# first\nunit: web.service\n")
    second = policy(tmp_path, "b.yaml", "unit:   web.service\n")
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{second}:1:9: unit: web.service already has a policy in {first}:2:7; "
        "keep one policy per unit"
    ]
    assert loaded.sources == {"web.service": first}


# --- checks -----------------------------------------------------------------------------------


def test_check_needs_exactly_one_probe(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: both
            tcp: {port: 80}
            http: {url: "http://127.0.0.1/"}
          - name: none
            interval: 5s
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:10: checks[0].tcp: one probe per check, got http and tcp; "
        "split them into two checks",
        f"{path}:6:5: checks[1]: a check needs one probe: add one of http, tcp, process, "
        "disk, memory, command, unit",
    ]


def test_duplicate_check_names(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - {name: port, tcp: {port: 80}}
          - name: state
            unit:
          - name: port
            tcp: {port: 443}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:6:11: checks[2].name: duplicate check name 'port'; checks[0] already has it"
    ]


@pytest.mark.parametrize(
    ("url", "shown", "col"),
    [
        ("ftp://example.com/", "ftp://example.com/", 17),
        ("http:///nohost", "http:///...", 17),  # a URL in an error: scheme and host only
        ("ftp://user:pw@example.com/x", "ftp://****@example.com/...", 17),
        ("127.0.0.1:80", "127.0.0.1:80", 17),
    ],
)
def test_url_that_does_not_parse(tmp_path: Path, url: str, shown: str, col: int) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        f"unit: web.service\nchecks:\n  - name: h\n    http: {{url: '{url}'}}\n",
    )
    assert issues(tmp_path) == [
        f"{path}:4:{col}: checks[0].http.url: {shown!r} is not an http:// or https:// URL with "
        "a host, e.g. http://127.0.0.1/healthz"
    ]


def test_port_out_of_range_and_missing(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: high
            tcp: {port: 70000}
          - name: zero
            tcp:
              port: 0
          - name: none
            tcp: {host: "::1"}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:17: checks[0].tcp.port: must be at most 65535, got 70000",
        f"{path}:7:13: checks[1].tcp.port: must be at least 1, got 0",
        f"{path}:9:10: checks[2].tcp.port: missing required key 'port'",
    ]


def test_disk_path_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    path = policy(
        tmp_path,
        "web.yaml",
        f"unit: web.service\nchecks:\n  - name: d\n    disk: {{path: {missing}}}\n",
    )
    assert issues(tmp_path) == [f"{path}:4:18: checks[0].disk.path: path {missing} does not exist"]


def test_command_must_be_an_absolute_existing_executable(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.sh", "echo hi\n")
    missing = tmp_path / "missing"
    path = policy(
        tmp_path,
        "web.yaml",
        f"""
        unit: web.service
        checks:
          - name: a
            command: {{argv: [{plain}, --flag]}}
          - name: b
            command: {{argv: [{missing}]}}
          - name: c
            command: {{argv: [pg_isready]}}
          - name: d
            command: {{argv: []}}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:22: checks[0].command.argv[0]: {plain} is not an executable file",
        f"{path}:6:22: checks[1].command.argv[0]: {missing} does not exist",
        f"{path}:8:22: checks[2].command.argv[0]: 'pg_isready' is not an absolute path; "
        "commands run without a shell",
        f"{path}:10:21: checks[3].command.argv: the command is empty; give at least the "
        "program, e.g. [/usr/bin/true]",
    ]


def test_bad_regex_and_status_range(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: h
            http: {url: "http://x/", body_regex: "(", expect_status: 399-200}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:42: checks[0].http.body_regex: '(' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
        f"{path}:4:62: checks[0].http.expect_status: '399-200' is not a status range; "
        "use low-high within 100-599",
    ]


def test_process_probe_target_rules(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        checks:
          - name: both
            process: {main_pid: true, name: nginx}
          - name: neither
            process: {main_pid: false}
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:25: checks[0].process.main_pid: true cannot be combined with name or "
        "cmdline; remove main_pid",
        f"{path}:6:25: checks[1].process.main_pid: false needs a name or a cmdline",
    ]


def test_memory_probe_needs_a_limit(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", "unit: web.service\nchecks:\n  - {name: m, memory: {}}\n")
    assert issues(tmp_path) == [
        f"{path}:3:23: checks[0].memory: give max_rss, host_max_used or both"
    ]


# --- recovery and failover --------------------------------------------------------------------


def test_ladder_with_restore_needs_a_restore_section(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        recovery:
          ladder: [restart, restore]
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:3:11: recovery.ladder: the ladder has restore but there is no restore "
        "section; add recovery.restore with its paths, or remove restore from the ladder"
    ]


def test_ladder_refuses_repeats_and_unknown_steps(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        recovery:
          ladder: [restart, reboot, restart]
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:3:21: recovery.ladder[1]: expected 'restart', 'reload' or 'restore', got 'reboot'",
    ]
    write(path, "unit: web.service\nrecovery: {ladder: [restart, reload, restart]}\n")
    assert issues(tmp_path) == [
        f"{path}:2:38: recovery.ladder[2]: step restart is already in the ladder"
    ]


def test_restore_section_rules(tmp_path: Path) -> None:
    missing_dir = tmp_path / "defaults"
    path = policy(
        tmp_path,
        "web.yaml",
        f"""
        unit: web.service
        recovery:
          restore:
            paths: []
            from: {missing_dir}
          cooldown: 2h
        failover:
          backup: [web-b.service, web.service]
          failback: auto
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:4:12: recovery.restore.paths: must not be empty",
        f"{path}:5:11: recovery.restore.from: directory {missing_dir} does not exist",
        f"{path}:9:13: failover.failback: expected manual or a mapping like "
        "{delay: 30s, successes: 2}, got 'auto'",
    ]


def test_cooldown_above_max_cooldown_and_own_backup(tmp_path: Path) -> None:
    path = policy(
        tmp_path,
        "web.yaml",
        """
        unit: web.service
        recovery: {cooldown: 2h}
        failover:
          backup: [web-b.service, web.service]
        """,
    )
    assert issues(tmp_path) == [
        f"{path}:2:22: recovery.cooldown: cooldown 2h is longer than max_cooldown 1h",
    ]
    write(path, "unit: web.service\nfailover:\n  backup: [web-b.service, web.service]\n")
    assert issues(tmp_path) == [f"{path}:3:27: failover.backup[1]: a unit cannot be its own backup"]


# --- alerts and the main config ---------------------------------------------------------------


def test_undefined_alert_channel(tmp_path: Path) -> None:
    write(
        tmp_path / "host-supervisor.yaml",
        "alerts:\n  channels:\n    ops: {url: 'json://localhost'}\n",
    )
    path = policy(tmp_path, "web.yaml", "unit: web.service\nalerts:\n  - ops\n  - pager\n")
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{path}:4:5: alerts[1]: alert channel 'pager' is not defined in host-supervisor.yaml "
        "(defined: ops)"
    ]
    assert loaded.policies == {}
    assert loaded.main_ok


def test_unparsable_apprise_url_is_reported_with_its_secret_masked(tmp_path: Path) -> None:
    main = write(
        tmp_path / "host-supervisor.yaml",
        """
        alerts:
          channels:
            good: {url: "json://localhost"}
            bad:
              url: "notaservice://alerts:hunter2@smtp.example.com/tok3n"
        """,
    )
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{main}:5:12: alerts.channels.bad.url: apprise cannot use the URL 'notaservice://****'; "
        "check the service name and its required parts (see the apprise wiki)"
    ]
    assert "hunter2" not in str(loaded.errors) and "tok3n" not in str(loaded.errors)
    assert not loaded.main_ok
    assert loaded.main == MainConfig()


def test_apprise_error_is_never_logged_with_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path / "host-supervisor.yaml",
        "alerts:\n  channels:\n    s: {url: 'slack://T0/hunter2'}\n",
    )
    caplog.set_level("DEBUG")
    assert len(load_config(tmp_path).errors) == 1
    assert "hunter2" not in caplog.text


def test_broken_main_config_falls_back_to_defaults(tmp_path: Path) -> None:
    main = write(
        tmp_path / "host-supervisor.yaml",
        """
        guard:
          max_concurrent: 0
          flapping: {high: 20%}
        log_level: loud
        """,
    )
    policy(tmp_path, "web.yaml", "unit: web.service\nalerts: [ops]\n")
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{main}:2:19: guard.max_concurrent: must be at least 1, got 0",
        f"{main}:3:13: guard.flapping.low: low (25%) must be below high (20%)",
        f"{main}:4:12: log_level: expected 'debug', 'info', 'warning' or 'error', got 'loud'",
    ]
    assert not loaded.main_ok
    assert loaded.main == MainConfig()
    # Channels cannot be checked against a broken main config: the policy stays.
    assert list(loaded.policies) == ["web.service"]


def test_channel_name_error_points_at_the_key(tmp_path: Path) -> None:
    main = write(
        tmp_path / "host-supervisor.yaml",
        "alerts:\n  channels:\n    'ops pager': {url: 'json://x'}\n",
    )
    assert issues(tmp_path) == [
        f"{main}:3:5: alerts.channels.ops pager: 'ops pager' is not a valid name; "
        "use letters, digits, '-', '_' and '.'"
    ]


# --- many files ---------------------------------------------------------------------------------


def test_every_error_in_every_file_is_reported_and_valid_policies_kept(tmp_path: Path) -> None:
    good = policy(tmp_path, "a-good.yaml", "unit: good.service\nchecks:\n  - {name: u, unit: {}}\n")
    bad1 = policy(
        tmp_path,
        "b-bad.yaml",
        """
        unit: bad
        checks:
          - name: x
            tcp: {port: 0}
            interval: soon
        """,
    )
    bad2 = policy(tmp_path, "c-bad.yaml", "unit: [x]\n")
    main = write(tmp_path / "host-supervisor.yaml", "log_level: verbose\n")
    loaded = load_config(tmp_path)
    assert [str(i) for i in loaded.errors] == [
        f"{main}:1:12: log_level: expected 'debug', 'info', 'warning' or 'error', got 'verbose'",
        f"{bad1}:1:7: unit: 'bad' is not a systemd unit name; write it with its type, "
        "e.g. 'bad.service'",
        f"{bad1}:4:17: checks[0].tcp.port: must be at least 1, got 0",
        f"{bad1}:5:15: checks[0].interval: 'soon' is not a duration; "
        "use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d",
        f"{bad2}:1:7: unit: expected a string, got a list",
    ]
    assert list(loaded.policies) == ["good.service"]
    assert loaded.sources == {"good.service": good}


# --- the example of DESIGN.md -------------------------------------------------------------------

DESIGN = Path(__file__).parent / "fixtures" / "config" / "design"


def design_copy(tmp_path: Path) -> Path:
    """The DESIGN.md example, with nginx -t replaced by an executable that exists here."""
    nginx = executable(tmp_path / "bin" / "nginx")
    config = tmp_path / "etc"
    write(config / "host-supervisor.yaml", (DESIGN / "host-supervisor.yaml").read_text())
    text = (DESIGN / "policies.d" / "nginx.yaml").read_text()
    write(config / "policies.d" / "nginx.yaml", text.replace("/usr/sbin/nginx", str(nginx)))
    return config


def test_design_example_loads_with_expected_values(tmp_path: Path) -> None:
    config = design_copy(tmp_path)
    loaded = load_config(config)
    assert loaded.errors == []
    assert loaded.main_ok
    nginx = loaded.policies["nginx.service"]
    assert loaded.sources["nginx.service"] == config / "policies.d" / "nginx.yaml"

    http, port, memory = nginx.checks
    assert (http.name, http.kind, http.interval, http.timeout) == ("http", "http", 5.0, 2.0)
    assert (http.failures, http.successes, http.start_period, http.critical) == (3, 2, 0.0, True)
    assert http.http is not None and http.http.url == "http://127.0.0.1/healthz"
    assert http.http.expect_status == ((200, 200),)
    assert http.http.status_ok(200) and not http.http.status_ok(204)
    assert (http.http.method, http.http.tls_verify, http.http.follow_redirects) == (
        "GET",
        True,
        False,
    )
    assert port.tcp is not None and (port.tcp.host, port.tcp.port) == ("127.0.0.1", 80)
    assert (port.interval, port.timeout) == (10.0, 5.0)
    assert memory.memory is not None and memory.memory.max_rss == 512 * 1024 * 1024
    assert memory.critical is False

    recovery = nginx.recovery
    assert recovery.ladder == ("restart", "reload", "restore")
    assert (recovery.cooldown, recovery.max_attempts, recovery.settle) == (300.0, 3, 10.0)
    assert (recovery.backoff, recovery.max_cooldown, recovery.reset_after) == (1.0, 3600.0, 3600.0)
    pre = recovery.preconditions
    assert (pre.disk_below, pre.memory_below, pre.disk_paths) == (90.0, 95.0, ("/",))
    assert pre.units_active == ("network-online.target",)
    assert recovery.restore is not None
    assert recovery.restore.paths == ("/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled")
    assert recovery.restore.source == "last-known-good"
    assert recovery.restore.validate_argv == (str(tmp_path / "bin" / "nginx"), "-t")
    assert (recovery.restore.snapshot_after, recovery.restore.keep) == (600.0, 5)

    assert nginx.failover is not None
    assert nginx.failover.backup == ("nginx-maintenance.service",)
    assert nginx.failover.mode == "cold" and nginx.failover.settle == 10.0
    assert nginx.failover.failback != "manual"
    assert (nginx.failover.failback.delay, nginx.failover.failback.successes) == (30.0, 2)
    assert nginx.alerts == ("ops-email", "ops-slack")
    assert nginx.allow_automatic is False

    main = loaded.main
    assert main.alerts.channels["ops-email"].min_severity == "warning"
    assert main.alerts.channels["ops-slack"].min_severity == "info"
    assert main.alerts.channels["ops-slack"].url == "slack://T000/B000/XXXX"
    assert (main.alerts.repeat_interval, main.alerts.spool_max) == (3600.0, 1000)
    assert (main.guard.repair_budget.max, main.guard.repair_budget.window) == (5, 900.0)
    assert main.guard.max_concurrent == 3
    assert main.guard.protected[0] == "postgresql*" and len(main.guard.protected) == 7
    assert (main.guard.breaker.failures, main.guard.breaker.open_for) == (5, 60.0)
    assert (main.guard.flapping.window, main.guard.flapping.high, main.guard.flapping.low) == (
        600.0,
        50.0,
        25.0,
    )
    assert main.checks.max_concurrent_commands == 4
    assert main.control.socket_group is None and main.log_level == "info"


def test_design_main_config_spells_out_the_defaults(tmp_path: Path) -> None:
    config = design_copy(tmp_path)
    loaded = load_config(config)
    assert loaded.main.guard == MainConfig().guard
    assert loaded.main.model_copy(update={"alerts": MainConfig().alerts}) == MainConfig()


# --- hostile input: every error at its true FILE:LINE:COL, nothing escapes -----------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!float abc", "not valid YAML: 'abc' is not a valid !!float value"),
        ("!!bool maybe", "not valid YAML: 'maybe' is not a valid !!bool value"),
        ("!!timestamp 5", "not valid YAML: '5' is not a valid !!timestamp value"),
        ("!!int x", "not valid YAML: 'x' is not a valid !!int value"),
        ("9" * 5000, "not valid YAML: a number of more than 4,300 digits"),
        ('"a\\0b"', "not valid YAML: a NUL character (\\0) is not allowed in a value"),
        ("!!binary YQBi", "not valid YAML: a NUL character (\\0) is not allowed in a value"),
    ],
    ids=["float", "bool", "timestamp", "int", "digits", "nul-escape", "nul-binary"],
)
def test_values_yaml_cannot_construct_are_errors_at_their_node(
    tmp_path: Path, value: str, message: str
) -> None:
    path = policy(tmp_path, "web.yaml", f"unit: web.service\nchecks:\n  - name: {value}\n")
    assert issues(tmp_path) == [f"{path}:3:11: {message}"]


def test_a_nul_in_a_key_is_refused_too(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", 'unit: web.service\n"ch\\0ecks": []\n')
    assert issues(tmp_path) == [
        f"{path}:2:1: not valid YAML: a NUL character (\\0) is not allowed in a value"
    ]


def test_invalid_utf8_is_reported_at_its_byte(tmp_path: Path) -> None:
    path = tmp_path / "policies.d" / "web.yaml"
    path.parent.mkdir()
    path.write_bytes(
        "unit: web.service\n# é ok\nchecks: [\xff]\n".encode("latin-1").replace(
            "é".encode("latin-1"), "é".encode()
        )
    )
    assert issues(tmp_path) == [f"{path}:3:10: not UTF-8 text: invalid start byte (ff)"]


@pytest.mark.parametrize(("char", "code"), [("\x01", "0001"), ("\x00", "0000"), ("\x7f", "007f")])
def test_control_characters_are_reported_at_their_position(
    tmp_path: Path, char: str, code: str
) -> None:
    path = policy(tmp_path, "web.yaml", f"unit: web.service\nalerts: [é, a{char}b]\n")
    [issue] = issues(tmp_path)
    assert issue.startswith(f"{path}:2:14: not valid YAML: ")
    assert issue.endswith(f" (character #x{code})")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("interval: .nan", "4:15: checks[0].interval", ".nan is not a duration"),
        ("interval: .inf", "4:15: checks[0].interval", ".inf is too long"),
        ("timeout: 1.0e+309", "4:14: checks[0].timeout", ".inf is too long"),
        ("start_period: 3650d", "4:19: checks[0].start_period", "'3650d' is too long"),
        ("failures: 9223372036854775808", "4:15: checks[0].failures", "must be at most 1000000"),
        ("successes: .nan", "4:16: checks[0].successes", "expected a finite number, got .nan"),
    ],
)
def test_nan_infinite_and_out_of_bound_values_are_refused(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = policy(
        tmp_path, "web.yaml", f"unit: web.service\nchecks:\n  - name: u\n    {text}\n    unit:\n"
    )
    [issue] = issues(tmp_path)
    assert issue.startswith(f"{path}:{where}: {message}")


def test_main_config_nan_window_falls_back_to_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "host-supervisor.yaml", "guard:\n  repair_budget: {window: .nan}\n")
    loaded = load_config(tmp_path)
    assert [str(e) for e in loaded.errors] == [
        f"{path}:2:27: guard.repair_budget.window: .nan is not a duration; "
        "use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d"
    ]
    assert loaded.main == MainConfig()


def test_a_file_over_a_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    path = policy(tmp_path, "web.yaml", "unit: web.service\n" + "#" * (1024 * 1024) + "\n")
    assert issues(tmp_path) == [
        f"{path}:1:1: the file is larger than 1MiB; a policy takes a few KiB"
    ]


def test_errors_per_file_are_capped(tmp_path: Path) -> None:
    keys = "".join(f"k{n}: 1\n" for n in range(5000))
    path = policy(tmp_path, "web.yaml", "unit: web.service\n" + keys)
    found = issues(tmp_path)
    assert len(found) == 21
    assert f"{path}:1:1: 4980 more errors not shown; fix these first" in found


def test_an_unexpected_exception_in_one_file_is_an_error_for_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.config.loader as loader

    bad = policy(tmp_path, "bad.yaml", "unit: bad.service\n")
    policy(tmp_path, "good.yaml", "unit: good.service\n")
    real = loader.validate_document

    def validate(model: type, doc: loader.Document) -> object:
        if doc.path == bad:
            raise OverflowError("int too large to convert to float")
        return real(model, doc)

    monkeypatch.setattr(loader, "validate_document", validate)
    loaded = load_config(tmp_path)
    assert [str(e) for e in loaded.errors] == [
        f"{bad}:1:1: cannot be loaded: OverflowError: int too large to convert to float "
        "(an internal error; please report it)"
    ]
    assert list(loaded.policies) == ["good.service"]
    policy_, found = loader.load_policy_file(bad)
    assert policy_ is None and [str(e) for e in found] == [str(e) for e in loaded.errors]
