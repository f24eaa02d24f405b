"""The policy language: one pydantic model per YAML mapping, every field documented.

A policy (one file in policies.d) describes one systemd unit: how to probe it, how to
repair it, where to fail over, whom to tell. The main config holds what is global:
alert channels, the guard's limits, logging. Models are frozen and refuse unknown keys.
Durations are float seconds, sizes int bytes, percentages floats from 0 to 100.

The models live in one module per section (`types`, `probes`, `check`, `recovery`,
`failover`, `policy`, `main`); this module gathers them under their former import path.
"""

from supervisor.config.check import Check
from supervisor.config.failover import Failback, Failover
from supervisor.config.main import (
    AlertsConfig,
    Breaker,
    Channel,
    ChecksConfig,
    ControlConfig,
    Flapping,
    GuardConfig,
    MainConfig,
    RepairBudget,
)
from supervisor.config.policy import Policy
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
from supervisor.config.recovery import Preconditions, Recovery, Restore
from supervisor.config.types import (
    DEFAULT_PROTECTED,
    LADDER_STEPS,
    PROBE_KINDS,
    UNIT_TYPES,
    located_error,
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
