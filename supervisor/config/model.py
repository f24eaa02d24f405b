"""The policy language: one pydantic model per YAML mapping, every field documented.

A policy (one file in policies.d) describes one systemd unit: how to probe it, how to
repair it, where to fail over, whom to tell. The main config holds what is global:
alert channels, the guard's limits, logging. Models are frozen and refuse unknown keys.
Durations are float seconds, sizes int bytes, percentages floats from 0 to 100.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from supervisor.config.values import (
    Duration,
    Percent,
    PositiveDuration,
    Size,
    describe,
    format_duration,
)

__all__ = [
    "DEFAULT_PROTECTED",
    "LADDER_STEPS",
    "PROBE_KINDS",
    "UNIT_TYPES",
    "AlertsConfig",
    "Breaker",
    "Channel",
    "Check",
    "ChecksConfig",
    "CommandProbe",
    "ControlConfig",
    "DiskProbe",
    "Failback",
    "Failover",
    "Flapping",
    "GuardConfig",
    "HttpProbe",
    "MainConfig",
    "MemoryProbe",
    "Policy",
    "Preconditions",
    "Probe",
    "ProcessProbe",
    "Recovery",
    "RepairBudget",
    "Restore",
    "TcpProbe",
    "UnitProbe",
    "located_error",
]

UNIT_TYPES = (
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "swap",
    "path",
    "slice",
    "scope",
    "device",
)
PROBE_KINDS = ("http", "tcp", "process", "disk", "memory", "command", "unit")
LadderStep = Literal["restart", "reload", "restore"]
LADDER_STEPS: tuple[LadderStep, ...] = ("restart", "reload", "restore")
DEFAULT_PROTECTED = (
    "postgresql*",
    "mysql*",
    "mariadb*",
    "redis*",
    "clickhouse*",
    "etcd*",
    "mongod*",
)

Severity = Literal["info", "warning", "critical"]


def located_error(path: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error for a key below the one being validated; the loader appends `path` to its loc."""
    return PydanticCustomError("located", "{message}", {"message": message, "path": path})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- names and paths --------------------------------------------------------------------

_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?\.(" + "|".join(UNIT_TYPES) + ")")
UNIT_PATTERN = "^" + _UNIT_RE.pattern + "$"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_PATTERN = "^" + _NAME_RE.pattern + "$"


def _check_unit_name(value: str) -> str:
    if _UNIT_RE.fullmatch(value) and len(value) <= 255:
        return value
    stem, dot, suffix = value.rpartition(".")
    if dot and stem and suffix not in UNIT_TYPES:
        raise ValueError(
            f"{describe(value)} has no known unit type; end it with .service, .socket, "
            ".target, .timer, .mount or another systemd unit type"
        )
    if not dot:
        raise ValueError(
            f"{describe(value)} is not a systemd unit name; write it with its type, "
            f"e.g. '{value}.service'"
        )
    raise ValueError(f"{describe(value)} is not a valid systemd unit name")


def _check_name(value: str) -> str:
    if _NAME_RE.fullmatch(value):
        return value
    raise ValueError(
        f"{describe(value)} is not a valid name; use letters, digits, '-', '_' and '.'"
    )


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError(f"{describe(value)} is not an absolute path; start it with /")
    return os.path.normpath(value)


def _check_existing_path(value: str) -> str:
    value = _check_absolute(value)
    if not os.path.exists(value):
        raise ValueError(f"path {value} does not exist")
    return value


def _check_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    if not argv:
        raise ValueError("the command is empty; give at least the program, e.g. [/usr/bin/true]")
    program = argv[0]
    if not os.path.isabs(program):
        raise located_error(
            (0,), f"{describe(program)} is not an absolute path; commands run without a shell"
        )
    if not os.path.exists(program):
        raise located_error((0,), f"{program} does not exist")
    if not os.path.isfile(program) or not os.access(program, os.X_OK):
        raise located_error((0,), f"{program} is not an executable file")
    return argv


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


