"""What a training run has done so far: enough to report on it and to resume it exactly.

The model's own parameters live in the model; everything else the trainer needs to continue
(iteration, optimizer state, RNG state, history, best and averaged parameters) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from core.config import TrainConfig

Params = dict[str, np.ndarray]


class TrainStatus(StrEnum):
    """How a run stands; every value but RUNNING is final."""

    RUNNING = "running"  # a checkpoint written between epochs
    FINISHED = "finished"  # trained for num_epochs
    EXPLODED = "exploded"  # cost went non-finite or above explode_factor x the first cost
    STOPPED = "stopped"  # should_stop() asked it to end early


@dataclass
class Explosion:
    iteration: int
    cost: float
    initial_cost: float

    @property
    def ratio(self) -> float:
        return self.cost / self.initial_cost if self.initial_cost else float("inf")


@dataclass
class History:
    """Costs per iteration and metrics per epoch end (one entry per list per epoch end)."""

    loss: list[float] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)  # 1.0, 2.0, ... (fractional at a partial end)
    cost: list[float] = field(default_factory=list)  # mean minibatch cost over the epoch
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    average_val_acc: list[float] = field(default_factory=list)  # of the running-average params
    lr: list[float] = field(default_factory=list)
    # ||update|| / ||w|| per parameter, averaged over the epoch's samples (the notes want ~1e-3).
    update_ratio: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "epoch": self.epoch,
            "cost": self.cost,
            "train_acc": self.train_acc,
            "val_acc": self.val_acc,
            "average_val_acc": self.average_val_acc,
            "lr": self.lr,
            "update_ratio": self.update_ratio,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(**data)


@dataclass
class TrainState:
    config: TrainConfig
    iterations_per_epoch: int
    total_iterations: int
    iteration: int = 0  # iterations completed
    status: TrainStatus = TrainStatus.RUNNING
    initial_cost: float | None = None
    explosion: Explosion | None = None
    rng_state: dict[str, Any] | None = None  # Generator.bit_generator.state of the dropout stream
    optim_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: History = field(default_factory=History)
    best_val_acc: float = -1.0
    best_epoch: float = 0.0
    best_params: Params = field(default_factory=dict)
    # Zero-started exponential moving sum of the parameters, updated every `average_every`
    # iterations by keeping `average_keep` of it; running_average() removes the start's bias.
    average_params: Params = field(default_factory=dict)
    average_every: int = 10
    average_keep: float = 0.9

    def running_average(self, current: Params) -> Params:
        """The notes' running average of the parameters, bias-corrected as in Adam, so that
        early in a run it is the average of the weights seen so far, not of zeros;
        `current` stands in before the first update."""
        updates = self.iteration // self.average_every
        if updates == 0:
            return current
        scale = 1.0 / (1.0 - self.average_keep**updates)
        return {name: avg * avg.dtype.type(scale) for name, avg in self.average_params.items()}

    @property
    def epoch(self) -> float:
        """Epochs completed, fractional within an epoch."""
        return self.iteration / self.iterations_per_epoch

    @property
    def val_acc(self) -> float | None:
        """Validation accuracy at the last epoch end, if there was one."""
        return self.history.val_acc[-1] if self.history.val_acc else None
