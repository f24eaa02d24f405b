"""How a policy repairs its unit: the ladder and its limits, the preconditions of any
automatic repair, and the settings of the restore step.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from supervisor.config.types import (
    LADDER_STEPS,
    AbsolutePath,
    Argv,
    FrozenModel,
    LadderStep,
    UnitName,
    located_error,
)
from supervisor.config.values import (
    MAX_COUNT,
    Duration,
    Percent,
    PositiveDuration,
    describe,
    format_duration,
)

__all__ = ["Preconditions", "Recovery", "Restore"]


class Preconditions(FrozenModel):
    """What must hold before any automatic repair; when one fails, hold and alert."""

    disk_below: Percent | None = Field(
        default=None,
        description="Every path in disk_paths must be less full than this, 0% to 100%. Default: "
        "not checked.",
        examples=["90%"],
    )
    disk_paths: tuple[AbsolutePath, ...] = Field(
        default=("/",),
        description='File systems disk_below looks at. Default ["/"].',
        examples=[["/", "/var"]],
    )
    memory_below: Percent | None = Field(
        default=None,
        description="Host memory use must be below this, 0% to 100%. Default: not checked.",
        examples=["95%"],
    )
    units_active: tuple[UnitName, ...] = Field(
        default=(),
        description="Units that must be active. Default none.",
        examples=[["network-online.target"]],
    )


DEFAULT_DIFF_MASK = (
    r"(?i)passw(or)?d",
    r"(?i)secret",
    r"(?i)token",
    r"(?i)credential",
    r"(?i)\bauth\w*",
    r"(?i)[\w.-]*key\b",
)
"""What the alert's diff of a rollback masks by default (the rest of the line after it)."""


class Restore(FrozenModel):
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
        "is restarted; the program and every directory above it must be root's and writable "
        "only by root. Default none.",
        examples=[["/usr/sbin/nginx", "-t"]],
    )
    snapshot_after: Duration = Field(
        default="10m",
        validate_default=True,
        description="How long the unit must be healthy before its configuration is "
        "snapshotted as last-known-good, 0s to 365d. Default 10m.",
        examples=["10m"],
    )
    keep: int = Field(
        default=5,
        ge=1,
        le=MAX_COUNT,
        description="Snapshots to keep, 1 to 1,000,000. Default 5.",
        examples=[5],
    )
    keep_backups: int = Field(
        default=10,
        ge=1,
        le=MAX_COUNT,
        description="Backups to keep, 1 to 1,000,000: a restore copies the current files "
        "to STATE/backups/UNIT/ before it writes, and keeps only the newest this many. "
        "Default 10.",
        examples=[10],
    )

    rollback_window: Duration = Field(
        default="10m",
        validate_default=True,
        description="When the unit turns unhealthy within this long after a change to the "
        "restore paths (or, for a change made while it was stopped, after its next start), "
        "the restarts that would only fail again are skipped: the first repair restores the "
        "newest proven snapshot (if there is one and the ladder has restore). 0s turns it "
        "off, up to 365d. Default 10m.",
        examples=["10m", "0s"],
    )
    diff_mask: tuple[str, ...] = Field(
        default=DEFAULT_DIFF_MASK,
        description="Regular expressions (Python syntax, matched per line) of the alert's "
        "diff of what a rollback changed: after a match, the rest of the line is shown as "
        "****. Default: password, passwd, secret, token, credential, auth and *key settings.",
        examples=[[r"(?i)\bpassword\b", r"(?i)^\s*ssl_key_pass"]],
    )

    @field_validator("diff_mask")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise located_error(
                    (index,), f"{pattern!r} is not a regular expression: {exc}"
                ) from None
        return value

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


class Recovery(FrozenModel):
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
        description="Minimum time between two repair actions on the unit (the first action is "
        "immediate), 0s to 365d. Default 5m.",
        examples=["5m"],
    )
    backoff: float = Field(
        default=1.0,
        ge=1,
        le=100,
        description="Factor the cooldown grows by after each action, up to max_cooldown, "
        "1 to 100. Default 1 (no growth).",
        examples=[2],
    )
    max_cooldown: Duration = Field(
        default="1h",
        validate_default=True,
        description="Upper bound of the growing cooldown, 0s to 365d. Default 1h.",
        examples=["1h"],
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=MAX_COUNT,
        description="Repair actions per episode before giving up (and failing over), 1 to "
        "1,000,000. Default 3.",
        examples=[3],
    )
    reset_after: Duration = Field(
        default="1h",
        validate_default=True,
        description="How long the unit must stay healthy before its attempts are forgotten (never"
        " at the first good result), 0s to 365d. Default 1h.",
        examples=["1h"],
    )
    settle: PositiveDuration = Field(
        default="10s",
        validate_default=True,
        description="How long after an action (successful or not) before judging it, "
        "1ms to 365d. Default 10s.",
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