UnitName = Annotated[
    str,
    AfterValidator(_check_unit_name),
    WithJsonSchema({"type": "string", "pattern": UNIT_PATTERN}),
]
Name = Annotated[
    str, AfterValidator(_check_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})
]
AbsolutePath = Annotated[
    str, AfterValidator(_check_absolute), WithJsonSchema({"type": "string", "pattern": "^/"})
]
ExistingPath = Annotated[
    str, AfterValidator(_check_existing_path), WithJsonSchema({"type": "string", "pattern": "^/"})
]
Argv = Annotated[
    tuple[str, ...],
    AfterValidator(_check_argv),
    WithJsonSchema(
        {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
            "prefixItems": [{"type": "string", "pattern": "^/"}],
        }
    ),
]


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{describe(value)} is not a valid regular expression: {exc}"
            ) from None
    return value


# --- probes ------------------------------------------------------------------------------


def _parse_status(value: Any) -> tuple[tuple[int, int], ...]:
    hint = "expected a status code like 200, a range like 200-399, or a list of them"

    def one(item: Any) -> tuple[int, int]:
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, str) and (
            match := re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        ):
            low = int(match.group(1))
            high = int(match.group(2) or low)
        elif (
            isinstance(item, list | tuple)
            and len(item) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) for i in item)
        ):
            low, high = item
        else:
            raise ValueError(f"{hint}, got {describe(item)}")
        if not (100 <= low <= high <= 599):
            raise ValueError(f"{describe(item)} is not a status range; use low-high within 100-599")
        return (low, high)

    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"{hint}, got an empty list")
        return tuple(one(item) for item in value)
    return (one(value),)


StatusRanges = Annotated[
    tuple[tuple[int, int], ...],
    BeforeValidator(_parse_status),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "string", "pattern": r"^\s*\d{3}\s*(-\s*\d{3}\s*)?$"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "anyOf": [
                            {"type": "integer", "minimum": 100, "maximum": 599},
                            {"type": "string", "pattern": r"^\s*\d{3}\s*(-\s*\d{3}\s*)?$"},
                        ]
                    },
                },
            ]
        }
    ),
]


