"""A small PyTorch CNN on the digits as 8x8 images, as an hpsearch trainer (CPU).

Registered by this folder's pyproject.toml (`pip install -e examples/torch_cnn`, after
`pip install -e ".[torch]" -c constraints.txt`) under the name `digits-cnn`.

Exact resume: the weights are drawn and dropout masks made by a torch.Generator of the
trainer's own, seeded from the run's seed and saved with its state, as are the weights and
Adam's moments; one thread and deterministic algorithms make a step a function of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from core.contract import Hyperparameter, Problem

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # a sum in another order is another float: resume would drift


class DigitsCNN:
    version = "1"
    hyperparameters = {
        "learning_rate": Hyperparameter(1e-3, low=0.0),
        "weight_decay": Hyperparameter(1e-4, low=0.0),
        "dropout": Hyperparameter(0.25, low=0.0, high=0.9),
        "channels": Hyperparameter(16, low=1, high=256),
        "lr_decay": Hyperparameter(0.95, low=0.0, high=1.0),
        "batch_size": Hyperparameter(64, low=1),
    }

    def __init__(self, hp: dict[str, Any], problem: Problem, seed: int) -> None:
        if problem.image_shape is None or len(problem.image_shape) != 2:
            raise ValueError(f"needs 2-d images, got image_shape {problem.image_shape}")
        self.hp, self.batch_size = hp, hp["batch_size"]
        self.shape = (1, *problem.image_shape)
        self.rng = torch.Generator().manual_seed(seed)
        c = hp["channels"]
        height, width = (size // 4 for size in problem.image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * c * height * width, problem.num_classes),
        )  # fmt: skip
        with torch.no_grad():  # He initialization from the trainer's own generator
            for module in self.net:
                if isinstance(module, nn.Conv2d | nn.Linear):
                    fan_in = module.weight[0].numel()
                    module.weight.normal_(0, math.sqrt(2 / fan_in), generator=self.rng)
                    module.bias.zero_()
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"]
        )

    def images(self, X: np.ndarray) -> torch.Tensor:  # a copy: the worker's X is read-only
        return torch.from_numpy(np.array(X, dtype=np.float32)).view(-1, *self.shape)

    def learning_rate(self, epoch: float) -> float:
        return float(self.hp["learning_rate"] * self.hp["lr_decay"] ** math.floor(epoch))

    def _logits(self, X: torch.Tensor, train: bool) -> torch.Tensor:
        features = self.net[:-1](X)
        if train and self.hp["dropout"] > 0:  # masks from our own generator
            keep = 1 - self.hp["dropout"]
            mask = torch.rand(features.shape, generator=self.rng) < keep
            features = features * mask / keep
        return self.net[-1](features)

    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(epoch)
        self.net.train()
        loss = nn.functional.cross_entropy(self._logits(self.images(X), True), torch.from_numpy(y))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def probabilities(self, X: np.ndarray) -> np.ndarray:
        self.net.eval()
        return torch.softmax(self._logits(self.images(X), False), dim=1).numpy()

    def state(self) -> dict[str, np.ndarray]:
        arrays = {f"net/{k}": v.detach().numpy() for k, v in self.net.state_dict().items()}
        for index, moments in self.optimizer.state_dict()["state"].items():
            arrays.update({f"adam/{index}/{k}": v.numpy() for k, v in moments.items()})
        arrays["rng"] = self.rng.get_state().numpy()
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        own = {k: torch.from_numpy(np.array(arrays[f"net/{k}"])) for k in self.net.state_dict()}
        self.net.load_state_dict(own)
        saved = self.optimizer.state_dict()
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in arrays.items():
            if key.startswith("adam/"):
                _, index, name = key.split("/")
                moments.setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
        self.optimizer.load_state_dict({"state": moments, "param_groups": saved["param_groups"]})
        self.rng.set_state(torch.from_numpy(np.array(arrays["rng"])))
