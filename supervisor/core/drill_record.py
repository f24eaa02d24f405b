"""A recovery drill's record: what `host-supervisor drill` reports to the daemon (one
`drill` history entry, the metrics), read back from JSON, and told in one line. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core.drill import Fault, Figures, Result, Verdict


@dataclass(frozen=True)
class DrillRecord:
    """What a drill reports to the daemon: one `drill` history entry and the metrics."""

    fault: Fault
    result: Result
    detection_s: float | None = None
    recovery_s: float | None = None
    repaired_s: float | None = None
    rungs: tuple[str, ...] = ()
    expect_recover_within_s: float | None = None
    reasons: tuple[str, ...] = ()
    cleanup: str = ""
    """What the drill had to put back itself ("" when the daemon did it all)."""
    fault_at: float | None = None
    """When the fault was injected (Unix time, the drill's clock)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """What it touched: the check forced, the file broken."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault.value,
            "result": self.result.value,
            "detection_s": self.detection_s,
            "recovery_s": self.recovery_s,
            "repaired_s": self.repaired_s,
            "rungs": list(self.rungs),
            "expect_recover_within_s": self.expect_recover_within_s,
            "reasons": list(self.reasons),
            "cleanup": self.cleanup,
            "fault_at": self.fault_at,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


def record_of(
    fault: Fault,
    found: Figures,
    verdict: Verdict,
    recover_within: float | None,
    cleanup: str = "",
    extra: Mapping[str, str] | None = None,
    fault_at: float | None = None,
) -> DrillRecord:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return DrillRecord(
        fault=fault,
        result=verdict.result,
        detection_s=rounded(found.detected_after),
        recovery_s=rounded(found.recovered_after),
        repaired_s=rounded(found.repaired_after),
        rungs=found.rungs,
        expect_recover_within_s=recover_within,
        reasons=verdict.reasons,
        cleanup=cleanup,
        extra=dict(extra or {}),
        fault_at=fault_at,
    )


def _seconds(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number of seconds or null, got {value!r}")
    if value < 0:
        raise ValueError(f"{key} must not be negative, got {value!r}")
    return float(value)


def _strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return tuple(value)


def parse_record(body: object) -> DrillRecord:
    """A drill record from the JSON a client sent; ValueError naming the bad field."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    try:
        fault = Fault(body.get("fault"))
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise ValueError(f"fault must be one of {known}, got {body.get('fault')!r}") from None
    try:
        result = Result(body.get("result"))
    except ValueError:
        raise ValueError(f"result must be met or missed, got {body.get('result')!r}") from None
    extra = body.get("extra", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise ValueError("extra must be an object of strings")
    cleanup = body.get("cleanup", "")
    if not isinstance(cleanup, str):
        raise ValueError("cleanup must be a string")
    return DrillRecord(
        fault=fault,
        result=result,
        detection_s=_seconds(body, "detection_s"),
        recovery_s=_seconds(body, "recovery_s"),
        repaired_s=_seconds(body, "repaired_s"),
        rungs=_strings(body, "rungs"),
        expect_recover_within_s=_seconds(body, "expect_recover_within_s"),
        reasons=_strings(body, "reasons"),
        cleanup=cleanup,
        extra={str(k): v for k, v in extra.items()},
        fault_at=_seconds(body, "fault_at"),
    )


def summary(record: DrillRecord) -> str:
    """One line for the history and the terminal."""

    def secs(value: float | None) -> str:
        return "never" if value is None else f"{value:.3f}s"

    if record.fault is Fault.STOP:
        text = f"drill {record.fault.value}: {record.result.value}: stop seen in "
        text += secs(record.detection_s)
        text += "; not restarted by the daemon" if not record.rungs else "; the daemon restarted it"
    else:
        text = (
            f"drill {record.fault.value}: {record.result.value}: detected in "
            f"{secs(record.detection_s)}, healthy again in {secs(record.recovery_s)}"
        )
        text += f" ({', '.join(record.rungs)})" if record.rungs else " (no repair ran)"
        if record.expect_recover_within_s is not None:
            text += f"; expected within {record.expect_recover_within_s:g}s"
    if record.reasons:
        text += "; " + "; ".join(record.reasons)
    if record.cleanup:
        text += f"; the drill put back: {record.cleanup}"
    return text