class HttpProbe(_Model):
    """An HTTP(S) request that must answer with an expected status (and body)."""

    url: str = Field(
        description="URL to request, http:// or https:// with a host. Required.",
        examples=["http://127.0.0.1/healthz"],
    )
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        default="GET", description="HTTP method. Default GET.", examples=["GET", "HEAD"]
    )
    expect_status: StatusRanges = Field(
        default="200-399",
        validate_default=True,
        description="Status codes that count as healthy: a code, a range or a list of them. "
        "Held as inclusive (low, high) ranges. Default 200-399.",
        examples=[200, "200-299", [200, 204]],
    )
    body: str | None = Field(
        default=None,
        description="Text the response body must contain. Default: not checked.",
        examples=["ok"],
    )
    body_regex: str | None = Field(
        default=None,
        description="Regular expression the response body must match (re.search). "
        "Default: not checked.",
        examples=[r'"status":\s*"up"'],
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers. Default none.",
        examples=[{"Host": "example.com"}],
    )
    tls_verify: bool = Field(
        default=True,
        description="Verify the server's TLS certificate. Default true.",
        examples=[False],
    )
    follow_redirects: bool = Field(
        default=False,
        description="Follow redirects before judging the status. Default false.",
        examples=[True],
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            port_ok = parts.port is None or parts.port > 0
        except ValueError as exc:
            raise ValueError(f"{describe(value)} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(
                f"{describe(value)} is not an http:// or https:// URL with a host, "
                "e.g. http://127.0.0.1/healthz"
            )
        return value

    _body_regex = field_validator("body_regex")(_check_regex)

    def status_ok(self, status: int) -> bool:
        """Whether `status` is one of the expected codes."""
        return any(low <= status <= high for low, high in self.expect_status)


class TcpProbe(_Model):
    """A TCP connection that must open (and optionally answer)."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Host name or address to connect to. Default 127.0.0.1.",
        examples=["127.0.0.1", "::1"],
    )
    port: int = Field(
        ge=1, le=65535, description="TCP port, 1 to 65535. Required.", examples=[80, 5432]
    )
    send: str | None = Field(
        default=None,
        description="Text to send once connected. Default: send nothing.",
        examples=["PING\r\n"],
    )
    expect: str | None = Field(
        default=None,
        description="Text the first answer must contain. Default: do not read an answer.",
        examples=["+PONG"],
    )


class ProcessProbe(_Model):
    """The unit's main process (or another process) must exist and stay within limits."""

    main_pid: bool = Field(
        default=True,
        description="Probe the unit's MainPID. Default true, or false when name or cmdline "
        "is given.",
        examples=[True],
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        description="Probe the process with this exact name instead. Default none.",
        examples=["nginx"],
    )
    cmdline: str | None = Field(
        default=None,
        min_length=1,
        description="Probe the process whose command line matches this regular expression "
        "(re.search) instead. Default none.",
        examples=["^/usr/bin/python3 .*worker"],
    )
    max_cpu: Percent | None = Field(
        default=None,
        description="CPU use above which the check fails, as a percentage of the whole host's "
        "CPU. Default: not checked.",
        examples=["80%"],
    )
    max_threads: int | None = Field(
        default=None,
        ge=1,
        description="Thread count above which the check fails. Default: not checked.",
        examples=[500],
    )
    max_fds: int | None = Field(
        default=None,
        ge=1,
        description="Open file descriptors above which the check fails. Default: not checked.",
        examples=[4096],
    )

    _cmdline = field_validator("cmdline")(_check_regex)

    @model_validator(mode="before")
    @classmethod
    def _main_pid_default(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "main_pid" not in data
            and (data.get("name") is not None or data.get("cmdline") is not None)
        ):
            return {**data, "main_pid": False}
        return data

    @model_validator(mode="after")
    def _one_target(self) -> ProcessProbe:
        other = self.name is not None or self.cmdline is not None
        if self.main_pid and other:
            raise located_error(
                ("main_pid",), "true cannot be combined with name or cmdline; remove main_pid"
            )
        if not self.main_pid and not other:
            raise located_error(("main_pid",), "false needs a name or a cmdline")
        return self


class DiskProbe(_Model):
    """A file system must keep free space (and inodes)."""

    path: ExistingPath = Field(
        description="A path on the file system to watch; it must exist. Required.",
        examples=["/var/lib/postgresql"],
    )
    max_used: Percent = Field(
        default="90%",
        validate_default=True,
        description="Used space above which the check fails. Default 90%.",
        examples=["85%"],
    )
    min_free: Size | None = Field(
        default=None,
        description="Free space below which the check fails. Default: not checked.",
        examples=["2GiB"],
    )
    max_inodes_used: Percent | None = Field(
        default=None,
        description="Used inodes above which the check fails. Default: not checked.",
        examples=["90%"],
    )


class MemoryProbe(_Model):
    """The unit's memory, or the host's, must stay under a limit (give at least one)."""

    max_rss: Size | None = Field(
        default=None,
        description="Memory of the unit (its cgroup) above which the check fails. "
        "Default: not checked.",
        examples=["512MiB"],
    )
    host_max_used: Percent | None = Field(
        default=None,
        description="Host memory use above which the check fails. Default: not checked.",
        examples=["95%"],
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> MemoryProbe:
        if self.max_rss is None and self.host_max_used is None:
            raise ValueError("give max_rss, host_max_used or both")
        return self


class CommandProbe(_Model):
    """A program, run without a shell, must exit 0."""

    argv: Argv = Field(
        description="The program (an absolute path to an executable) and its arguments. Required.",
        examples=[["/usr/bin/pg_isready", "-q"]],
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables set for the command. Default none.",
        examples=[{"PGPORT": "5432"}],
    )


class UnitProbe(_Model):
    """The unit's own systemd ActiveState must be as expected."""

    expect: Literal["active", "reloading", "inactive", "failed", "activating", "deactivating"] = (
        Field(
            default="active",
            description="The ActiveState that counts as healthy. Default active.",
            examples=["active"],
        )
    )


Probe = HttpProbe | TcpProbe | ProcessProbe | DiskProbe | MemoryProbe | CommandProbe | UnitProbe


class Check(_Model):
    """One probe of a unit, run on its own schedule; give exactly one probe key."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": [kind]} for kind in PROBE_KINDS]}
    )

    name: Name = Field(
        description="Name of the check, unique within the policy. Required.",
        examples=["http"],
    )
    http: HttpProbe | None = Field(
        default=None, description="HTTP probe. Default none.", examples=[{"url": "http://x/"}]
    )
    tcp: TcpProbe | None = Field(
        default=None, description="TCP probe. Default none.", examples=[{"port": 80}]
    )
    process: ProcessProbe | None = Field(
        default=None, description="Process probe. Default none.", examples=[{"max_fds": 4096}]
    )
    disk: DiskProbe | None = Field(
        default=None, description="Disk probe. Default none.", examples=[{"path": "/var"}]
    )
    memory: MemoryProbe | None = Field(
        default=None, description="Memory probe. Default none.", examples=[{"max_rss": "1GiB"}]
    )
    command: CommandProbe | None = Field(
        default=None,
        description="Command probe. Default none.",
        examples=[{"argv": ["/usr/bin/true"]}],
    )
    unit: UnitProbe | None = Field(
        default=None, description="Unit state probe. Default none.", examples=[{}]
    )
    interval: PositiveDuration = Field(
        default="10s",
        validate_default=True,
        description="Time between two runs of the probe. Default 10s.",
        examples=["5s"],
    )
    timeout: PositiveDuration = Field(
        default="5s",
        validate_default=True,
        description="Time after which a run counts as failed. Default 5s.",
        examples=["2s"],
    )
    failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failures before the check is hard-failed. Default 3.",
        examples=[3],
    )
    successes: int = Field(
        default=2,
        ge=1,
        description="Consecutive successes before it counts healthy again. Default 2.",
        examples=[2],
    )
    start_period: Duration = Field(
        default="0s",
        validate_default=True,
        description="Time after the unit starts during which failures are not counted. Default 0s.",
        examples=["30s"],
    )
    critical: bool = Field(
        default=True,
        description="A failing critical check triggers repair; a non-critical one only "
        "degrades. Default true.",
        examples=[False],
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_probe(cls, data: Any) -> Any:
        # `unit:` with nothing after it means the defaults, like `unit: {}`.
        if isinstance(data, dict) and any(data.get(k, ...) is None for k in PROBE_KINDS):
            return {k: ({} if k in PROBE_KINDS and v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one_probe(self) -> Check:
        kinds = [kind for kind in PROBE_KINDS if getattr(self, kind) is not None]
        if not kinds:
            raise ValueError(f"a check needs one probe: add one of {', '.join(PROBE_KINDS)}")
        if len(kinds) > 1:
            raise located_error(
                (kinds[1],),
                f"one probe per check, got {' and '.join(kinds)}; split them into two checks",
            )
        return self

    @cached_property  # read on every probe run: computed once per (frozen) check
    def kind(self) -> str:
        """The probe key that is set: http, tcp, process, disk, memory, command or unit."""
        return next(kind for kind in PROBE_KINDS if getattr(self, kind) is not None)

    @cached_property
    def probe(self) -> Probe:
        """The probe's settings."""
        probe: Probe = getattr(self, self.kind)
        return probe


# --- recovery ----------------------------------------------------------------------------


class Preconditions(_Model):
    """What must hold before any automatic repair; when one fails, hold and alert."""

    disk_below: Percent | None = Field(
        default=None,
        description="Every path in disk_paths must be less full than this. Default: not checked.",
        examples=["90%"],
    )
    disk_paths: tuple[AbsolutePath, ...] = Field(
        default=("/",),
        description='File systems disk_below looks at. Default ["/"].',
        examples=[["/", "/var"]],
    )
    memory_below: Percent | None = Field(
        default=None,
        description="Host memory use must be below this. Default: not checked.",
        examples=["95%"],
    )
    units_active: tuple[UnitName, ...] = Field(
        default=(),
        description="Units that must be active. Default none.",
        examples=[["network-online.target"]],
    )


class Restore(_Model):
    """How the `restore` step puts a known-good configuration back."""

    paths: tuple[AbsolutePath, ...] = Field(
        min_length=1,
        description="Files and directories to restore, absolute. Required, not empty.",
        examples=[["/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled"]],
    )
    source: str = Field(
        default="last-known-good",
        alias="from",
        description="Where to restore from: last-known-good (the latest snapshot taken while "
        "healthy) or an existing absolute directory of defaults. Default last-known-good.",
        examples=["last-known-good", "/usr/share/nginx/defaults"],
    )
    validate_argv: Argv | None = Field(
        default=None,
        alias="validate",
        description="Command that must exit 0 on the restored configuration before the unit "
        "is restarted. Default none.",
        examples=[["/usr/sbin/nginx", "-t"]],
    )
    snapshot_after: Duration = Field(
        default="10m",
        validate_default=True,
        description="How long the unit must be healthy before its configuration is "
        "snapshotted as last-known-good. Default 10m.",
        examples=["10m"],
    )
    keep: int = Field(default=5, ge=1, description="Snapshots to keep. Default 5.", examples=[5])

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value == "last-known-good":
            return value
        if not os.path.isabs(value):
            raise ValueError(
                f"{describe(value)} is neither last-known-good nor an absolute directory"
            )
        if not os.path.isdir(value):
            raise ValueError(f"directory {value} does not exist")
        return os.path.normpath(value)


class Recovery(_Model):
    """The repair ladder and its limits."""

    ladder: tuple[LadderStep, ...] = Field(
        default=LADDER_STEPS,
        min_length=1,
        description="Repair steps, one per attempt, in order (the last repeats while attempts "
        "remain): restart, reload, restore, each at most once in the list. "
        "Default [restart, reload, restore], or [restart, reload] without a restore section.",
        examples=[["restart", "reload", "restore"], ["restart"]],
    )
    cooldown: Duration = Field(
        default="5m",
        validate_default=True,
        description="Minimum time between two repair actions on the unit (the first "
        "action is immediate). Default 5m.",
        examples=["5m"],
    )
    backoff: float = Field(
        default=1.0,
        ge=1,
        description="Factor the cooldown grows by after each action, up to max_cooldown. "
        "Default 1 (no growth).",
        examples=[2],
    )
    max_cooldown: Duration = Field(
        default="1h",
        validate_default=True,
        description="Upper bound of the growing cooldown. Default 1h.",
        examples=["1h"],
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Repair actions per episode before giving up (and failing over). Default 3.",
        examples=[3],
    )
    reset_after: Duration = Field(
        default="1h",
        validate_default=True,
        description="How long the unit must stay healthy before its attempts are forgotten "
        "(never at the first good result). Default 1h.",
        examples=["1h"],
    )
    settle: PositiveDuration = Field(
        default="10s",
        validate_default=True,
        description="How long after an action (successful or not) before judging it; more "
        "than 0. Default 10s.",
        examples=["10s"],
    )
    preconditions: Preconditions = Field(
        default_factory=Preconditions,
        description="Conditions every automatic repair needs. Default: none checked.",
        examples=[{"disk_below": "90%", "units_active": ["network-online.target"]}],
    )
    restore: Restore | None = Field(
        default=None,
        description="Settings of the restore step; required when the ladder has restore. "
        "Default none.",
        examples=[{"paths": ["/etc/nginx/nginx.conf"], "from": "last-known-good"}],
    )

    @model_validator(mode="before")
    @classmethod
    def _default_ladder(cls, data: Any) -> Any:
        # Without a restore section, the default ladder cannot restore.
        if isinstance(data, dict) and "ladder" not in data and data.get("restore") is None:
            return {**data, "ladder": ("restart", "reload")}
        return data

    @field_validator("ladder")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, step in enumerate(value):
            if step in value[:index]:
                raise located_error((index,), f"step {step} is already in the ladder")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Recovery:
        if "restore" in self.ladder and self.restore is None:
            raise located_error(
                ("ladder",),
                "the ladder has restore but there is no restore section; add recovery.restore "
                "with its paths, or remove restore from the ladder",
            )
        if self.cooldown > self.max_cooldown:
            raise located_error(
                ("cooldown",),
                f"cooldown {format_duration(self.cooldown)} is longer than max_cooldown "
                f"{format_duration(self.max_cooldown)}",
            )
        return self


# --- failover ----------------------------------------------------------------------------


class Failback(_Model):
    """When to move back from the backup to the healed primary."""

    delay: Duration = Field(
        default="30s",
        validate_default=True,
        description="How long a backup serves before the primary is tried again (doubled "
        "after each failed failback, at most 1h). Default 30s.",
        examples=["30s"],
    )
    successes: int = Field(
        default=2,
        ge=1,
        description="Consecutive successful checks of the primary needed. Default 2.",
        examples=[2],
    )


def _failback_tag(value: Any) -> str:
    return "manual" if isinstance(value, str) else "automatic"


def _failback_word(value: Any) -> Any:
    if isinstance(value, str) and value != "manual":
        raise ValueError(
            f"expected manual or a mapping like {{delay: 30s, successes: 2}}, got {describe(value)}"
        )
    return value


class Failover(_Model):
    """Move the service to a backup unit when repair is exhausted."""

    backup: Annotated[
        tuple[UnitName, ...],
        BeforeValidator(_one_or_many),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": UNIT_PATTERN},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "pattern": UNIT_PATTERN},
                    },
                ]
            }
        ),
    ] = Field(
        min_length=1,
        description="Backup unit, or list of them tried in order. Required.",
        examples=["nginx-maintenance.service", ["b1.service", "b2.service"]],
    )
    after_failures: int | None = Field(
        default=None,
        ge=1,
        description="Fail over after this many hard failures of the primary, without "
        "waiting for the ladder to be exhausted. Default: when the ladder is exhausted.",
        examples=[2],
    )
    can_recover: Argv | None = Field(
        default=None,
        description="Command that must exit 0 before the primary is tried again. Default none.",
        examples=[["/usr/local/bin/primary-ok"]],
    )
    mode: Literal["cold"] = Field(
        default="cold",
        description="cold: stop the primary, start the backup. Default cold.",
        examples=["cold"],
    )
    settle: Duration = Field(
        default="10s",
        validate_default=True,
        description="How long after switching before judging the backup. Default 10s.",
        examples=["10s"],
    )
    failback: Annotated[
        Annotated[Literal["manual"], Tag("manual")] | Annotated[Failback, Tag("automatic")],
        Discriminator(_failback_tag),
        BeforeValidator(_failback_word),
    ] = Field(
        default_factory=Failback,
        description="manual (an operator fails back) or when to fail back automatically. "
        "Default {delay: 30s, successes: 2}.",
        examples=["manual", {"delay": "30s", "successes": 2}],
    )


