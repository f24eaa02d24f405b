"""The API document: an OpenAPI 3.1 description of the control socket's endpoints and
the HTTP listener's, shipped with the package (`openapi.yaml` beside this file) and
checked against both servers by the tests."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml

__all__ = ["openapi_document", "openapi_text"]


@functools.cache
def openapi_text() -> str:
    """The document as shipped (YAML)."""
    return resources.files("supervisor.api").joinpath("openapi.yaml").read_text("utf-8")


def openapi_document() -> dict[str, Any]:
    """The document, parsed."""
    document: dict[str, Any] = yaml.safe_load(openapi_text())
    return document
