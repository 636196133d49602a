"""The training loop: minibatch descent with the checks a babysitter would make.

`train(model, data, config)` runs until num_epochs are done, the cost explodes, or
should_stop() says so, and returns the TrainState: an exploding run is an outcome with
a status, not an exception. Given the same seed and dtype a run is bit-for-bit repeatable,
and a run resumed from any saved state ends exactly as the uninterrupted run does:
the batch order of each epoch comes from a generator seeded by (seed, epoch), and dropout
masks from one generator whose state is saved with the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from core.config import TrainConfig
from core.data import Dataset
from core.model import FullyConnectedNet, Params
from core.optim import RULE_HYPERPARAMETERS, UPDATE_RULES, UpdateRule
from core.schedules import lr_at
from core.state import Explosion, TrainState, TrainStatus

# Diagnostics that need a pass over every parameter are sampled, not computed every
# iteration: on small nets a full pass per iteration would cost more than the step.
RATIO_EVERY = 10  # iterations between update:weight ratio samples
AVERAGE_EVERY = 10  # iterations between running-average updates (decay compounded to match)
# Train accuracy is measured on this many evenly spread training examples.
TRAIN_ACC_SAMPLES = 1000
# Progress callbacks per epoch, at most.
PROGRESS_TICKS = 50

EpochCallback = Callable[[FullyConnectedNet, TrainState], None]
ProgressCallback = Callable[[int, int], None]


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    return max(1, num_train // min(batch_size, num_train))


def new_state(config: TrainConfig, model: FullyConnectedNet, num_train: int) -> TrainState:
    """The state of a run that has not started: fresh optimizer state, average = init params."""
    per_epoch = iterations_per_epoch(num_train, config.batch_size)
    rule_keys = RULE_HYPERPARAMETERS[config.update]
    hyper = {key: getattr(config, key) for key in rule_keys}
    return TrainState(
        config=config,
        iterations_per_epoch=per_epoch,
        total_iterations=max(1, round(config.num_epochs * per_epoch)),
        rng_state=dict(np.random.default_rng([config.seed, 1]).bit_generator.state),
        optim_configs={name: dict(hyper) for name in model.params},
        best_params=model.copy_params(),
        average_params={name: np.zeros_like(p) for name, p in model.params.items()},
        average_every=AVERAGE_EVERY,
        average_keep=config.average_decay**AVERAGE_EVERY,
    )


def build_model(config: TrainConfig, data: Dataset) -> FullyConnectedNet:
    """The model a run with this config starts from (weights drawn from the run's seed)."""
    rng = np.random.default_rng([config.seed, 0])
    return FullyConnectedNet.from_config(config, data.input_dim, data.num_classes, rng)


def _batch_order(seed: int, epoch_index: int, num_train: int) -> np.ndarray:
    return np.random.default_rng([seed, 2, epoch_index]).permutation(num_train)


def train(
    model: FullyConnectedNet,
    data: Dataset,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainState:
    """Train `model` in place; pass the `state` of an earlier run (and its model) to resume it.

    should_stop is polled after every iteration; on_epoch_end(model, state) runs after each
    epoch's metrics are recorded (and after a final partial epoch); on_progress(i, n) reports
    iteration i of n within the epoch, at most PROGRESS_TICKS times per epoch.
    """
    if state is None:
        state = new_state(config, model, len(data.X_train))
    if state.status is not TrainStatus.RUNNING:
        return state
    X, y = data.X_train, data.y_train
    per_epoch, total = state.iterations_per_epoch, state.total_iterations
    batch = min(config.batch_size, len(X))
    rng = np.random.default_rng()
    if state.rng_state is not None:
        rng.bit_generator.state = state.rng_state
    rule = UPDATE_RULES[config.update]
    params, configs, history = model.params, state.optim_configs, state.history
    threshold = (
        math.inf if state.initial_cost is None else config.explode_factor * state.initial_cost
    )
    ratio_sums: dict[str, float] = {}
    ratio_counts: dict[str, int] = {}
    progress_every = max(1, per_epoch // PROGRESS_TICKS)
    epoch_costs: list[float] = []
    start = state.iteration
    order = _batch_order(config.seed, start // per_epoch, len(X))

    for it in range(start, total):
        position = it % per_epoch
        if position == 0 and it != start:
            order = _batch_order(config.seed, it // per_epoch, len(X))
        rows = order[position * batch : (position + 1) * batch]
        lr = lr_at(it / per_epoch, config)
        for optim_config in configs.values():
            optim_config["learning_rate"] = lr

        cost, grads = model.loss(X[rows], y[rows], rng)
        history.loss.append(cost)
        if state.initial_cost is None:
            state.initial_cost = cost
            threshold = config.explode_factor * cost
        if not cost <= threshold:  # also true for NaN
            state.status = TrainStatus.EXPLODED
            state.explosion = Explosion(it, cost, state.initial_cost)
            break
        epoch_costs.append(cost)

        if it % RATIO_EVERY == 0:
            _update_with_ratios(params, grads, configs, rule, ratio_sums, ratio_counts)
        else:
            for name, w in params.items():
                rule(w, grads[name], configs[name])
        state.iteration = it + 1
        if state.iteration % state.average_every == 0:
            _update_average(state.average_params, params, state.average_keep)

        at_epoch_end = state.iteration % per_epoch == 0 or state.iteration == total
        if at_epoch_end:
            if state.iteration == total:
                state.status = TrainStatus.FINISHED
            _record_epoch(model, data, state, lr, epoch_costs, ratio_sums, ratio_counts)
            epoch_costs, ratio_sums, ratio_counts = [], {}, {}
            state.rng_state = dict(rng.bit_generator.state)
            if on_epoch_end is not None:
                on_epoch_end(model, state)
        elif on_progress is not None and (position + 1) % progress_every == 0:
            on_progress(position + 1, per_epoch)
        if should_stop is not None and should_stop() and state.status is TrainStatus.RUNNING:
            state.status = TrainStatus.STOPPED
            break

    state.rng_state = dict(rng.bit_generator.state)
    return state


def _update_with_ratios(
    params: Params,
    grads: Params,
    configs: dict[str, dict[str, Any]],
    rule: UpdateRule,
    ratio_sums: dict[str, float],
    ratio_counts: dict[str, int],
) -> None:
    for name, w in params.items():
        before = w.copy()
        rule(w, grads[name], configs[name])
        weight_norm = float(np.linalg.norm(before))
        if weight_norm > 0:  # biases start at zero: no ratio until they move
            before -= w
            ratio_sums[name] = (
                ratio_sums.get(name, 0.0) + float(np.linalg.norm(before)) / weight_norm
            )
            ratio_counts[name] = ratio_counts.get(name, 0) + 1


def _update_average(average: Params, params: Params, keep: float) -> None:
    for name, w in params.items():
        avg = average[name]
        avg *= avg.dtype.type(keep)
        avg += avg.dtype.type(1 - keep) * w


def _record_epoch(
    model: FullyConnectedNet,
    data: Dataset,
    state: TrainState,
    lr: float,
    epoch_costs: list[float],
    ratio_sums: dict[str, float],
    ratio_counts: dict[str, int],
) -> None:
    history = state.history
    spread = np.linspace(0, len(data.X_train) - 1, min(TRAIN_ACC_SAMPLES, len(data.X_train)))
    sample = spread.astype(np.int64)
    train_acc = model.accuracy(data.X_train[sample], data.y_train[sample])
    val_acc = model.accuracy(data.X_val, data.y_val)
    average = state.running_average(model.params)
    average_val_acc = model.accuracy(data.X_val, data.y_val, params=average)
    history.epoch.append(state.epoch)
    history.cost.append(float(np.mean(epoch_costs)) if epoch_costs else float("nan"))
    history.train_acc.append(train_acc)
    history.val_acc.append(val_acc)
    history.average_val_acc.append(average_val_acc)
    history.lr.append(lr)
    for name in model.params:
        count = ratio_counts.get(name, 0)
        ratio = ratio_sums[name] / count if count else float("nan")
        history.update_ratio.setdefault(name, []).append(ratio)
    if val_acc > state.best_val_acc:
        state.best_val_acc = val_acc
        state.best_epoch = state.epoch
        state.best_params = model.copy_params()
