"""Property: whatever a file holds, loading never raises, every error names the file at a
line and column of at least 1, and nothing accepted holds NaN, an infinity, a NUL or a
number outside its documented bounds. (tests/bench/run fuzz throws 20,000 more files.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.config_fuzz import HOSTILE, OP_KINDS, generate, load_one, mutate, seeds

SEEDS = seeds()
_count = itertools.count()

ops = st.lists(
    st.tuples(
        st.integers(0, OP_KINDS - 1), st.integers(0, 10_000), st.integers(0, len(HOSTILE) * 3)
    ),
    min_size=1,
    max_size=4,
)
mutated = st.tuples(st.sampled_from(SEEDS), ops).map(
    lambda drawn: (drawn[0][0], mutate(drawn[0][1], drawn[1]))
)
generated = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=5).map(generate)
raw = st.tuples(st.sampled_from(["host-supervisor.yaml", "policy.yaml"]), st.binary(max_size=200))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=300,
    deadline=2000,
    derandomize=True,  # the same examples on every run: the suite must not flake
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=st.one_of(mutated, mutated, generated, raw))
def test_no_file_crashes_the_loader_or_is_wrongly_accepted(
    base: Path, document: tuple[str, bytes]
) -> None:
    name, text = document
    verdict = load_one(base / str(next(_count)), name, text)
    assert verdict.crash is None, f"{type(verdict.crash).__name__}: {verdict.crash}"
    assert verdict.bad_positions == []
    assert verdict.violations == []
    assert verdict.internal == []


@pytest.mark.parametrize("name", sorted({name for name, _ in SEEDS}))
def test_the_seeds_load_clean(base: Path, name: str) -> None:
    for seed_name, text in SEEDS:
        if seed_name == name:
            verdict = load_one(base / f"seed-{next(_count)}", name, text)
            assert verdict.accepted, [str(e) for e in verdict.loaded.errors]  # type: ignore[union-attr]
            assert verdict.violations == []
