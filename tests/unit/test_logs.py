"""Logging: the journal field mapping (pure), the stderr format, and journald in the lab."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from supervisor.logs import configure_logging
from supervisor.systemd import journal
from supervisor.systemd.journal import field_name, journal_fields, logfmt_value, stderr_is_journal
from supervisor.testing.lab import Lab


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# -- the mapping, as a pure function ------------------------------------------------------


def test_bound_keys_become_upper_case_fields() -> None:
    fields = journal_fields(
        {
            "event": "unit failed",
            "level": "warning",
            "timestamp": "2026-01-05T10:00:00Z",
            "unit": "nginx.service",
            "action": "restart",
            "check": "http",
            "took_ms": 12.5,
            "reason": "exit code 1",
        }
    )
    assert fields == {
        "MESSAGE": "unit failed unit=nginx.service action=restart check=http took_ms=12.5 "
        'reason="exit code 1"',
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "host-supervisor",
        "UNIT": "nginx.service",
        "ACTION": "restart",
        "CHECK": "http",
        "TOOK_MS": "12.5",
        "REASON": "exit code 1",
        "OBJECT_SYSTEMD_UNIT": "nginx.service",
    }


@pytest.mark.parametrize(
    ("level", "priority"),
    [("debug", "7"), ("info", "6"), ("warning", "4"), ("error", "3"), ("critical", "2")],
)
def test_priority_from_level(level: str, priority: str) -> None:
    fields = journal_fields({"event": "x", "level": level})
    assert fields["PRIORITY"] == priority
    assert fields["MESSAGE"] == "x"
    assert "OBJECT_SYSTEMD_UNIT" not in fields


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("unit", "UNIT"),
        ("retry_in_s", "RETRY_IN_S"),
        ("took-ms", "TOOK_MS"),
        ("_private", "PRIVATE"),  # a leading underscore would claim a trusted field
        ("1st", "F_1ST"),
        ("message", "HS_MESSAGE"),  # never overrides what this output sets
        ("priority", "HS_PRIORITY"),
        ("x" * 80, "X" * 64),
    ],
)
def test_field_names(key: str, name: str) -> None:
    assert field_name(key) == name


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("web.service", "web.service"),
        ("two words", '"two words"'),
        ("", '""'),
        (3, "3"),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("ünï", "ünï"),
    ],
)
def test_logfmt_values(value: object, text: str) -> None:
    assert logfmt_value(value) == text


def test_an_exception_is_in_the_message_and_its_own_field() -> None:
    fields = journal_fields(
        {
            "event": "probe crashed",
            "level": "error",
            "check": "http",
            "exception": "Traceback (most recent call last):\n  ...\nValueError: boom\n",
        }
    )
    assert fields["MESSAGE"].startswith("probe crashed check=http\nTraceback")
    assert fields["MESSAGE"].endswith("ValueError: boom")
    assert fields["TRACEBACK"].startswith("Traceback")
    assert fields["PRIORITY"] == "3"


def test_stderr_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        good = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(good, fd=stream.fileno())
        assert not stderr_is_journal(
            {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fd=stream.fileno()
        )
        assert not stderr_is_journal({}, fd=stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, fd=stream.fileno())


# -- configure_logging --------------------------------------------------------------------


def test_stderr_lines_are_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", journal=False)
    log = structlog.get_logger("test")
    log.warning("unit failed", unit="web.service", action="restart")
    log.debug("not shown at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r'timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z level=warning event="unit failed" '
        r"unit=web.service action=restart",
        lines[0],
    ), lines[0]


def test_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def __call__(self, **fields: str) -> None:
        self.sent.append(fields)


@pytest.fixture
def journald(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(journal, "_default_sender", lambda: recorder)
    return recorder


def test_journal_output_sends_fields(journald: Recorder) -> None:
    configure_logging("debug", journal=True)
    log = structlog.get_logger("test").bind(unit="db.service")
    log.info("restart finished", action="restart", result="job done")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("probe crashed", check="tcp")
    first, second = journald.sent
    assert first["MESSAGE"] == 'restart finished unit=db.service action=restart result="job done"'
    assert (first["PRIORITY"], first["UNIT"], first["ACTION"]) == ("6", "db.service", "restart")
    assert second["PRIORITY"] == "3" and second["CHECK"] == "tcp"
    assert "RuntimeError: boom" in second["MESSAGE"] and "RuntimeError: boom" in second["TRACEBACK"]


def test_journal_is_chosen_when_stderr_is_the_journal_stream(
    journald: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    configure_logging()
    structlog.get_logger().info("hello", unit="x.service")
    assert [f["MESSAGE"] for f in journald.sent] == ["hello unit=x.service"]
    monkeypatch.setenv("JOURNAL_STREAM", "0:0")
    configure_logging()
    structlog.get_logger().info("to stderr")
    assert len(journald.sent) == 1


# -- the real journald, in the lab --------------------------------------------------------

LOG_SCRIPT = """
import structlog
from supervisor.logs import configure_logging
configure_logging()  # auto: stderr is the journal stream systemd gave the unit
log = structlog.get_logger()
log.warning("unit failed", unit="foo-logs.service", action="restart", check="http")
log.debug("dropped at info")
"""


def test_journald_in_the_lab(lab: Lab) -> None:
    source_root = Path(__file__).resolve().parents[2]
    lab.run(
        "systemd-run", "--wait", "--quiet", "--unit=hs-log-test",
        "-p", "StandardError=journal", "-p", "StandardOutput=journal",
        "-E", f"PYTHONPATH={source_root}",
        sys.executable, "-c", LOG_SCRIPT,
    )  # fmt: skip

    def entries(*match: str) -> list[dict[str, Any]]:
        out = lab.run("journalctl", "--no-pager", "-o", "json", *match, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    [entry] = lab.wait_for(
        lambda: entries("UNIT=foo-logs.service"), timeout=10, what="our line in the lab journal"
    )
    assert entry["MESSAGE"] == "unit failed unit=foo-logs.service action=restart check=http"
    assert entry["PRIORITY"] == "4"
    assert entry["ACTION"] == "restart" and entry["CHECK"] == "http"
    assert entry["SYSLOG_IDENTIFIER"] == "host-supervisor"
    assert entry["_SYSTEMD_UNIT"] == "hs-log-test.service"  # sent by the unit, natively
    # journalctl -u shows it with the unit's own lines (OBJECT_SYSTEMD_UNIT from root).
    assert [e["MESSAGE"] for e in entries("-u", "foo-logs.service")] == [entry["MESSAGE"]]
    assert entries("_SYSTEMD_UNIT=hs-log-test.service", "PRIORITY=7") == []


SEND_SCRIPT = """
from supervisor.systemd.journal_send import JournalSender
send = JournalSender()
send(MESSAGE="probe crashed\\nTraceback (most recent call last):\\n  boom", PRIORITY="3",
     SYSLOG_IDENTIFIER="host-supervisor", UNIT="foo-native.service", CODE_FILE="x.py")
