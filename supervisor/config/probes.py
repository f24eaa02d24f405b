"""The probes of a check, one model per kind: http, tcp, process, disk, memory,
command and unit. `supervisor.checks` has the code that runs each kind.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from supervisor.config.types import (
    AbsolutePath,
    Argv,
    ExistingPath,
    FrozenModel,
    located_error,
)
from supervisor.config.values import (
    MAX_COUNT,
    Percent,
    Size,
    describe,
)

__all__ = [
    "CommandProbe",
    "DiskProbe",
    "HttpProbe",
    "MemoryProbe",
    "Probe",
    "ProcessProbe",
    "TcpProbe",
    "UnitProbe",
]


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name: RFC 9110's token."""


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{describe(value)} is not a valid regular expression: {exc}"
            ) from None
    return value


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


class HttpProbe(FrozenModel):
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
    tls_ca: AbsolutePath | None = Field(
        default=None,
        description="PEM file of the CA(s) the server's certificate must chain to. "
        "Default: the system's CAs.",
        examples=["/etc/ssl/private/internal-ca.pem"],
    )
    tls_cert: AbsolutePath | None = Field(
        default=None,
        description="PEM client certificate, for servers that ask for one (with tls_key). "
        "Default: none.",
        examples=["/etc/host-supervisor/tls/probe.pem"],
    )
    tls_key: AbsolutePath | None = Field(
        default=None,
        description="PEM private key of tls_cert. Default: none.",
        examples=["/etc/host-supervisor/tls/probe-key.pem"],
    )
    follow_redirects: bool = Field(
        default=False,
        description="Follow redirects before judging the status. Default false.",
        examples=[True],
    )
    keep_alive: bool = Field(
        default=True,
        description="Reuse the check's connection from one run to the next. A kept "
        "connection measures the request only; false opens a fresh connection (and TLS "
        "handshake) on every run, which also proves the server still accepts new ones, "
        "at about three times the CPU. Default true.",
        examples=[False],
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

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        # Sent as written: a line break would end the header (or the request) early.
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {describe(name)} is not a valid HTTP token")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name} has a line break or NUL in its value")
        return value

    @model_validator(mode="after")
    def _client_pair(self) -> HttpProbe:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"tls_cert and tls_key go together: {missing} is missing")
        return self

    def status_ok(self, status: int) -> bool:
        """Whether `status` is one of the expected codes."""
        return any(low <= status <= high for low, high in self.expect_status)


class TcpProbe(FrozenModel):
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


class ProcessProbe(FrozenModel):
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
        "CPU, 0% to 100%. Default: not checked.",
        examples=["80%"],
    )
    max_threads: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Thread count above which the check fails, 1 to 1,000,000. "
        "Default: not checked.",
        examples=[500],
    )
    max_fds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Open file descriptors above which the check fails, 1 to 1,000,000. "
        "Default: not checked.",
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


class DiskProbe(FrozenModel):
    """A file system must keep free space (and inodes)."""

    path: ExistingPath = Field(
        description="A path on the file system to watch; it must exist. Required.",
        examples=["/var/lib/postgresql"],
    )
    max_used: Percent = Field(
        default="90%",
        validate_default=True,
        description="Used space above which the check fails, 0% to 100%. Default 90%.",
        examples=["85%"],
    )
    min_free: Size | None = Field(
        default=None,
        description="Free space below which the check fails, at most 1024TiB. Default: not "
        "checked.",
        examples=["2GiB"],
    )
    max_inodes_used: Percent | None = Field(
        default=None,
        description="Used inodes above which the check fails, 0% to 100%. Default: not checked.",
        examples=["90%"],
    )


class MemoryProbe(FrozenModel):
    """The unit's memory, or the host's, must stay under a limit (give at least one)."""

    max_rss: Size | None = Field(
        default=None,
        description="Memory of the unit (its cgroup) above which the check fails, at most "
        "1024TiB. Default: not checked.",
        examples=["512MiB"],
    )
    host_max_used: Percent | None = Field(
        default=None,
        description="Host memory use above which the check fails, 0% to 100%. Default: not "
        "checked.",
        examples=["95%"],
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> MemoryProbe:
        if self.max_rss is None and self.host_max_used is None:
            raise ValueError("give max_rss, host_max_used or both")
        return self


class CommandProbe(FrozenModel):
    """A program, run without a shell, must exit 0."""

    argv: Argv = Field(
        description="The program (an absolute path to an executable) and its arguments; "
        "the program and every directory above it must be root's and writable only by root. "
        "Required.",
        examples=[["/usr/bin/pg_isready", "-q"]],
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables set for the command. Default none.",
        examples=[{"PGPORT": "5432"}],
    )


class UnitProbe(FrozenModel):
    """The unit's own systemd ActiveState must be as expected."""

    expect: Literal["active", "reloading", "inactive", "failed", "activating", "deactivating"] = (
        Field(
            default="active",
            description="The ActiveState that counts as healthy. Default active.",
            examples=["active"],
        )
    )


Probe = HttpProbe | TcpProbe | ProcessProbe | DiskProbe | MemoryProbe | CommandProbe | UnitProbe
