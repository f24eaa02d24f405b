"""The policy language: models, YAML loading with FILE:LINE:COL errors, JSON Schema."""

from supervisor.config.check import Check
from supervisor.config.failover import Failback, Failover
from supervisor.config.loader import ConfigIssue, LoadedConfig, load_config, load_policy_file
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
from supervisor.config.schema import main_json_schema, policy_json_schema
from supervisor.config.values import Duration, Percent, Size

__all__ = [
    "AlertsConfig",
    "Breaker",
    "Channel",
    "Check",
    "ChecksConfig",
    "CommandProbe",
    "ConfigIssue",
    "ControlConfig",
    "DiskProbe",
    "Duration",
    "Failback",
    "Failover",
    "Flapping",
    "GuardConfig",
    "HttpProbe",
    "LoadedConfig",
    "MainConfig",
    "MemoryProbe",
    "Percent",
    "Policy",
    "Preconditions",
    "Probe",
    "ProcessProbe",
    "Recovery",
    "RepairBudget",
    "Restore",
    "Size",
    "TcpProbe",
    "UnitProbe",
    "load_config",
    "load_policy_file",
    "main_json_schema",
    "policy_json_schema",
]