send(MESSAGE="a big one", UNIT="foo-native.service", DUMP="y" * 300_000 + "\\nend")
"""


def _text(value: Any) -> str:
    """A field of ``journalctl -o json``: a string, or a list of bytes when not printable."""
    return bytes(value).decode() if isinstance(value, list) else str(value)


def test_the_native_protocol_reaches_the_real_journald(lab: Lab) -> None:
    source_root = Path(__file__).resolve().parents[2]
    lab.run(
        "systemd-run", "--wait", "--quiet", "--unit=hs-native-test",
        "-E", f"PYTHONPATH={source_root}", sys.executable, "-c", SEND_SCRIPT,
    )  # fmt: skip

    def entries() -> list[dict[str, Any]]:
        argv = ["journalctl", "--no-pager", "-o", "json", "--all", "UNIT=foo-native.service"]
        out = lab.run(*argv, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    found = lab.wait_for(
        lambda: len(e := entries()) == 2 and e, timeout=10, what="both entries in the journal"
    )
    multi, big = found
    assert _text(multi["MESSAGE"]) == "probe crashed\nTraceback (most recent call last):\n  boom"
    assert (multi["PRIORITY"], multi["SYSLOG_IDENTIFIER"]) == ("3", "host-supervisor")
    assert multi["CODE_FILE"] == "x.py"
    assert multi["_SYSTEMD_UNIT"] == "hs-native-test.service"
    # Too big for a datagram: it came in a sealed memfd, whole.
    assert big["MESSAGE"] == "a big one"
    assert _text(big["DUMP"]) == "y" * 300_000 + "\nend"
