"""The values every part shares, defined once: a probe's status and result, systemd's
view of a unit, and an alert's severity."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Rung(enum.StrEnum):
    """One step of the repair ladder."""

    RESTART = "restart"
    RELOAD = "reload"
    RESTORE = "restore"


class RepairResult(enum.StrEnum):
    """How a repair ended: done, failed, or skipped (the rung cannot apply)."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Measure:
    """One figure a probe measured, with the policy's limit on it (for perfdata)."""

    name: str
    """What it is, within its check: "ms", "used", "free", "rss", "threads", ..."""
    value: float
    unit: str = ""
    """"" (a count), "%", "B" or "ms"."""
    limit: float | None = None
    """The policy's limit: past it the probe said CRITICAL; None when not checked."""
    below: bool = False
    """The limit is a least value (bad below it), not a greatest one (bad above it)."""
    low: float | None = None
    """The least value it can take, when there is one (0 for sizes, times, counts)."""
    high: float | None = None
    """The greatest value it can take, when there is one (100 for percentages)."""


@dataclass(frozen=True)
class CheckResult:
    """One run of one probe."""

    status: Status
    message: str
    """Short, one line, e.g. "HTTP 500 from http://127.0.0.1:8080/healthz in 3.2 ms"."""
    duration: float
    """Seconds the probe took."""
    measures: tuple[Measure, ...] = ()
    """What the probe measured on the way (response time, disk use, ...), when it did."""


class Severity(enum.IntEnum):
    """How urgent an alert is; a channel's `min_severity` is compared with it."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @classmethod
    def from_name(cls, name: str) -> Severity:
        """`"warning"` -> `Severity.WARNING` (case-insensitive); ValueError names the choices."""
        try:
            return cls[name.upper()]
        except KeyError:
            choices = ", ".join(member.name.lower() for member in cls)
            raise ValueError(f"unknown severity {name!r}; use one of {choices}") from None

    @property
    def log_level(self) -> str:
        """The level a log line about something this urgent is written at."""
        return ("info", "warning", "critical")[self.value]

    @property
    def label(self) -> str:
        """The lower-case name, as written in the config: info, warning, critical."""
        return self.name.lower()


@dataclass(frozen=True)
class UnitSnapshot:
    """What systemd says about one unit at one moment."""

    name: str  # as the policy names it, e.g. "web.service"
    load_state: str  # loaded | not-found | masked | error | "" if unknown
    active_state: str  # active | reloading | inactive | failed | activating | deactivating | ""
    sub_state: str  # running | dead | failed | auto-restart | exited | ...
    result: str  # Service.Result: success | exit-code | signal | ... ("" for non-services)
    main_pid: int
    n_restarts: int
    can_reload: bool
    restart: str = ""  # Service.Restart: no | on-failure | always | ... ("" for non-services)
