"""What benchmarks/search.py searches, the same for every method: the datasets, the model and
its search space, and what one search's outcome records.

The datasets are generated (no network) and not saturated: over the space below, different
hyperparameters reach clearly different validation accuracies, so a better search shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_EPOCHS = 80  # the most one trial trains, in every method
EXPLODE_FACTOR = 3.0  # hpsearch's default, given to Optuna's runs too
MODEL: dict[str, Any] = {"hidden_sizes": [256, 256], "loss": "softmax"}
# The step schedule decays per epoch whatever a trial's num_epochs: a trial's first E epochs
# are the same whether it is budgeted E or 80, which promotion (hpsearch) and pruning
# (Hyperband) assume when they judge a trial by its early epochs.
FIXED: dict[str, Any] = {
    "update": "adam",
    "batch_size": 100,
    "lr_schedule": "step",
    "lr_decay": 0.95,
}
# Wide on purpose: most of it trains badly (lr 0.1 explodes, 1e-5 barely moves, reg 1 or
# dropout 0.7 underfits), so a search has to find the good region.
SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"dist": "loguniform", "low": 1e-5, "high": 1e-1},
    "reg": {"dist": "loguniform", "low": 1e-7, "high": 1.0},
    "dropout": {"dist": "uniform", "low": 0.0, "high": 0.7},
}
NUM_TRAIN = 4500  # of 6000 examples; the other 1500 are the validation split


@dataclass(frozen=True)
class Outcome:
    """One search of one method on one dataset for one seed."""

    best_val_acc: float  # over every epoch of every trial, pruned or killed ones included
    wall_seconds: float
    cpu_seconds: float  # of every process the search ran in
    epochs: float  # trained (a promoted trial's inherited epochs are not counted again)
    utilization: float  # busy worker-seconds / (workers x wall)


def classification(directory: Path) -> str:
    """10 classes of 2 clusters each in 40 features (20 informative, 10 redundant), 3% of the
    labels flipped. Measured: the searches find 0.70-0.83; one run at learning_rate 1e-4
    reaches 0.49 in 20 epochs, at 1e-3 (reg 1e-4, dropout 0.2) 0.70."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=6000, n_features=40, n_informative=20, n_redundant=10, n_classes=10,
        n_clusters_per_class=2, class_sep=1.0, flip_y=0.03, random_state=0,
    )  # fmt: skip
    return write_npz(directory / "classification.npz", X, y)


def shells(directory: Path) -> str:
    """6 classes as concentric shells of an 8-dimensional Gaussian (make_gaussian_quantiles),
    beside 24 features of pure noise. Measured: the searches find 0.73-0.84, and learning
    curves cross: at 10 epochs, runs that reach 0.38 and 0.73 by epoch 60 both stand near
    0.30, so judging a trial early can mislead."""
    from sklearn.datasets import make_gaussian_quantiles

    X, y = make_gaussian_quantiles(n_samples=6000, n_features=8, n_classes=6, random_state=0)
    noise = np.random.default_rng(0).standard_normal((len(X), 24))
    return write_npz(directory / "shells.npz", np.hstack([X, noise]), y)


def digits(directory: Path) -> str:
    """The bundled digits: saturated (every decent run is near 0.97), a quick smoke row."""
    return "digits"


DATASETS: dict[str, Callable[[Path], str]] = {
    "classification": classification,
    "shells": shells,
    "digits": digits,
}
DEFAULT_DATASETS = ("classification", "shells")


def write_npz(path: Path, X: np.ndarray, y: np.ndarray) -> str:
    """The first NUM_TRAIN examples to train on, the rest to validate on (the generators have
    shuffled them), as the dataset spec that names the file."""
    np.savez(
        path,
        X_train=X[:NUM_TRAIN].astype(np.float32),
        y_train=y[:NUM_TRAIN],
        X_val=X[NUM_TRAIN:].astype(np.float32),
        y_val=y[NUM_TRAIN:],
    )
    return f"npz:{path.resolve()}"
