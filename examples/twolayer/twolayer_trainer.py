"""TwoLayerNet (twolayer_net.py) as an hpsearch trainer: the whole of the user's glue code.

Registered by this folder's pyproject.toml (`pip install -e examples/twolayer`) under the
name `twolayer`, or without installing: HPSEARCH_TRAINERS=twolayer=twolayer_trainer:TwoLayerTrainer
with this folder on the worker's PYTHONPATH.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from twolayer_net import TwoLayerNet

from core.contract import Hyperparameter, Problem


class TwoLayerTrainer:
    version = "1"
    hyperparameters = {
        "learning_rate": Hyperparameter(1e-3, low=0.0),
        "reg": Hyperparameter(1e-4, low=0.0),
        "hidden_size": Hyperparameter(100, low=1, high=4096),
        "update": Hyperparameter("adam", choices=("sgd", "adam")),
        "lr_decay": Hyperparameter(0.95, low=0.0, high=1.0),
        "batch_size": Hyperparameter(100, low=1),
    }

    def __init__(self, hp: dict[str, Any], problem: Problem, seed: int) -> None:
        self.hp, self.batch_size, self.t = hp, hp["batch_size"], 0
        std = math.sqrt(2.0 / problem.input_dim)  # He initialization
        rng = np.random.default_rng(seed)
        self.net = TwoLayerNet(problem.input_dim, hp["hidden_size"], problem.num_classes, rng, std)
        self.m = {k: np.zeros_like(w) for k, w in self.net.params.items()}
        self.v = {k: np.zeros_like(w) for k, w in self.net.params.items()}

    def learning_rate(self, epoch: float) -> float:
        return float(self.hp["learning_rate"] * self.hp["lr_decay"] ** math.floor(epoch))

    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> float:
        loss, grads = self.net.loss(X, y, reg=self.hp["reg"])
        lr, self.t = self.learning_rate(epoch), self.t + 1
        for k, w in self.net.params.items():
            if self.hp["update"] == "sgd":
                w -= lr * grads[k]
                continue
            self.m[k] = 0.9 * self.m[k] + 0.1 * grads[k]
            self.v[k] = 0.999 * self.v[k] + 0.001 * grads[k] ** 2
            m_hat, v_hat = self.m[k] / (1 - 0.9**self.t), self.v[k] / (1 - 0.999**self.t)
            w -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return loss

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        scores = self.net.loss(X)
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def first_layer_weights(self) -> np.ndarray:  # optional: the dashboard draws them
        return self.net.params["W1"]

    def hidden_activations(self, X: np.ndarray) -> list[np.ndarray]:  # optional, likewise
        return [np.maximum(0, X @ self.net.params["W1"] + self.net.params["b1"])]

    def state(self) -> dict[str, np.ndarray]:
        arrays = {f"params/{k}": w for k, w in self.net.params.items()}
        arrays.update({f"m/{k}": m for k, m in self.m.items()})
        arrays.update({f"v/{k}": v for k, v in self.v.items()})
        return {**arrays, "t": np.array(self.t)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in self.net.params:
            self.net.params[k] = arrays[f"params/{k}"].copy()
            self.m[k], self.v[k] = arrays[f"m/{k}"].copy(), arrays[f"v/{k}"].copy()
        self.t = int(arrays["t"])
