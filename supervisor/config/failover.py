"""Where a policy fails over when repair is exhausted, and when it fails back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)

from supervisor.config.types import (
    UNIT_PATTERN,
    Argv,
    FrozenModel,
    UnitName,
    one_or_many,
)
from supervisor.config.values import (
    MAX_COUNT,
    Duration,
    describe,
)

__all__ = ["Failback", "Failover"]


class Failback(FrozenModel):
    """When to move back from the backup to the healed primary."""

    delay: Duration = Field(
        default="30s",
        validate_default=True,
        description="How long a backup serves before the primary is tried again (doubled after "
        "each failed failback, at most 1h), 0s to 365d. Default 30s.",
        examples=["30s"],
    )
    successes: int = Field(
        default=2,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive successful checks of the primary needed, 1 to 1,000,000. "
        "Default 2.",
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


class Failover(FrozenModel):
    """Move the service to a backup unit when repair is exhausted."""

    backup: Annotated[
        tuple[UnitName, ...],
        BeforeValidator(one_or_many),
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
        le=MAX_COUNT,
        description="Fail over after this many hard failures of the primary (1 to 1,000,000), "
        "without waiting for the ladder to be exhausted. Default: when the ladder is exhausted.",
        examples=[2],
    )
    can_recover: Argv | None = Field(
        default=None,
        description="Command that must exit 0 before the primary is tried again; the program "
        "and every directory above it must be root's and writable only by root. Default none.",
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
        description="How long after switching before judging the backup, 0s to 365d. Default 10s.",
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
