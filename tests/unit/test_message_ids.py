"""journald MESSAGE_ID=s: fixed, unique, each explained in the shipped catalog, which
journalctl itself accepts; and sent as a field, not as words of the message."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from supervisor.core.notices import MessageId
from supervisor.systemd.journal import journal_fields

CATALOG = Path(__file__).parents[2] / "units" / "host-supervisor.catalog"
HEADER = re.compile(r"^-- ([0-9a-f]{32})$")


def entries() -> dict[str, list[str]]:
    """The catalog's entries: id -> the lines after its header (comments dropped)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in CATALOG.read_text().splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("-- "):
            match = HEADER.match(line)
            assert match, f"{CATALOG.name}: bad header {line!r}"
            assert match[1] not in found, f"{CATALOG.name}: {match[1]} twice"
            current = found[match[1]] = []
        elif current is not None:
            current.append(line)
        else:
            assert not line.strip(), f"{CATALOG.name}: text before the first entry: {line!r}"
    return found


def test_ids_are_fixed_unique_128_bit_ids() -> None:
    ids = [m.value for m in MessageId]
    assert len(ids) == len(set(ids)) == 7
    for value in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", value), value
        assert value[12] == "4", f"{value}: not a random (version 4) id"  # as generated
    assert {m.name for m in MessageId} == {
        "DETECTED", "REPAIRED", "EXHAUSTED", "FAILED_OVER", "FAILED_BACK", "FROZEN", "THAWED"
    }  # fmt: skip


def test_every_id_is_in_the_catalog_and_nothing_else_is() -> None:
    assert set(entries()) == {m.value for m in MessageId}


def test_every_entry_has_the_headers_and_a_body() -> None:
    for message_id, lines in entries().items():
        headers = {}
        index = 0
        while index < len(lines) and lines[index].strip():
            key, sep, value = lines[index].partition(": ")
            assert sep and value, f"{message_id}: header line {lines[index]!r}"
            headers[key] = value
            index += 1
        assert {"Subject", "Defined-By", "Support"} <= set(headers), message_id
        assert headers["Defined-By"] == "host-supervisor"
        body = [line for line in lines[index:] if line.strip()]
        assert body, f"{message_id}: no body"
        for line in lines:
            for field in re.findall(r"@([A-Za-z0-9_]+)@", line):
                assert field == field.upper(), f"{message_id}: @{field}@ is not a journal field"


def test_journalctl_builds_its_database_from_the_catalog(tmp_path: Path) -> None:
    catalog_dir = tmp_path / "usr/lib/systemd/catalog"
    catalog_dir.mkdir(parents=True)
    (catalog_dir / CATALOG.name).write_text(CATALOG.read_text())
    root = f"--root={tmp_path}"
    subprocess.run(["journalctl", root, "--update-catalog"], check=True, capture_output=True)
    assert (tmp_path / "var/lib/systemd/catalog/database").stat().st_size > 0
    listed = subprocess.run(
        ["journalctl", root, "--list-catalog"], check=True, capture_output=True, text=True
    ).stdout
    ids = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert ids == {m.value for m in MessageId}
    detected = subprocess.run(
        ["journalctl", root, "--dump-catalog", MessageId.DETECTED.value],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Subject: @UNIT@ is unhealthy" in detected


def test_the_id_is_a_journal_field_not_words_of_the_message() -> None:
    fields = journal_fields(
        {
            "event": "unit failed",
            "level": "warning",
            "unit": "web.service",
            "message_id": MessageId.DETECTED.value,
        }
    )
    assert fields["MESSAGE_ID"] == MessageId.DETECTED.value
    assert fields["MESSAGE"] == "unit failed unit=web.service"


# -- every field documented -------------------------------------------------------------

SUPERVISOR = Path(__file__).parents[2] / "supervisor"
LOG_METHODS = {"debug", "info", "warning", "error", "critical", "exception", "log", "tell"}
NOT_FIELDS = {"record", "recorded", "alert"}  # Tx.tell's own parameters
FIELDS_BY_DICT = {"unit", "state", "main_pid"}  # observe.py binds these from a dict


def bound_keys() -> dict[str, str]:
    """Every keyword a log call in supervisor/ binds -> where (an AST scan)."""
    import ast

    keys: dict[str, str] = {}
    for module in SUPERVISOR.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in LOG_METHODS:
                continue
            for keyword in node.keywords:
                if keyword.arg is not None and keyword.arg not in NOT_FIELDS:
                    keys.setdefault(keyword.arg, f"{module.name}:{node.lineno}")
    return keys


def test_every_field_a_log_line_binds_is_documented() -> None:
    from supervisor.systemd.journal import field_name
    from supervisor.systemd.journal_fields import FIELDS

    keys = bound_keys()
    assert len(keys) > 40  # the scan finds the log calls
    missing = {
        field_name(key): where for key, where in keys.items() if field_name(key) not in FIELDS
    }
    assert missing == {}
    assert {field_name(key) for key in FIELDS_BY_DICT} <= set(FIELDS)


def test_the_man_page_lists_every_field_and_message_id() -> None:
    from supervisor.commands.manpage import escape, host_supervisor_8
    from supervisor.systemd.journal_fields import ALWAYS, FIELDS, MESSAGE_IDS

    page = host_supervisor_8()
    journal = page[page.index('.SH "JOURNAL FIELDS"') : page.index('.SH "SEE ALSO"')]
    for name in [*ALWAYS, *FIELDS]:
        assert f"\\fB{escape(name)}\\fR" in journal, name
    for message_id in MESSAGE_IDS:
        assert f"\\fB{message_id.value}\\fR" in journal, message_id
    assert set(MESSAGE_IDS) == set(MessageId)
