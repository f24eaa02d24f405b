"""Flap detection, driven directly with explicit times (no clock, no sleeps)."""

from __future__ import annotations

import json

import pytest

from supervisor.config.main import Flapping
from supervisor.core.flapping import (
    MAX_SAMPLES,
    MIN_SAMPLES,
    FlapChange,
    FlapState,
    expire,
    next_deadline,
    observe,
    percent_change,
)

CFG = Flapping()  # window 10m, high 50%, low 25%


def feed(
    state: FlapState, healths: list[bool], start: float, step: float = 1.0
) -> tuple[FlapState, list[tuple[int, FlapChange, float]]]:
    """Observe `healths` one `step` apart; return (index, change, percent) for each change."""
    changes: list[tuple[int, FlapChange, float]] = []
    for index, healthy in enumerate(healths):
        state, change = observe(CFG, state, healthy, start + index * step)
        if change is not None:
            changes.append((index, change, percent_change(state.samples)))
    return state, changes


def alternating(count: int, first: bool) -> list[bool]:
    return [first if i % 2 == 0 else not first for i in range(count)]


# -- the formula ----------------------------------------------------------------------------


def test_the_docstring_example_is_sixty_percent() -> None:
    samples = [(float(t), h) for t, h in enumerate([True, True, False, True, False, False])]
    assert percent_change(samples) == pytest.approx(60.0)


def test_percent_edges() -> None:
    assert percent_change([]) == 0.0
    assert percent_change([(0.0, True)]) == 0.0
    assert percent_change([(0.0, True), (1.0, True)]) == 0.0
    assert percent_change([(0.0, True), (1.0, False)]) == 100.0
    # Every sample a change is exactly 100%, whatever the count.
    for count in range(2, 30):
        samples = [(float(t), h) for t, h in enumerate(alternating(count, True))]
        assert percent_change(samples) == 100.0


def test_newer_changes_weigh_more() -> None:
    old_change = [(float(t), h) for t, h in enumerate([True, False, False, False, False, False])]
    new_change = [(float(t), h) for t, h in enumerate([True, True, True, True, True, False])]
    assert percent_change(old_change) == pytest.approx(0.8 / 5 * 100)
    assert percent_change(new_change) == pytest.approx(1.2 / 5 * 100)


def test_only_the_last_21_samples_count() -> None:
    # An old change beyond the last 21 samples is not counted.
    samples = [(0.0, False)] + [(float(t), True) for t in range(1, 22)]
    assert len(samples) == MAX_SAMPLES + 1
    assert percent_change(samples) == 0.0


# -- observe ---------------------------------------------------------------------------------


def test_steady_healthy_never_flaps() -> None:
    state, changes = feed(FlapState(), [True] * 50, 0.0)
    assert changes == [] and not state.flapping
    assert len(state.samples) == MAX_SAMPLES
    assert state.samples[0] == (29.0, True) and state.samples[-1] == (49.0, True)


def test_one_outage_and_repair_is_not_flapping() -> None:
    state, changes = feed(FlapState(), [True] * 8 + [False, True], 0.0)
    assert changes == [] and not state.flapping
    assert percent_change(state.samples) == pytest.approx((1.15 + 1.2) / 9 * 100)


def test_alternating_from_the_start_flaps_once_there_are_enough_samples() -> None:
    state, changes = feed(FlapState(), alternating(15, True), 0.0)
    # 100% from the second sample on, but judged only from MIN_SAMPLES samples.
    assert changes == [(MIN_SAMPLES - 1, "started", 100.0)]
    assert state.flapping


def test_alternating_after_a_steady_history_starts_at_the_ninth_change() -> None:
    state, changes = feed(FlapState(), [True] * 21, 0.0)
    assert changes == []
    state, changes = feed(state, alternating(12, False), 21.0)
    # With 21 samples, m changes on the newest places weigh sum(0.8 + 0.4 * i / 19) for
    # i = 20 - m .. 19: 8 changes give 45.05%, 9 give 50.21% >= high.
    assert percent_change(state.samples) > 50.0
    assert [(i, c) for i, c, _ in changes] == [(8, "started")]
    assert changes[0][2] == pytest.approx(50.2105, abs=1e-4)


def test_hysteresis_stays_flapping_until_at_or_below_low() -> None:
    state, _ = feed(FlapState(), [True] * 21, 0.0)
    state, changes = feed(state, alternating(9, False), 21.0)  # starts at the 9th
    assert [c for _, c, _ in changes] == ["started"]

    percents: list[float] = []
    for index in range(30):
        state, change = observe(CFG, state, True, 30.0 + index)
        percents.append(percent_change(state.samples))
        if change is not None:
            break
    # Healthy from here on: the percent falls below high (50) at the 10th sample, but the
    # unit stays flapping through 25.58% at the 15th and stops at 21.05% at the 16th.
    assert change == "stopped" and index == 15
    assert not state.flapping
    assert percents[9] < CFG.high
    assert percents[14] == pytest.approx(25.5789, abs=1e-4)
    assert percents[15] == pytest.approx(21.0526, abs=1e-4)
    assert all(p > CFG.low for p in percents[:15])


