"""What a training run has done so far: enough to report on it and to resume it exactly.

The model's own parameters live in the model; everything else the trainer needs to continue
(iteration, optimizer state, RNG state, the epoch's batch order, history, best and averaged
parameters) lives here. Parameter-shaped arrays are flat, laid out like `model.flat`;
`model.views(array)` names their parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from core.config import TrainConfig


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

    def to_json(self) -> dict[str, float | None]:
        """As JSON holds it, which has no NaN or infinity: a cost of inf (the usual
        explosion) is None."""
        values = {"cost": self.cost, "initial_cost": self.initial_cost, "ratio": self.ratio}
        finite = {k: float(v) if math.isfinite(v) else None for k, v in values.items()}
        return {"iteration": self.iteration, **finite}


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
    # Per hidden layer (core.distributions): shares of its ReLU outputs in fixed bins, the
    # share of its units that never fired, and per weight matrix its mean gradient norm.
    activations: dict[str, list[list[float]]] = field(default_factory=dict)
    dead_units: dict[str, list[float]] = field(default_factory=dict)
    grad_norm: dict[str, list[float]] = field(default_factory=dict)

    def end_epoch(
        self,
        iteration: int,
        per_epoch: int,
        train_acc: float,
        val_acc: float,
        average_val_acc: float,
        lr: float,
    ) -> None:
        """Record an epoch that ended at `iteration`: its metrics, and the mean cost of its
        iterations (those since the last end)."""
        previous_end = round(self.epoch[-1] * per_epoch) if self.epoch else 0
        epoch_costs = self.loss[previous_end:iteration]
        self.epoch.append(iteration / per_epoch)
        self.cost.append(sum(epoch_costs) / len(epoch_costs))
        self.train_acc.append(train_acc)
        self.val_acc.append(val_acc)
        self.average_val_acc.append(average_val_acc)
        self.lr.append(lr)

    def add_layers(self, shares: dict[str, list[float]], dead: dict[str, float]) -> None:
        """An epoch's per-layer statistics (core.distributions.layer_statistics)."""
        for name, layer_shares in shares.items():
            self.activations.setdefault(name, []).append(layer_shares)
            self.dead_units.setdefault(name, []).append(dead[name])

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
            "activations": self.activations,
            "dead_units": self.dead_units,
            "grad_norm": self.grad_norm,
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
    rng_state: dict[str, Any] | None = None  # Generator.bit_generator.state: batches, dropout
    order: np.ndarray | None = None  # the batch order of an epoch under way; None between epochs
    optim_config: dict[str, Any] = field(default_factory=dict)  # one update rule's config
    history: History = field(default_factory=History)
    best_val_acc: float = -1.0
    best_epoch: float = 0.0
    best_flat: np.ndarray | None = None
    # Zero-started exponential moving sum of the parameters, updated every `average_every`
    # iterations by keeping `average_keep` of it; running_average() removes the start's bias.
    average_flat: np.ndarray | None = None
    average_every: int = 10
    average_keep: float = 0.9

    @property
    def epoch(self) -> float:
        """Epochs completed, fractional within an epoch."""
        return self.iteration / self.iterations_per_epoch

    def running_average(self, current: np.ndarray) -> np.ndarray:
        """The notes' running average of the parameters, bias-corrected as in Adam, so that
        early in a run it is the average of the weights seen so far, not of zeros;
        `current` (the model's flat parameters) stands in before the first update."""
        updates = self.iteration // self.average_every
        if updates == 0 or self.average_flat is None:
            return current
        scale = 1.0 / (1.0 - self.average_keep**updates)
        return self.average_flat * self.average_flat.dtype.type(scale)
