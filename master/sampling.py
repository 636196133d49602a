"""Drawing the trials of a stage: random search, reproducible from the sweep's seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from master.space import Choice, NumericRange


def stage_rng(sweep_seed: int, stage_index: int) -> np.random.Generator:
    """The generator a stage's trials are drawn from: the same seed gives the same trials."""
    return np.random.default_rng([sweep_seed, stage_index])


def trial_seed(sweep_seed: int, stage_index: int, trial_index: int) -> int:
    """The training seed (weights, batches, dropout) of one trial, distinct for every trial."""
    return int(np.random.SeedSequence([sweep_seed, stage_index, trial_index]).generate_state(1)[0])


def sample_trials(
    space: Mapping[str, NumericRange | Choice],
    base: Mapping[str, Any],
    count: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """`count` trials' hyperparameters: `base` with one draw from each distribution in `space`
    (drawn in the order the space lists them)."""
    columns = {name: dist.sample(rng, count) for name, dist in space.items()}
    return [{**base, **{name: column[i] for name, column in columns.items()}} for i in range(count)]