def test_samples_older_than_the_window_are_dropped() -> None:
    state, _ = feed(FlapState(), [True, False, True], 0.0, step=100.0)  # at 0, 100, 200
    state, _ = observe(CFG, state, True, 700.0)
    # The sample at 100 is exactly one window old: dropped with the one at 0.
    assert [t for t, _ in state.samples] == [200.0, 700.0]


def test_window_expiry_ends_flapping_at_the_next_observation() -> None:
    state, _ = feed(FlapState(), alternating(12, True), 0.0)
    assert state.flapping
    state, change = observe(CFG, state, True, 11.0 + 600.0 + 1.0)
    assert change == "stopped" and not state.flapping
    assert state.samples == ((612.0, True),)


def test_expire_ends_flapping_without_an_observation() -> None:
    state, _ = feed(FlapState(), alternating(12, True), 0.0)  # samples at 0..11
    assert next_deadline(CFG, state) == 600.0
    same, change = expire(CFG, state, 599.0)
    assert same is state and change is None
    # At 602 three samples have left: 9 remain, fewer than MIN_SAMPLES.
    state, change = expire(CFG, state, 602.0)
    assert change == "stopped" and len(state.samples) == 9
    assert next_deadline(CFG, state) is None


def test_expire_never_starts_flapping() -> None:
    # Old steady samples keep the percent under high; once they leave, the rest alternate.
    state, _ = feed(FlapState(), [True] * 13, 0.0)  # at 0..12
    state, changes = feed(state, alternating(8, False), 400.0)  # at 400..407
    assert changes == [] and not state.flapping
    assert percent_change(state.samples) == pytest.approx(45.0526, abs=1e-4)
    state, change = expire(CFG, state, 610.5)  # the samples at 0..10 leave
    assert len(state.samples) == MIN_SAMPLES
    assert percent_change(state.samples) > CFG.high
    assert change is None and not state.flapping
    # The next observation judges it.
    state, change = observe(CFG, state, True, 611.0)
    assert change == "started" and state.flapping


def test_round_trip_through_json() -> None:
    state, _ = feed(FlapState(), alternating(12, True), 0.5)
    assert state.flapping
    data = json.loads(json.dumps(state.to_dict()))
    assert FlapState.from_dict(data) == state
    assert FlapState.from_dict({}) == FlapState()


@pytest.mark.parametrize(
    "data",
    [{"samples": "x"}, {"samples": [[1.0]]}, {"samples": [[1.0, 1]]}, {"flapping": "yes"}],
)
def test_from_dict_refuses_malformed_state(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="flap state"):
        FlapState.from_dict(data)


# -- incremental counting ----------------------------------------------------------------------


def _reference_observe(state: FlapState, healthy: bool, now: float) -> FlapState:
    """observe as it was written before it counted incrementally: rebuild and re-weigh."""
    start = now - CFG.window
    samples = (*(s for s in state.samples if s[0] > start), (now, healthy))[-MAX_SAMPLES:]
    percent = percent_change(samples)
    enough = len(samples) >= MIN_SAMPLES
    if not state.flapping:
        return FlapState(samples, enough and percent >= CFG.high)
    return FlapState(samples, not (not enough or percent <= CFG.low))


@pytest.mark.parametrize("seed", range(20))
def test_incremental_counts_match_the_formula(seed: int) -> None:
    import random

    rng = random.Random(seed)
    state = reference = FlapState()
    now = 0.0
    for _ in range(400):
        # Mostly steady, sometimes flapping, sometimes a gap longer than the window.
        now += rng.choice([1.0, 1.0, 5.0, 30.0, CFG.window + 1.0])
        healthy = rng.random() < (0.5 if rng.random() < 0.3 else 0.95)
        state, _ = observe(CFG, state, healthy, now)
        reference = _reference_observe(reference, healthy, now)
        assert state == reference
        assert state.counted() == FlapState(state.samples).counted()
        places = len(state.samples) - 1
        assert percent_change(state.samples) == pytest.approx(
            0.0 if places < 1 else _percent_of(state), abs=1e-9
        )


def _percent_of(state: FlapState) -> float:
    from supervisor.core.flapping import _percent

    return _percent(len(state.samples) - 1, *state.counted())


def test_a_restored_state_counts_from_its_samples() -> None:
    state, _ = feed(FlapState(), alternating(15, True), 0.0)
    restored = FlapState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.changes == -1 and restored.counted() == state.counted()
    after, _ = observe(CFG, restored, True, 100.0)
    direct, _ = observe(CFG, state, True, 100.0)
    assert after == direct and after.counted() == direct.counted()
