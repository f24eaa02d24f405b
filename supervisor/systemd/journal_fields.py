"""Every journal field host-supervisor sends, and its message ids, in words: the man page's
JOURNAL FIELDS section is rendered from here, and a test checks that every key a log call
binds is listed (``journalctl UNIT=... ACTION=restart`` should never be a guess).

A record holds the fields its line binds; each key becomes a field by
:func:`supervisor.systemd.journal.field_name` (``took_ms`` -> ``TOOK_MS``).
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.core.notices import MessageId

#: Set on every record by the journal output itself.
ALWAYS: Mapping[str, str] = {
    "MESSAGE": "The line, then its fields as key=value (MESSAGE_ID excepted).",
    "PRIORITY": "The syslog level: 2 critical, 3 error, 4 warning, 6 info, 7 debug.",
    "SYSLOG_IDENTIFIER": "Always host-supervisor.",
    "OBJECT_SYSTEMD_UNIT": "The unit the record is about (as UNIT=), so that journalctl -u "
    "UNIT shows the daemon's records about it next to the unit's own.",
    "TRACEBACK": "On an unexpected error only: the traceback (also at the end of MESSAGE).",
}

#: The fields log lines bind, by journal field name.
FIELDS: Mapping[str, str] = {
    "MESSAGE_ID": "The kind of event, for journalctl MESSAGE_ID=...: see MESSAGE IDS.",
    "UNIT": "The systemd unit the record is about, e.g. nginx.service.",
    "UNTIL": "When a timed pause ends (seconds since the epoch).",
    "ROOT": "The unit an incident's symptoms depend on: repaired first, its dependents wait.",
    "EDGES": "How many dependencies systemd reported among the supervised units.",
    "PATHS": "The restore paths whose content changed (a rollback may follow).",
    "RUNNING": "Whether the unit was running when its restore paths changed.",
    "KEY": "The etcd key a cluster record is about.",
    "HOLDER": "The host that holds a clustered unit, as this host sees it.",
    "TOKEN": "A clustered unit's fencing token (its leader key's create revision).",
    "SILENT": "How long, in seconds, a holder's key was seen unwritten.",
    "ACTION": "What was done or decided: detect, restart, reload, restore, start, stop, "
    "pause, resume, reset, failover-started, failover-done, failback-started, "
    "failback-done, ... .",
    "ATTEMPT": "The repair's attempt and the policy's limit, e.g. 1/3.",
    "ATTEMPTS": "Attempts counted so far.",
    "RESULT": "How a repair or job ended (its detail, e.g. job done).",
    "TOOK_MS": "How long a repair took, in milliseconds.",
    "DRY_RUN": "True when the daemon runs with --dry-run: nothing was done.",
    "DETAIL": "Why, in words: what held a repair, what was tried, how it recovered.",
    "STATE": "systemd's state of the unit, ActiveState/SubState (Result), e.g. "
    "failed/failed (exit-code).",
    "MAIN_PID": "The unit's main process id when it changed.",
    "CONDITION": "The unit's health: healthy, degraded, unhealthy, stopped, transient, "
    "missing, unknown.",
    "PHASE": "The repair ladder's or the failover's phase: idle, acting, settling, "
    "cooldown, held, exhausted, ... .",
    "NEXT_IN_S": "Seconds until the ladder's next step, when the daemon resumes its state.",
    "CHECK": "The check whose state changed (its name in the policy).",
    "CHECKS": "The failing critical checks, comma-separated; at start-up, how many checks.",
    "BEFORE": "A check's state before the change: pending, ok, warning, critical, unknown.",
    "AFTER": "A check's state after the change.",
    "HS_MESSAGE": "A check's last message (a field named MESSAGE would be the line itself).",
    "CRITICAL": "True when the check is critical (its failure makes the unit unhealthy).",
    "NOTICE": "The guard's news: frozen, thawed, breaker-open, breaker-closed, ... .",
    "SNAPSHOT": "The last-known-good snapshot taken.",
    "REASON": "Why something was refused, held or could not be done.",
    "ERROR": "The error, in one line.",
    "ERRORS": "How many errors (policies refused at a reload).",
    "FILE": "The file an error is in.",
    "LINE": "The line of FILE.",
    "PATH": "A file or directory the record is about (state database, spool, snapshot).",
    "CONFIG": "The configuration directory.",
    "POLICY": "The policy file a record is about.",
    "UNITS": "How many units (or which) the record is about.",
    "CALLER": "Who asked over the control socket, e.g. uid 0 (root).",
    "REQUEST": "The control request, e.g. POST /v1/units/web.service/pause.",
    "STATUS": "The HTTP status the control socket answered.",
    "GROUP": "The group named for the control socket.",
    "KIND": "The kind of history entry that could not be written.",
    "ROW": "The unreadable row of the state database that was set aside.",
    "WHAT": "The event the daemon could not handle (a bug: report it).",
    "DOCUMENTS": "State documents written in one go.",
    "ENTRIES": "History entries written in one go.",
    "AFTER_S": "Seconds the state database could not be written before it could again.",
    "RETRY_IN_S": "Seconds until the next try.",
    "CHANNEL": "An alert channel (its name in host-supervisor.yaml).",
    "CHANNELS": "Alert channels named by an alert.",
    "URL": "An address, with passwords and tokens masked.",
    "TITLE": "An alert's title.",
    "ALERT_EVENT": "An alert's event key (what deduplication compares).",
    "ALERTS": "How many alerts.",
    "MESSAGES": "How many alert messages were delivered at once.",
    "COUNT": "How many.",
    "FAILURES": "Failures in a row of an alert channel.",
    "DROPPED": "Alerts dropped from a full spool.",
    "SPOOLED": "Alerts waiting in a channel's spool.",
    "SPOOL_MAX": "The most alerts a channel's spool keeps.",
    "MIN_SEVERITY": "The lowest severity a channel is sent.",
    "ADDRESS": "A listening address, or a D-Bus address.",
    "ALLOW": "The addresses allowed to the HTTP listener.",
    "PEER": "The address of an HTTP client that was refused.",
    "HOST": "A host of a cluster.",
    "HOSTS": "The hosts of a cluster.",
    "ENDPOINT": "The etcd endpoint in use.",
    "ENDPOINTS": "The etcd endpoints configured.",
}

#: What each MESSAGE_ID= means; the catalog (units/host-supervisor.catalog) says more.
MESSAGE_IDS: Mapping[MessageId, str] = {
    MessageId.DETECTED: "A unit turned unhealthy (ACTION=detect).",
    MessageId.REPAIRED: "A unit is healthy again after a repair.",
    MessageId.EXHAUSTED: "A unit's repairs are exhausted: a person must act.",
    MessageId.FAILED_OVER: "A backup unit serves in place of the unit.",
    MessageId.FAILED_BACK: "The unit serves again after a failback.",
    MessageId.FROZEN: "The guard froze automation (repair budget or breaker).",
    MessageId.THAWED: "Automation resumed.",
}