# --- policy ------------------------------------------------------------------------------


class Policy(_Model):
    """One file in policies.d: how one systemd unit is probed, repaired and failed over."""

    unit: UnitName = Field(
        description="The systemd unit, with its type suffix. Required.",
        examples=["nginx.service"],
    )
    checks: tuple[Check, ...] = Field(
        default=(),
        description="Probes of the unit. Default none (only systemd's own state is watched).",
        examples=[[{"name": "port", "tcp": {"port": 80}}]],
    )
    recovery: Recovery = Field(
        default_factory=Recovery,
        description="How to repair the unit. Default: every recovery default.",
        examples=[{"ladder": ["restart"], "cooldown": "5m"}],
    )
    failover: Failover | None = Field(
        default=None,
        description="Where to fail over when repair is exhausted. Default: no failover.",
        examples=[{"backup": "nginx-maintenance.service"}],
    )
    alerts: tuple[Name, ...] = Field(
        default=(),
        description="Alert channels (defined in the main config) to notify. Default none.",
        examples=[["ops-email", "ops-slack"]],
    )
    allow_automatic: bool = Field(
        default=False,
        description="Allow automatic repair even though the unit is protected by "
        "guard.protected. Default false.",
        examples=[True],
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> Policy:
        seen: dict[str, int] = {}
        for index, check in enumerate(self.checks):
            if check.name in seen:
                raise located_error(
                    ("checks", index, "name"),
                    f"duplicate check name {check.name!r}; checks[{seen[check.name]}] "
                    "already has it",
                )
            seen[check.name] = index
        for index, name in enumerate(self.alerts):
            if name in self.alerts[:index]:
                raise located_error(("alerts", index), f"channel {name!r} is listed twice")
        if self.failover is not None:
            for index, backup in enumerate(self.failover.backup):
                if backup == self.unit:
                    raise located_error(
                        ("failover", "backup", index), "a unit cannot be its own backup"
                    )
        return self


# --- main config -------------------------------------------------------------------------


class Channel(_Model):
    """One apprise destination."""

    url: str = Field(
        min_length=1,
        description="apprise URL of the destination. Required.",
        examples=["mailtos://user:pass@smtp.example.com?to=ops@example.com"],
    )
    min_severity: Severity = Field(
        default="info",
        description="Least severity sent to this channel: info, warning or critical. Default info.",
        examples=["warning"],
    )


class AlertsConfig(_Model):
    """Alert channels and how often to repeat."""

    channels: dict[Name, Channel] = Field(
        default_factory=dict,
        description="Channels by name, which policies list in alerts. Default none: nothing "
        "is sent until configured.",
        examples=[{"ops-slack": {"url": "slack://T000/B000/XXXX"}}],
    )
    repeat_interval: PositiveDuration = Field(
        default="1h",
        validate_default=True,
        description="How often an unresolved problem is alerted again. Default 1h.",
        examples=["1h"],
    )
    spool_max: int = Field(
        default=1000,
        ge=1,
        description="Alerts kept for later delivery while a channel is unreachable. Default 1000.",
        examples=[1000],
    )


class RepairBudget(_Model):
    """At most `max` repair actions host-wide per `window`; over it, automation freezes."""

    max: int = Field(default=5, ge=1, description="Actions per window. Default 5.", examples=[5])
    window: PositiveDuration = Field(
        default="15m",
        validate_default=True,
        description="The sliding window. Default 15m.",
        examples=["15m"],
    )


class Breaker(_Model):
    """Circuit breaker on failing systemd jobs."""

    failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed actions that open the breaker. Default 5.",
        examples=[5],
    )
    open_for: PositiveDuration = Field(
        default="60s",
        validate_default=True,
        description="How long the breaker stays open. Default 60s.",
        examples=["60s"],
    )


