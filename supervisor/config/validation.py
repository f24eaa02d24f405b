"""Validate a document against a model, each pydantic error rewritten as a short
message for a person editing YAML, at the FILE:LINE:COL of the key it is about.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from supervisor.config.documents import ConfigIssue, Document, Loc, format_path, locate, position
from supervisor.config.values import describe

__all__ = ["validate_document"]

_M = TypeVar("_M", bound=BaseModel)


MAX_ERRORS = 20
"""Errors reported per file: more say nothing new, and a file of 100,000 bad keys
would take minutes to map back to its lines."""


def validate_document(model: type[_M], doc: Document) -> tuple[_M | None, list[ConfigIssue]]:
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        errors = exc.errors()
        issues = [_issue(model, doc, error) for error in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            line, col = position(doc.node)
            more = f"{len(errors) - MAX_ERRORS} more errors not shown; fix these first"
            issues.append(ConfigIssue(doc.path, line, col, more))
        return None, issues


def _issue(model: type[BaseModel], doc: Document, error: ErrorDetails) -> ConfigIssue:
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "located":
        loc = loc + tuple(ctx["path"])
    node, key_path = locate(doc.node, loc, at_key=error["type"] == "extra_forbidden")
    line, col = position(node)
    return ConfigIssue(doc.path, line, col, _message(model, error, loc), format_path(key_path))


_KIND = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _message(model: type[BaseModel], error: ErrorDetails, loc: Loc) -> str:
    """Rewrite one pydantic error as a short sentence for a person editing YAML."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    given = describe(error.get("input"))
    if kind == "located":
        return str(ctx["message"])
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "extra_forbidden":
        return _unknown_key(model, loc)
    if kind in _KIND:
        return f"expected {_KIND[kind]}, got {given}"
    if kind == "finite_number":
        return f"expected a finite number, got {given}"
    if kind == "int_parsing_size":
        return f"expected a whole number, got {given}, which is far too large"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {given}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']:g}, got {given}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {given}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}, got {given}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {given}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    return error["msg"]


def _unknown_key(model: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1])
    known = _known_keys(model, loc[:-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    if known:
        return f"unknown key {key!r}; known keys here: {', '.join(sorted(known))}"
    return f"unknown key {key!r}"


@cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _known_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model accepts at `loc`, read from its JSON schema."""
    schema = _schema(model)
    defs: dict[str, Any] = schema.get("$defs", {})

    def branches(node: dict[str, Any]) -> list[dict[str, Any]]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if "properties" in node or not ("anyOf" in node or "oneOf" in node):
            return [node]
        return [b for sub in node.get("anyOf", node.get("oneOf", [])) for b in branches(sub)]

    current = branches(schema)
    for element in loc:
        following: list[dict[str, Any]] = []
        for node in current:
            properties = node.get("properties", {})
            extra = node.get("additionalProperties")
            if isinstance(element, int) and "items" in node:
                following += branches(node["items"])
            elif isinstance(element, str) and element in properties:
                following += branches(properties[element])
            elif isinstance(element, str) and isinstance(extra, dict):
                following += branches(extra)
        if following:
            current = following
    return sorted({key for node in current for key in node.get("properties", {})})
