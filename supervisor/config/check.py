"""A check: one probe of a unit with its schedule (interval, timeout) and the counts
that make it hard-failed or healthy again.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from supervisor.config.probes import (
    CommandProbe,
    DiskProbe,
    HttpProbe,
    MemoryProbe,
    Probe,
    ProcessProbe,
    TcpProbe,
    UnitProbe,
)
from supervisor.config.types import (
    PROBE_KINDS,
    FrozenModel,
    Name,
    located_error,
)
from supervisor.config.values import (
    MAX_COUNT,
    Duration,
    PositiveDuration,
    format_duration,
)

__all__ = ["Check"]


class Check(FrozenModel):
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
        description="Time between two runs of the probe, 1ms to 365d. Default 10s.",
        examples=["5s"],
    )
    timeout: PositiveDuration = Field(
        default="5s",
        validate_default=True,
        description="Time after which a run counts as failed, 1ms to 365d. Default 5s.",
        examples=["2s"],
    )
    failures: int = Field(
        default=3,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive failures before the check is hard-failed, 1 to 1,000,000. "
        "Default 3.",
        examples=[3],
    )
    successes: int = Field(
        default=2,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive successes before it counts healthy again, 1 to 1,000,000. "
        "Default 2.",
        examples=[2],
    )
    start_period: Duration = Field(
        default="0s",
        validate_default=True,
        description="Time after the unit starts during which failures are not counted, 0s to "
        "365d. Default 0s.",
        examples=["30s"],
    )
    confirm_interval: PositiveDuration | None = Field(
        default=None,
        description="After a failure that has not yet reached `failures`, run the probe "
        "again after this shorter time (instead of `interval`) until the check is "
        "hard-failed or a success resets the count: a verdict in `failures` x this "
        "instead of `failures` x `interval`. Shorter than `interval`. Default none: "
        "every run waits `interval`.",
        examples=["200ms"],
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

    @model_validator(mode="after")
    def _confirm_shorter(self) -> Check:
        if self.confirm_interval is not None and self.confirm_interval >= self.interval:
            raise located_error(
                ("confirm_interval",),
                "confirm_interval must be shorter than interval "
                f"({format_duration(self.confirm_interval)} is not shorter than "
                f"{format_duration(self.interval)})",
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
