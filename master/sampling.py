"""Drawing the trials of a stage, reproducible from the sweep's seed.

"random" draws each hyperparameter independently (the notes' random search); "sobol" draws
the points of a scrambled Sobol sequence, which cover the space more evenly than random
points do: no two trials crowd together while a region stays empty, which matters most in
a first stage of a few dozen trials over several hyperparameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from master.space import Choice, NumericRange


def stage_rng(sweep_seed: int, stage_index: int) -> np.random.Generator:
    """The generator a stage's trials are drawn from: the same seed gives the same trials."""
    return np.random.default_rng([sweep_seed, stage_index])


def trial_seed(sweep_seed: int, stage_index: int, trial_index: int) -> int:
    """The training seed (weights, batches, dropout) of one trial, distinct for every trial."""
    return int(np.random.SeedSequence([sweep_seed, stage_index, trial_index]).generate_state(1)[0])


Sampler = Literal["random", "sobol"]


def sample_trials(
    space: Mapping[str, NumericRange | Choice],
    base: Mapping[str, Any],
    count: int,
    rng: np.random.Generator,
    sampler: Sampler = "random",
) -> list[dict[str, Any]]:
    """`count` trials' hyperparameters: `base` with one value from each distribution in
    `space` (drawn in the order the space lists them)."""
    if count == 0 or not space:
        return [dict(base) for _ in range(count)]
    if sampler == "sobol":
        points = _sobol(len(space), count, rng)
        columns = {name: d.from_unit(points[:, j]) for j, (name, d) in enumerate(space.items())}
    else:
        columns = {name: dist.sample(rng, count) for name, dist in space.items()}
    return [{**base, **{name: column[i] for name, column in columns.items()}} for i in range(count)]


def _sobol(dimensions: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """The first `count` points of a scrambled Sobol sequence. Its balance properties hold
    exactly for powers of two; a prefix of another length still covers the space more
    evenly than random points (scipy warns about the former, which is expected here)."""
    from scipy.stats import qmc  # 0.7 s to import: only for the sweeps that use it

    sequence = qmc.Sobol(d=dimensions, scramble=True, seed=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return sequence.random(count)
