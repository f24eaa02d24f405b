"""JSON Schema of the policy and main config files, for editors and documentation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy

__all__ = ["main_json_schema", "policy_json_schema"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": title}


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of one policy file (policies.d/*.yaml)."""
    return _schema(Policy, "host-supervisor policy")


def main_json_schema() -> dict[str, Any]:
    """JSON Schema of the main config file (host-supervisor.yaml)."""
    return _schema(MainConfig, "host-supervisor main config")
