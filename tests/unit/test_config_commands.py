"""`validate` and `schema`: what the CLI prints and returns."""

import importlib.util
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from supervisor.commands.validate import validate_command
from supervisor.config import main_json_schema, policy_json_schema


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    path.chmod(mode)
    return path


def run(config_dir: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = validate_command(config_dir, out)
    return code, out.getvalue().splitlines()


# --- validate ----------------------------------------------------------------------------------


def test_validate_clean_directory(tmp_path: Path) -> None:
    write(tmp_path / "policies.d" / "a.yaml", "unit: a.service\n")
    write(tmp_path / "policies.d" / "b.yaml", "unit: b.socket\n")
    assert run(tmp_path) == (0, ["OK: 2 policies for 2 units"])


def test_validate_one_policy_is_singular(tmp_path: Path) -> None:
    write(tmp_path / "policies.d" / "a.yaml", "unit: a.service\n")
    assert run(tmp_path) == (0, ["OK: 1 policy for 1 unit"])


def test_validate_prints_every_issue_sorted_then_a_summary(tmp_path: Path) -> None:
    b = write(tmp_path / "policies.d" / "b.yaml", "unit: b.service\nchecks: 3\nbogus: 1\n")
    a = write(tmp_path / "policies.d" / "a.yaml", "unit: a\n")
    write(tmp_path / "policies.d" / "c.yaml", "unit: c.service\n")
    code, lines = run(tmp_path)
    assert code == 1
    assert lines == [
        f"{a}:1:7: unit: 'a' is not a systemd unit name; write it with its type, e.g. 'a.service'",
        f"{b}:2:9: checks: expected a list, got 3",
        f"{b}:3:1: bogus: unknown key 'bogus'; known keys here: alerts, allow_automatic, "
        "checks, cluster, expect, failover, mode, recovery, unit",
        "1 policy valid, 3 errors",
    ]


def test_validate_counts_main_config_errors(tmp_path: Path) -> None:
    main = write(tmp_path / "host-supervisor.yaml", "guard: {max_concurent: 2}\n")
    code, lines = run(tmp_path)
    assert code == 1
    assert lines == [
        f"{main}:1:9: guard.max_concurent: unknown key 'max_concurent' "
        "(did you mean 'max_concurrent'?)",
        "0 policies valid, 1 error",
    ]


def test_validate_missing_directory_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "etc"
    assert run(missing) == (1, [f"config directory {missing} does not exist"])


def test_validate_design_example_is_clean(tmp_path: Path) -> None:
    design = Path(__file__).parent / "fixtures" / "config" / "design"
    nginx = write(tmp_path / "nginx", "#!/bin/sh\n", mode=0o755)
    config = tmp_path / "etc"
    write(config / "host-supervisor.yaml", (design / "host-supervisor.yaml").read_text())
    text = (design / "policies.d" / "nginx.yaml").read_text().replace("/usr/sbin/nginx", str(nginx))
    write(config / "policies.d" / "nginx.yaml", text)
    assert run(config) == (0, ["OK: 1 policy for 1 unit"])


# --- schema ------------------------------------------------------------------------------------


def _objects(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [("(root)", schema)]
    found += list(schema.get("$defs", {}).items())
    return [(name, node) for name, node in found if node.get("type") == "object"]


@pytest.mark.parametrize(
    ("make", "title", "objects"),
    [
        (policy_json_schema, "host-supervisor policy", 16),
        (main_json_schema, "host-supervisor main config", 15),
    ],
)
def test_schema_is_json_and_refuses_unknown_keys(make: Any, title: str, objects: int) -> None:
    schema = make()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == title
    models = _objects(schema)
    assert len(models) == objects
    for name, node in models:
        assert node.get("additionalProperties") is False, name
        for key, prop in node["properties"].items():
            assert "Default" in prop.get("description", "") or key in node.get("required", []), (
                f"{name}.{key} does not state its default"
            )
            assert prop.get("examples"), f"{name}.{key} has no example"


def test_policy_schema_shows_user_facing_names_and_strings() -> None:
    schema = policy_json_schema()
    defs = schema["$defs"]
    assert schema["required"] == ["unit"]
    assert "from" in defs["Restore"]["properties"] and "validate" in defs["Restore"]["properties"]
    interval = defs["Check"]["properties"]["interval"]
    assert interval["default"] == "10s"
    assert interval["anyOf"][0]["type"] == "string" and interval["anyOf"][0]["pattern"]
    assert defs["Check"]["oneOf"][0] == {"required": ["http"]}
    assert defs["DiskProbe"]["properties"]["max_used"]["default"] == "90%"


def test_schema_refuses_an_unknown_key_in_a_check() -> None:
    schema = policy_json_schema()
    check = schema["$defs"]["Check"]
    assert check["additionalProperties"] is False
    assert "intervall" not in check["properties"] and "interval" in check["properties"]
    if importlib.util.find_spec("jsonschema") is None:
        return  # not a dependency; the structural checks above stand in for it
    import jsonschema

    good = {"unit": "a.service", "checks": [{"name": "p", "tcp": {"port": 80}, "interval": "5s"}]}
    jsonschema.validate(good, schema)
    bad = {**good, "checks": [{**good["checks"][0], "intervall": "5s"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_validate_warns_about_a_restore_path_below_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "conf.d").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    policy = write(
        tmp_path / "cfg" / "policies.d" / "a.yaml",
        f"""
        unit: a.service
        recovery:
          restore:
            paths: [{tmp_path}/alias/conf.d, {real}/conf.d/x.conf]
        """,
    )
    code, lines = run(tmp_path / "cfg")
    assert code == 0  # a warning, not an error
    assert lines[-1] == "OK: 1 policy for 1 unit"
    (warning,) = lines[:-1]
    assert warning.startswith(f"{policy}: recovery.restore: warning: {tmp_path}/alias/conf.d:")
    assert f"{tmp_path}/alias: is a symlink" in warning
    assert f"name the real path {real}/conf.d" in warning
