"""host-supervisor.yaml, the main config: what is global to the host (alert channels,
the guard's limits, probe limits, the control socket, the HTTP listener, logging).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from supervisor.config.cluster import ClusterConfig
from supervisor.config.http import HttpConfig, NodeExporterConfig
from supervisor.config.types import (
    DEFAULT_PROTECTED,
    FrozenModel,
    Name,
    Severity,
    located_error,
)
from supervisor.config.values import (
    MAX_COUNT,
    Duration,
    Percent,
    PositiveDuration,
)

__all__ = [
    "AlertsConfig",
    "Breaker",
    "Channel",
    "ChecksConfig",
    "ControlConfig",
    "Flapping",
    "GuardConfig",
    "MainConfig",
    "RepairBudget",
]


class Channel(FrozenModel):
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


class AlertsConfig(FrozenModel):
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
        description="How often an unresolved problem is alerted again, 1ms to 365d. Default 1h.",
        examples=["1h"],
    )
    spool_max: int = Field(
        default=1000,
        ge=1,
        le=MAX_COUNT,
        description="Alerts kept for later delivery while a channel is unreachable, 1 to "
        "1,000,000. Default 1000.",
        examples=[1000],
    )


class RepairBudget(FrozenModel):
    """At most `max` repair actions host-wide per `window`; over it, automation freezes."""

    max: int = Field(
        default=5,
        ge=1,
        le=MAX_COUNT,
        description="Actions per window, 1 to 1,000,000. Default 5.",
        examples=[5],
    )
    window: PositiveDuration = Field(
        default="15m",
        validate_default=True,
        description="The sliding window, 1ms to 365d. Default 15m.",
        examples=["15m"],
    )


class Breaker(FrozenModel):
    """Circuit breaker on failing systemd jobs."""

    failures: int = Field(
        default=5,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive failed actions that open the breaker, 1 to 1,000,000. Default 5.",
        examples=[5],
    )
    open_for: PositiveDuration = Field(
        default="60s",
        validate_default=True,
        description="How long the breaker stays open, 1ms to 365d. Default 60s.",
        examples=["60s"],
    )


class Flapping(FrozenModel):
    """Flap detection: share of state changes within a window, with hysteresis."""

    window: PositiveDuration = Field(
        default="10m",
        validate_default=True,
        description="Window over which state changes are counted, 1ms to 365d. Default 10m.",
        examples=["10m"],
    )
    high: Percent = Field(
        default="50%",
        validate_default=True,
        description="Above this a unit is flapping, 0% to 100%. Default 50%.",
        examples=["50%"],
    )
    low: Percent = Field(
        default="25%",
        validate_default=True,
        description="Below this a flapping unit is calm again, 0% to 100%. Default 25%.",
        examples=["25%"],
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> Flapping:
        if self.low >= self.high:
            raise located_error(
                ("low",), f"low ({self.low:g}%) must be below high ({self.high:g}%)"
            )
        return self


class Incidents(FrozenModel):
    """Failures of units that depend on a failed unit, grouped into one incident."""

    window: Duration = Field(
        default="10s",
        validate_default=True,
        description="A unit that fails within this time of a unit it depends on (through "
        "systemd's Requires=, BindsTo=, PartOf= or After=), before or after it, is a symptom: "
        "its repair waits for the root's. 0s turns grouping off. 0s to 365d. Default 10s.",
        examples=["10s"],
    )
    gather: Duration = Field(
        default="3s",
        validate_default=True,
        description="How long the first alert of a unit with supervised dependents or "
        "dependencies waits, so that it can name the symptoms (repairs do not wait). "
        "0s to 365d. Default 3s.",
        examples=["3s"],
    )


class GuardConfig(FrozenModel):
    """Host-wide safety limits on automatic repair."""

    repair_budget: RepairBudget = Field(
        default_factory=RepairBudget,
        description="Host-wide repair budget. Default {max: 5, window: 15m}.",
        examples=[{"max": 5, "window": "15m"}],
    )
    max_concurrent: int = Field(
        default=3,
        ge=1,
        le=MAX_COUNT,
        description="Repairs running at once, 1 to 1,000,000. Default 3.",
        examples=[3],
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
    incidents: Incidents = Field(
        default_factory=Incidents,
        description="Incident grouping by systemd dependencies. Default {window: 10s, gather: 3s}.",
        examples=[{"window": "10s", "gather": "3s"}],
    )

    @field_validator("protected")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, glob in enumerate(value):
            if not glob.strip():
                raise located_error((index,), "an empty pattern")
        return value


class ChecksConfig(FrozenModel):
    """Host-wide limits on probes."""

    max_concurrent_commands: int = Field(
        default=4,
        ge=1,
        le=MAX_COUNT,
        description="Command probes running at once, 1 to 1,000,000. Default 4.",
        examples=[4],
    )
    batch_window: Duration = Field(
        default="5ms",
        validate_default=True,
        le=0.1,
        description="Checks falling due within this time of each other start together, "
        "from one wake-up of the scheduler: a check may start up to this much early, "
        "never late, and its schedule keeps its rate. 0s to 100ms. Default 5ms.",
        examples=["5ms"],
    )


class ControlConfig(FrozenModel):
    """The control socket: who may connect, read and act. Root may always do everything."""

    socket_group: str | None = Field(
        default=None,
        min_length=1,
        description="Group of the socket file (mode 0660): its members may connect; what they "
        "may do is decided per request by read_group and act_group. Default: read_group, "
        "else act_group; with neither, root only (mode 0600).",
        examples=["adm"],
    )
    read_group: str | None = Field(
        default=None,
        min_length=1,
        description="Members may read: status, history, metrics. Default: socket_group (so its "
        "members keep reading; acting needs act_group), else none.",
        examples=["adm"],
    )
    act_group: str | None = Field(
        default=None,
        min_length=1,
        description="Members may also act: reload, reset, pause, resume, failover, failback, "
        "metrics --reset, drill (its forced check and its record). Default none. They must "
        "be able to connect: if this is not the socket file's group, make them members of "
        "it too.",
        examples=["ops"],
    )


class MainConfig(FrozenModel):
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
        description="Probe limits. Default {max_concurrent_commands: 4, batch_window: 5ms}.",
        examples=[{"max_concurrent_commands": 4}],
    )
    control: ControlConfig = Field(
        default_factory=ControlConfig,
        description="Control socket. Default: root only.",
        examples=[{"socket_group": "adm"}],
    )
    cluster: ClusterConfig | None = Field(
        default=None,
        description="etcd, for policies with a cluster: section. Default: no cluster.",
        examples=[{"endpoints": ["https://10.0.0.1:2379"], "host": "db1"}],
    )
    http: HttpConfig = Field(
        default_factory=HttpConfig,
        description="The HTTP listener for /metrics and the status page. Default: none.",
        examples=[{"listen": "127.0.0.1:9810"}],
    )
    node_exporter: NodeExporterConfig | None = Field(
        default=None,
        description="Write the metrics to a file for node_exporter's textfile collector. "
        "Default: no file.",
        examples=[{"textfile": "/var/lib/node_exporter/textfile_collector/host-supervisor.prom"}],
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="Least level logged to the journal. Default info.",
        examples=["info"],
    )
