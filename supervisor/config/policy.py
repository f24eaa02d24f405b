"""A policy: one file in policies.d, how one systemd unit is probed, repaired and
failed over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from supervisor.config.check import Check
from supervisor.config.cluster import Clustered
from supervisor.config.expect import Expect
from supervisor.config.failover import Failover
from supervisor.config.recovery import Recovery
from supervisor.config.types import (
    FrozenModel,
    Name,
    UnitName,
    located_error,
)

__all__ = ["Mode", "Policy"]

Mode = Literal["act", "observe"]


class Policy(FrozenModel):
    """One file in policies.d: how one systemd unit is probed, repaired and failed over."""

    unit: UnitName = Field(
        description="The systemd unit, with its type suffix. Required.",
        examples=["nginx.service"],
    )
    mode: Mode = Field(
        default="act",
        description="act: repair the unit by its recovery ladder and fail it over as "
        "configured. observe: watch, check and alert, never act on the unit (what "
        "`host-supervisor discover` writes; change it to act to promote the unit). Default act.",
        examples=["observe"],
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
    cluster: Clustered | None = Field(
        default=None,
        description="Run the unit on exactly one of several hosts, elected through etcd "
        "(needs the main config's cluster:). Default: this host only.",
        examples=[{"hosts": ["db1", "db2"], "ttl": "5s"}],
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
    expect: Expect = Field(
        default_factory=Expect,
        description="Recovery targets `host-supervisor drill` judges the daemon's repairs "
        "against. Default: none.",
        examples=[{"recover_within": "30s"}],
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
        if self.mode == "observe":
            for section in ("failover", "cluster"):
                if getattr(self, section) is not None:
                    raise located_error(
                        ("mode",),
                        f"mode observe never acts on the unit, so it cannot have {section}:; "
                        f"set mode: act, or remove the {section} section",
                    )
        if self.failover is not None and self.cluster is not None:
            raise located_error(
                ("cluster",),
                "a unit fails over either to a backup unit (failover:) or to another host "
                "(cluster:), not both",
            )
        if self.failover is not None:
            for index, backup in enumerate(self.failover.backup):
                if backup == self.unit:
                    raise located_error(
                        ("failover", "backup", index), "a unit cannot be its own backup"
                    )
        return self
