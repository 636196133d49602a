"""Sweep specs and stage results for master tests."""

from __future__ import annotations

import copy
from typing import Any

from master.models import TrialStatus
from master.planning import TrialResult

EXAMPLE_SPEC: dict[str, Any] = {
    "name": "digits-lr-reg",
    "dataset": "digits",
    "model": {"hidden_sizes": [100], "loss": "softmax"},
    "fixed": {"update": "momentum", "momentum": 0.9, "batch_size": 100, "lr_decay": 0.95},
    "space": {
        "learning_rate": {"dist": "loguniform", "low": 1e-6, "high": 10},
        "reg": {"dist": "loguniform", "low": 1e-5, "high": 1e5},
        "dropout": {"dist": "uniform", "low": 0.0, "high": 0.5},
        "update": {"dist": "choice", "values": ["momentum", "nesterov", "adam"]},
    },
    "stages": [
        {"trials": 60, "epochs": 1},
        {"trials": 30, "epochs": 5, "keep_top": 10},
        {"trials": 8, "epochs": 20, "keep_top": 5},
    ],
    "explode_factor": 3.0,
    "seed": 0,
}


def example_spec(**changes: Any) -> dict[str, Any]:
    """The issue's example sweep (a deep copy), with top-level changes."""
    spec = copy.deepcopy(EXAMPLE_SPEC)
    spec.update(changes)
    return spec


def result(
    val_acc: float | None, status: str = "finished", epochs: float = 1.0, **hyperparameters: Any
) -> TrialResult:
    return TrialResult(hyperparameters, TrialStatus(status), val_acc, epochs)
