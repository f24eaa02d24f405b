"""The policy reference, rendered from the JSON Schema that the models produce.

The README's "Policy reference" section and the man page are generated from
here, so the documentation cannot drift from what `validate` accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from supervisor.config.schema import main_json_schema, policy_json_schema
from supervisor.config.values import (
    DURATION_PATTERN,
    PERCENT_PATTERN,
    POSITIVE_DURATION_PATTERN,
    SIZE_PATTERN,
)
from supervisor.text import one_line

Schema = dict[str, Any]


def _type_label(node: Schema, defs: Schema) -> str:
    if "$ref" in node:
        return "section"
    if "enum" in node:
        return " \\| ".join(str(v) for v in node["enum"])
    if "const" in node:
        return str(node["const"])
    if options := node.get("anyOf") or node.get("oneOf"):
        labels = [_type_label(n, defs) for n in options if n.get("type") != "null"]
        labels = list(dict.fromkeys(labels))
        if "duration" in labels:
            return "duration"
        if "percent" in labels:
            return "percent"
        if "size" in labels:
            return "size"
        return " or ".join(labels)
    pattern = node.get("pattern", "")
    if pattern in (DURATION_PATTERN, POSITIVE_DURATION_PATTERN):
        return "duration"
    if pattern in (SIZE_PATTERN,) or "[KkMmGgTt]" in pattern:
        return "size"
    if pattern == PERCENT_PATTERN or pattern.endswith("%?\\s*$"):
        return "percent"
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type_label(node.get('items', {}), defs)}"
    if kind == "object":
        if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
            return f"map of {_type_label(node['additionalProperties'], defs)}"
        return "mapping"
    return {"integer": "integer", "number": "number", "boolean": "boolean"}.get(
        kind or "", "string"
    )


def _ref(node: Schema) -> str | None:
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    for option in node.get("anyOf", []) + node.get("oneOf", []):
        if "$ref" in option:
            return str(option["$ref"]).rsplit("/", 1)[-1]
    items = node.get("items")
    if isinstance(items, dict):
        return _ref(items)
    if isinstance(node.get("additionalProperties"), dict):
        return _ref(node["additionalProperties"])
    return None


def rows(schema: Schema) -> Iterator[tuple[str, str, str]]:
    """(key path, type, description) for every key, depth first, in model order."""
    defs: Schema = schema.get("$defs", {})

    def walk(node: Schema, prefix: str) -> Iterator[tuple[str, str, str]]:
        for name, prop in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            ref = _ref(prop)
            is_list = prop.get("type") == "array" or any(
                o.get("type") == "array" for o in prop.get("anyOf", [])
            )
            is_map = isinstance(prop.get("additionalProperties"), dict)
            yield path, _type_label(prop, defs), one_line(prop.get("description", ""))
            if ref is not None:
                suffix = "[]" if is_list else ".NAME" if is_map else ""
                yield from walk(defs[ref], f"{path}{suffix}.")

    yield from walk(schema, "")


def markdown_table(schema: Schema) -> str:
    lines = ["| key | type | meaning |", "| --- | --- | --- |"]
    for path, kind, description in rows(schema):
        escaped = description.replace("|", "\\|")
        lines.append(f"| `{path}` | {kind} | {escaped} |")
    return "\n".join(lines) + "\n"


def markdown_reference() -> str:
    return (
        "### A policy (`policies.d/*.yaml`)\n\n"
        + markdown_table(policy_json_schema())
        + "\n### The main config (`host-supervisor.yaml`)\n\n"
        + markdown_table(main_json_schema())
    )


if __name__ == "__main__":
    print(markdown_reference(), end="")
