"""Distributions and stage sampling: the notes' log scale, inclusive integers, reproducibility."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from master.sampling import sample_trials, stage_rng, trial_seed
from master.space import (
    Choice,
    Distribution,
    IntRange,
    LogIntRange,
    LogUniform,
    Space,
    Uniform,
)

DIST: TypeAdapter[Any] = TypeAdapter(Distribution)


def test_loguniform_spreads_evenly_over_the_decades() -> None:
    values = LogUniform(low=1e-6, high=10).sample(np.random.default_rng(0), 70_000)
    decades = np.floor(np.log10(values)).astype(int)
    counts = np.bincount(decades + 6, minlength=7)
    assert counts.min() > 9_000 and counts.max() < 11_000  # ~10_000 in each of 7 decades
    assert min(values) >= 1e-6 and max(values) < 10


def test_uniform_int_and_logint_ranges() -> None:
    rng = np.random.default_rng(1)
    uniform = Uniform(low=0.0, high=0.5).sample(rng, 10_000)
    assert 0.0 <= min(uniform) and max(uniform) < 0.5 and abs(np.mean(uniform) - 0.25) < 0.01
    ints = IntRange(low=1, high=4).sample(rng, 4_000)
    assert set(ints) == {1, 2, 3, 4} and all(isinstance(v, int) for v in ints)
    logints = LogIntRange(low=1, high=1000).sample(rng, 4_000)
    assert 1 <= min(logints) and max(logints) <= 1000
    assert 0.2 < np.mean(np.array(logints) < 10) < 0.45  # about a third below 10, as log spreads


def test_the_discriminated_union_parses_each_kind() -> None:
    kinds = {
        "loguniform": LogUniform,
        "uniform": Uniform,
        "int": IntRange,
        "logint": LogIntRange,
    }
    for tag, kind in kinds.items():
        assert isinstance(DIST.validate_python({"dist": tag, "low": 1, "high": 5}), kind)
    choice = DIST.validate_python({"dist": "choice", "values": ["adam", 0.5, True]})
    assert isinstance(choice, Choice) and choice.values == ["adam", 0.5, True]


def test_scale_round_trip() -> None:
    dist = LogUniform(low=1e-3, high=1e3)
    assert dist.to_scale(1e-3) == pytest.approx(-3)
    assert dist.from_scale(dist.to_scale(0.37)) == pytest.approx(0.37)
    assert Uniform(low=0, high=1).to_scale(0.3) == 0.3


def test_sample_trials_is_reproducible_and_overrides_the_base() -> None:
    space: Space = {
        "learning_rate": LogUniform(low=1e-6, high=10),
        "update": Choice(values=["momentum", "adam"]),
    }
    base = {"update": "sgd", "momentum": 0.9}
    first = sample_trials(space, base, 20, stage_rng(7, 0))
    again = sample_trials(space, base, 20, stage_rng(7, 0))
    other_stage = sample_trials(space, base, 20, stage_rng(7, 1))
    assert first == again and first != other_stage
    assert {t["update"] for t in first} == {"momentum", "adam"}
    assert all(t["momentum"] == 0.9 and math.isfinite(t["learning_rate"]) for t in first)


def test_trial_seeds_are_distinct_and_stable() -> None:
    seeds = {trial_seed(0, stage, i) for stage in range(3) for i in range(1000)}
    assert len(seeds) == 3000
    assert trial_seed(0, 1, 5) == trial_seed(0, 1, 5) and trial_seed(0, 1, 5) >= 0


SOBOL_SPACE: Space = {
    "learning_rate": LogUniform(low=1e-5, high=1e-1),
    "dropout": Uniform(low=0.0, high=0.7),
    "batch_size": IntRange(low=16, high=256),
    "update": Choice(values=["adam", "momentum", "rmsprop"]),
}


def test_sobol_draws_are_reproducible_by_seed_and_stay_in_range() -> None:
    def draw(seed: int) -> list[dict[str, Any]]:
        return sample_trials(SOBOL_SPACE, {"reg": 1e-4}, 40, stage_rng(seed, 0), "sobol")

    first = draw(3)
    assert first == draw(3) and first != draw(4)
    for trial in first:
        assert trial["reg"] == 1e-4
        assert 1e-5 <= trial["learning_rate"] <= 1e-1 and 0 <= trial["dropout"] <= 0.7
        assert isinstance(trial["batch_size"], int) and 16 <= trial["batch_size"] <= 256
    assert {t["update"] for t in first} == {"adam", "momentum", "rmsprop"}


def test_sobol_covers_the_space_more_evenly_than_random_draws() -> None:
    from scipy.stats import qmc

    space: Space = {"a": Uniform(low=0.0, high=1.0), "b": Uniform(low=0.0, high=1.0)}

    def discrepancy(sampler: Any, seed: int) -> float:
        drawn = sample_trials(space, {}, 64, stage_rng(seed, 0), sampler)
        return float(qmc.discrepancy(np.array([[t["a"], t["b"]] for t in drawn])))

    sobol = [discrepancy("sobol", seed) for seed in range(10)]
    random = [discrepancy("random", seed) for seed in range(10)]
    assert max(sobol) < min(random)  # every seed: the centred L2 discrepancy is lower
