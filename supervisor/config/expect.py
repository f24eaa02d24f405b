"""What a policy promises about its unit's recovery, for `host-supervisor drill` to hold
it to: a drill injects a fault and judges the daemon's repair against these."""

from __future__ import annotations

from pydantic import Field

from supervisor.config.types import FrozenModel
from supervisor.config.values import PositiveDuration

__all__ = ["Expect"]


class Expect(FrozenModel):
    """Recovery targets a drill checks; nothing the daemon itself decides reads them."""

    recover_within: PositiveDuration | None = Field(
        default=None,
        description="A drill's fault must be repaired (the unit healthy again) within this "
        "long after the fault, 1ms to 365d. Default: no target (a drill then only needs the "
        "unit healthy again before its --timeout).",
        examples=["30s"],
    )
