"""User trainers for the tests: the example (examples/twolayer), and ones that break the
contract in one way each."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.contract import Hyperparameter, Problem

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_DIR = EXAMPLES / "twolayer"
TORCH_DIR = EXAMPLES / "torch_cnn"
EXAMPLE = "twolayer=twolayer_trainer:TwoLayerTrainer"  # HPSEARCH_TRAINERS for it
TORCH_EXAMPLE = "digits-cnn=digits_cnn:DigitsCNN"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# The torch extra is optional (pip install -e ".[torch]"); CI installs it.
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the torch extra)")


def example_trainer(name: str = "twolayer") -> Any:
    """An example trainer's class, imported as a worker with its folder on its PYTHONPATH
    imports it: `twolayer` (examples/twolayer) or `digits-cnn` (examples/torch_cnn)."""
    folder, module, attribute = {
        "twolayer": (EXAMPLE_DIR, "twolayer_trainer", "TwoLayerTrainer"),
        "digits-cnn": (TORCH_DIR, "digits_cnn", "DigitsCNN"),
    }[name]
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return getattr(importlib.import_module(module), attribute)


class ScriptedTrainer:
    """Returns the costs of `hyperparameters["costs"]` in turn (then the last one), and
    uniform probabilities: for what the loop does with a trainer's answers."""

    version = "1"
    hyperparameters = {
        "costs": Hyperparameter("1.0", help="comma-separated costs, one per step"),
        "batch_size": Hyperparameter(50, low=1),
    }

    def __init__(self, hp: dict[str, Any], problem: Problem, seed: int) -> None:
        self.costs = [float(c) for c in hp["costs"].split(",")]
        self.batch_size = hp["batch_size"]
        self.classes = problem.num_classes
        self.steps = 0

    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> Any:
        cost = self.costs[min(self.steps, len(self.costs) - 1)]
        self.steps += 1
        return cost

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), self.classes), 1.0 / self.classes)

    def state(self) -> dict[str, np.ndarray]:
        return {"steps": np.array(self.steps)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.steps = int(arrays["steps"])


class TextCostTrainer(ScriptedTrainer):
    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> Any:
        return "low"


class WrongShapeTrainer(ScriptedTrainer):
    def probabilities(self, X: np.ndarray) -> np.ndarray:
        return np.zeros((len(X), self.classes + 1))


class FailingSetupTrainer(ScriptedTrainer):
    def __init__(self, hp: dict[str, Any], problem: Problem, seed: int) -> None:
        raise RuntimeError("no GPU found")


class ForgetfulTrainer(ScriptedTrainer):
    """Its state() leaves out what load_state needs: the state does not round-trip."""

    def state(self) -> dict[str, np.ndarray]:
        return {}


class PickledStateTrainer(ScriptedTrainer):
    def state(self) -> dict[str, np.ndarray]:
        return {"model": np.array([object()], dtype=object)}


def explodes_at_iteration_1() -> str:
    """ScriptedTrainer costs: the second step's cost is more than 3x the first's."""
    return ",".join(["2.0", str(2.0 * 3 + 0.1), *["1.0"] * 5])


NOT_FINITE = ",".join(["2.0", str(math.nan)])


class UnsavedRngTrainer(ScriptedTrainer):
    """Draws its costs from an RNG its state() leaves out: it resumes, but not exactly."""

    def __init__(self, hp: dict[str, Any], problem: Problem, seed: int) -> None:
        super().__init__(hp, problem, seed)
        self.rng = np.random.default_rng(seed)

    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> Any:
        self.steps += 1
        return 1.0 + 0.1 * self.rng.random()


class ScoresTrainer(ScriptedTrainer):
    """Returns class scores where probabilities are due."""

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        return np.ones((len(X), self.classes))
