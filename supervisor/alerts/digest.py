"""A spooled backlog as one message: the digest a channel gets when it works again.

apprise paces email at one message per 5.5 s, so 1,000 spooled alerts sent one by one
would take an hour and a half, and bury the newest under the oldest. A backlog of two
or more goes out as one digest instead: its alerts grouped by title (a reminder repeated
for hours is one group with its count and times), in the order each title first
appeared, each group with the text of its latest alert, and the message bounded in size
("... and N more alerts not shown"). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from supervisor.alerts.spool import SpooledMessage
from supervisor.core.alerting import Severity
from supervisor.text import clip

__all__ = ["DIGEST_MAX_CHARS", "GROUP_MAX_CHARS", "digest"]

DIGEST_MAX_CHARS = 20_000
"""The body stops listing groups once it is this long (a mail, a Slack post)."""
GROUP_MAX_CHARS = 10_000
"""Characters of one group's alert text shown at most."""


@dataclass
class _Group:
    title: str
    severity: Severity
    first: float
    last: float
    body: str
    count: int = 1


def _time(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _text(message: SpooledMessage, hostname: str) -> str:
    """The message's body without what the group's heading already says: the
    ``HOST: severity, unit, time`` line and the title that follows it."""
    lines = message.body.strip("\n").splitlines()
    if lines and lines[0].startswith(f"{hostname}: "):
        lines = lines[1:]
        if lines and lines[0].strip() == message.title.strip():
            lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return clip("\n".join(lines), GROUP_MAX_CHARS)


def digest(messages: Sequence[SpooledMessage], hostname: str, channel: str) -> SpooledMessage:
    """One message standing for `messages` (oldest first, at least one)."""
    if not messages:
        raise ValueError("a digest needs at least one message")
    # Only true repeats (same title, same text) are counted together: a burst of other
    # alerts under the same title keeps its own text, or its alerts would be lost.
    groups: dict[tuple[str, str], _Group] = {}
    for message in messages:
        text = _text(message, hostname)
        group = groups.get((message.title, text))
        if group is None:
            groups[(message.title, text)] = _Group(
                message.title, message.severity, message.created, message.created, text
            )
            continue
        group.count += 1
        group.severity = max(group.severity, message.severity)
        group.first = min(group.first, message.created)
        group.last = max(group.last, message.created)

    count = len(messages)
    first = min(message.created for message in messages)
    last = max(message.created for message in messages)
    lines = [
        f"{hostname}: {count} alerts could not be sent on channel {channel} when they "
        f"happened, from {_time(first)} to {_time(last)}. Here they are, grouped by "
        "title, oldest first.",
        "",
    ]
    size = sum(len(line) + 1 for line in lines)
    shown = shown_groups = 0
    for index, group in enumerate(groups.values()):
        when = _time(group.first)
        if group.count > 1:
            when = f"{group.count} times, {when} to {_time(group.last)}"
        section = [f"{group.severity.label.upper()}  {group.title}  ({when})"]
        section.extend(f"   {line}" if line else "" for line in group.body.splitlines())
        section.append("")
        length = sum(len(line) + 1 for line in section)
        if index > 0 and size + length > DIGEST_MAX_CHARS:
            break
        lines.extend(section)
        size += length
        shown += group.count
        shown_groups += 1
    if shown < count:
        lines.append(
            f"... and {count - shown} more alerts ({len(groups) - shown_groups} titles) not "
            "shown; 'host-supervisor history' has them all."
        )
    severity = max(message.severity for message in messages)
    title = f"{count} delayed alerts from {hostname}"
    return SpooledMessage(title, "\n".join(lines).rstrip() + "\n", severity, last)
