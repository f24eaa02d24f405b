"""The recipes in docs/recipes/ are valid policies, cover the common services, and
docs/recipes.md shows each of them exactly as the file is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECIPES = sorted((DOCS / "recipes").glob("*.yaml"))
SERVICES = {  # recipe: a pattern its unit must match
    "nginx": r"nginx\.service",
    "apache2": r"apache2\.service",
    "php-fpm": r"php[0-9.]*-fpm\.service",
    "haproxy": r"haproxy\.service",
    "postgresql": r"postgresql(@.+)?\.service",
    "mariadb": r"(mariadb|mysql)\.service",
    "redis": r"redis(-server)?\.service",
    "sshd": r"sshd?\.service",
    "container": r".+\.service",
    "timer": r".+\.service",
}


def _unit(recipe: Path) -> str:
    found = re.search(r"^unit: (\S+)$", recipe.read_text(), re.M)
    assert found, recipe
    return found[1]


def test_there_is_a_recipe_for_each_common_service() -> None:
    assert len(RECIPES) >= 10
    by_name = {recipe.stem: recipe for recipe in RECIPES}
    for name, pattern in SERVICES.items():
        assert name in by_name, name
        assert re.fullmatch(pattern, _unit(by_name[name])), name
    assert ".timer" in (DOCS / "recipes" / "timer.yaml").read_text()
    assert "container" in (DOCS / "recipes" / "container.yaml").read_text()


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_the_recipe_validates(recipe: Path, tmp_path: Path) -> None:
    config = tmp_path / "host-supervisor"
    (config / "policies.d").mkdir(parents=True)
    policy = config / "policies.d" / recipe.name
    policy.write_text(recipe.read_text())
    policy.chmod(0o644)
    config.chmod(0o755)
    (config / "policies.d").chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "OK: 1 policy for 1 unit", done.stdout + done.stderr


def test_the_recipes_page_shows_each_file_as_it_is() -> None:
    page = (DOCS / "recipes.md").read_text()
    for recipe in RECIPES:
        assert f"`recipes/{recipe.name}`:\n\n```yaml\n{recipe.read_text()}```\n" in page, recipe
    assert page.count("```yaml\n") == len(RECIPES)