class Flapping(_Model):
    """Flap detection: share of state changes within a window, with hysteresis."""

    window: PositiveDuration = Field(
        default="10m",
        validate_default=True,
        description="Window over which state changes are counted. Default 10m.",
        examples=["10m"],
    )
    high: Percent = Field(
        default="50%",
        validate_default=True,
        description="Above this a unit is flapping. Default 50%.",
        examples=["50%"],
    )
    low: Percent = Field(
        default="25%",
        validate_default=True,
        description="Below this a flapping unit is calm again. Default 25%.",
        examples=["25%"],
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> Flapping:
        if self.low >= self.high:
            raise located_error(
                ("low",), f"low ({self.low:g}%) must be below high ({self.high:g}%)"
            )
        return self


class GuardConfig(_Model):
    """Host-wide safety limits on automatic repair."""

    repair_budget: RepairBudget = Field(
        default_factory=RepairBudget,
        description="Host-wide repair budget. Default {max: 5, window: 15m}.",
        examples=[{"max": 5, "window": "15m"}],
    )
    max_concurrent: int = Field(
        default=3, ge=1, description="Repairs running at once. Default 3.", examples=[3]
    )
    protected: tuple[str, ...] = Field(
        default=DEFAULT_PROTECTED,
        description="Unit name globs never repaired automatically unless their policy sets "
        "allow_automatic; a list here replaces the default. Default: "
        + ", ".join(DEFAULT_PROTECTED)
        + ".",
        examples=[list(DEFAULT_PROTECTED)],
    )
    breaker: Breaker = Field(
        default_factory=Breaker,
        description="Circuit breaker. Default {failures: 5, open_for: 60s}.",
        examples=[{"failures": 5, "open_for": "60s"}],
    )
    flapping: Flapping = Field(
        default_factory=Flapping,
        description="Flap detection. Default {window: 10m, high: 50%, low: 25%}.",
        examples=[{"window": "10m", "high": "50%", "low": "25%"}],
    )

    @field_validator("protected")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, glob in enumerate(value):
            if not glob.strip():
                raise located_error((index,), "an empty pattern")
        return value


class ChecksConfig(_Model):
    """Host-wide limits on probes."""

    max_concurrent_commands: int = Field(
        default=4,
        ge=1,
        description="Command probes running at once. Default 4.",
        examples=[4],
    )


class ControlConfig(_Model):
    """The control socket."""

    socket_group: str | None = Field(
        default=None,
        min_length=1,
        description="Group allowed to use the control socket besides root. Default none.",
        examples=["adm"],
    )


class MainConfig(_Model):
    """host-supervisor.yaml: settings for the whole host; every section is optional."""

    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig,
        description="Alert channels. Default: no channels.",
        examples=[{"channels": {"ops-slack": {"url": "slack://T000/B000/XXXX"}}}],
    )
    guard: GuardConfig = Field(
        default_factory=GuardConfig,
        description="Safety limits. Default: every guard default.",
        examples=[{"max_concurrent": 3}],
    )
    checks: ChecksConfig = Field(
        default_factory=ChecksConfig,
        description="Probe limits. Default {max_concurrent_commands: 4}.",
        examples=[{"max_concurrent_commands": 4}],
    )
    control: ControlConfig = Field(
        default_factory=ControlConfig,
        description="Control socket. Default: root only.",
        examples=[{"socket_group": "adm"}],
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="Least level logged to the journal. Default info.",
        examples=["info"],
    )
