"""The notes' sanity checks, run before spending compute on a search:

1. the initial loss with small weights and no regularization is the loss at chance
   (ln C for softmax, C - 1 for the SVM);
2. raising the regularization strength raises the loss;
3. a tiny subset (20 examples) can be overfit to 100% training accuracy with reg = 0.

The checks test the implementation and the architecture (hidden sizes, loss, init), not a
learning rate: the overfit check trains with a fixed recipe (Adam at 3e-3, which overfits
every architecture from one hidden layer of 10 to four of 200 on digits) because it runs
before any learning rate has been searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.config import TrainConfig
from core.data import Dataset
from core.model import FullyConnectedNet
from core.trainer import build_model, train

CHANCE_WEIGHT_SCALE = 1e-3  # "small parameters" for the chance-loss check
CHANCE_TOLERANCE = 0.02  # relative
CHANCE_EXAMPLES = 500
REG_LADDER = (0.0, 1e-3, 1e-1, 1e1)
TINY_SUBSET = 20
OVERFIT_EPOCHS = 200
OVERFIT_UPDATE = "adam"
OVERFIT_LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class SanityCheck:
    name: str
    passed: bool
    measured: str
    expected: str


def run_sanity_checks(data: Dataset, config: TrainConfig) -> list[SanityCheck]:
    return [
        check_chance_loss(data, config),
        check_reg_raises_loss(data, config),
        check_overfit_tiny_subset(data, config),
    ]


def check_chance_loss(data: Dataset, config: TrainConfig) -> SanityCheck:
    small = config.replace(weight_scale=CHANCE_WEIGHT_SCALE, reg=0.0, dropout=0.0)
    model = build_model(small, data)
    X, y = data.X_train[:CHANCE_EXAMPLES], data.y_train[:CHANCE_EXAMPLES]
    loss = model.loss(X, y)[0]
    c = data.num_classes
    expected = math.log(c) if config.loss == "softmax" else c - 1.0
    formula = f"ln({c})" if config.loss == "softmax" else f"{c} - 1"
    passed = abs(loss - expected) <= CHANCE_TOLERANCE * expected
    return SanityCheck(
        "initial loss at chance",
        passed,
        f"{loss:.6f}",
        f"{formula} = {expected:.6f} +/- {CHANCE_TOLERANCE:.0%}",
    )


def check_reg_raises_loss(data: Dataset, config: TrainConfig) -> SanityCheck:
    model = build_model(config.replace(dropout=0.0), data)
    X, y = data.X_train[:CHANCE_EXAMPLES], data.y_train[:CHANCE_EXAMPLES]
    losses = []
    for reg in REG_LADDER:
        model.reg = reg
        losses.append(model.loss(X, y)[0])
    passed = all(b > a for a, b in zip(losses, losses[1:], strict=False))
    ladder = ", ".join(f"{reg:g}: {loss:.4f}" for reg, loss in zip(REG_LADDER, losses, strict=True))
    return SanityCheck("loss rises with reg", passed, ladder, "strictly increasing")


def check_overfit_tiny_subset(data: Dataset, config: TrainConfig) -> SanityCheck:
    rows = np.arange(min(TINY_SUBSET, len(data.X_train)))
    tiny = Dataset(
        f"{data.name}[:{len(rows)}]",
        data.X_train[rows],
        data.y_train[rows],
        data.X_train[rows],
        data.y_train[rows],
        data.num_classes,
        data.mean_image,
        data.image_shape,
    )
    overfit = config.replace(
        reg=0.0,
        dropout=0.0,
        batch_size=len(rows),
        num_epochs=float(OVERFIT_EPOCHS),
        lr_decay=1.0,
        lr_schedule="step",
        update=OVERFIT_UPDATE,
        learning_rate=OVERFIT_LEARNING_RATE,
    )
    model: FullyConnectedNet = build_model(overfit, tiny)
    state = train(model, tiny, overfit)
    train_acc = model.accuracy(tiny.X_train, tiny.y_train)
    cost = state.history.loss[-1]
    return SanityCheck(
        f"overfit {len(rows)} examples",
        train_acc == 1.0,
        f"train acc {train_acc:.3f}, cost {cost:.4g} after {state.iteration} iterations "
        f"({state.status.value})",
        "train acc 1.000",
    )
