"""The training loop: minibatch descent with the checks a babysitter would make.

`train(model, data, config)` runs until num_epochs are done, the cost explodes, or
should_stop() says so, and returns the TrainState: an exploding run is an outcome with
a status, not an exception. Given the same seed and dtype a run is bit-for-bit repeatable,
and a run resumed from any saved state (between epochs or within one) ends exactly as the
uninterrupted run does: one generator draws each epoch's batch order and the dropout masks,
and its state and the order of the epoch under way are saved with the run.

The update rule, the running average and the best-parameter copy each act on the model's one
flat parameter array (see core.model), so they cost one NumPy call per step, not one per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from core.config import TrainConfig
from core.data import Dataset
from core.distributions import layer_statistics
from core.model import FullyConnectedNet
from core.optim import RULE_HYPERPARAMETERS, UPDATE_RULES, UpdateRule
from core.schedules import lr_at
from core.state import Explosion, TrainState, TrainStatus

# Diagnostics that need a pass over every parameter are sampled, not computed every
# iteration: on small nets a full pass per iteration costs a large share of the step.
RATIO_EVERY = 10  # iterations between update:weight ratio samples (and >= 1 per epoch)
AVERAGE_EVERY = 10  # iterations between running-average updates (decay compounded to match)
# Train accuracy is measured on this many evenly spread training examples.
TRAIN_ACC_SAMPLES = 1000
# Progress callbacks per epoch, at most.
PROGRESS_TICKS = 50
# Values this many times the smallest normal number or less are set to zero (flush_subnormals).
FLUSH_BELOW = 2.0**24

EpochCallback = Callable[[FullyConnectedNet, TrainState], None]
ProgressCallback = Callable[[int, int], None]


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    return max(1, num_train // min(batch_size, num_train))


def new_state(config: TrainConfig, model: FullyConnectedNet, num_train: int) -> TrainState:
    """The state of a run that has not started."""
    per_epoch = iterations_per_epoch(num_train, config.batch_size)
    return TrainState(
        config=config,
        iterations_per_epoch=per_epoch,
        total_iterations=max(1, round(config.num_epochs * per_epoch)),
        rng_state=dict(np.random.default_rng([config.seed, 1]).bit_generator.state),
        optim_config={key: getattr(config, key) for key in RULE_HYPERPARAMETERS[config.update]},
        best_flat=model.flat.copy(),
        average_flat=np.zeros_like(model.flat),
        average_every=AVERAGE_EVERY,
        average_keep=config.average_decay**AVERAGE_EVERY,
    )


class ContinuationError(ValueError):
    """A saved run cannot be continued under the given config; the message says why."""


def continue_to(state: TrainState, config: TrainConfig) -> TrainState:
    """`state`, made to go on to `config.num_epochs` (a run promoted to a longer budget).

    Exact: schedules are functions of the epoch and the generator's state is saved, so the
    continued run ends bit for bit as a run trained for the longer budget from the start,
    provided the saved run ended at an epoch boundary (a fractional end starts the rest of
    that epoch on a new batch order). Only num_epochs may differ from the saved config."""
    if state.config.replace(num_epochs=config.num_epochs) != config:
        raise ContinuationError("the checkpoint was trained with other hyperparameters")
    extend_run(state, config.num_epochs)
    state.config = config
    return state


class Extendable(Protocol):
    """What extend_run reads and sets: a TrainState, or core.run's RunState."""

    status: TrainStatus
    iteration: int
    iterations_per_epoch: int
    total_iterations: int


def extend_run(state: Extendable, num_epochs: float) -> None:
    """Make a saved run go on to `num_epochs` in all (its total iterations and status);
    ContinuationError says why it cannot. Shared by core.run for a user trainer's runs."""
    per_epoch, iteration = state.iterations_per_epoch, state.iteration
    epoch = iteration / per_epoch
    if state.status not in (TrainStatus.RUNNING, TrainStatus.FINISHED):
        raise ContinuationError(f"the checkpoint's run ended {state.status.value}")
    if iteration % per_epoch:
        raise ContinuationError(f"the checkpoint ends within an epoch ({epoch:g})")
    total = max(1, round(num_epochs * per_epoch))
    if total < iteration:
        raise ContinuationError(f"num_epochs: {num_epochs:g} is fewer than the {epoch:g} trained")
    state.total_iterations = total
    state.status = TrainStatus.RUNNING if iteration < total else TrainStatus.FINISHED


def build_model(config: TrainConfig, data: Dataset) -> FullyConnectedNet:
    """The model a run with this config starts from (weights drawn from the run's seed)."""
    rng = np.random.default_rng([config.seed, 0])
    return FullyConnectedNet.from_config(config, data.input_dim, data.num_classes, rng)


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
    history, optim_config = state.history, state.optim_config
    initial = state.initial_cost
    threshold = math.inf if initial is None else config.explode_factor * initial
    ratios = _RatioSampler(model)
    probe = train_probe(data)
    progress_every = max(1, per_epoch // PROGRESS_TICKS)
    lr = math.nan  # until the first iteration sets it

    start, order, n = state.iteration, state.order, len(X)
    append_loss = history.loss.append

    for it in range(start, total):
        position = it % per_epoch
        if order is None:
            order = state.order = rng.permutation(n)
        lr = optim_config["learning_rate"] = lr_at(it / per_epoch, config)
        rows = order[position * batch : (position + 1) * batch]

        cost, grad = model.loss_flat(X[rows], y[rows], rng)
        append_loss(cost)
        if state.initial_cost is None:
            state.initial_cost = cost
            threshold = config.explode_factor * cost
        if not cost <= threshold:  # also true for NaN
            state.status = TrainStatus.EXPLODED
            state.explosion = Explosion(it, cost, state.initial_cost)
            break

        last_of_epoch = position == per_epoch - 1 or it == total - 1
        if it % RATIO_EVERY == 0 or (last_of_epoch and not ratios.count):
            ratios.sample(rule, grad, optim_config)
        else:
            rule(model.flat, grad, optim_config)
        state.iteration = it + 1
        if state.iteration % state.average_every == 0 and state.average_flat is not None:
            _update_average(state.average_flat, model.flat, state.average_keep)

        if last_of_epoch:
            if state.iteration == total:
                state.status = TrainStatus.FINISHED
            state.order = order = None
            flush_subnormals(model.flat, state.average_flat, *_array_state(optim_config))
            record_epoch(model, data, probe, state, lr, ratios.means(), ratios.grad_norms())
            ratios = _RatioSampler(model)
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


class _RatioSampler:
    """Sums ||update|| / ||w|| and ||gradient|| per parameter over the samples of one epoch."""

    def __init__(self, model: FullyConnectedNet) -> None:
        self.model = model
        self.sums = np.zeros(len(model.shapes))
        self.counts = np.zeros(len(model.shapes))
        self.grad_sums = np.zeros(len(model.shapes))
        self.count = 0

    def sample(self, rule: UpdateRule, grad: np.ndarray, config: dict[str, Any]) -> None:
        """Apply the update (exactly as an unsampled step would) and measure it."""
        flat, starts = self.model.flat, self.model.offsets
        weight_sq = np.add.reduceat(np.square(flat, dtype=np.float64), starts)
        self.grad_sums += np.sqrt(np.add.reduceat(np.square(grad, dtype=np.float64), starts))
        before = flat.copy()
        rule(flat, grad, config)
        before -= flat  # now minus the update
        update_sq = np.add.reduceat(np.square(before, dtype=np.float64), starts)
        moved = weight_sq > 0  # biases start at zero: no ratio until they move
        self.sums[moved] += np.sqrt(update_sq[moved] / weight_sq[moved])
        self.counts[moved] += 1
        self.count += 1

    def means(self) -> dict[str, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.sums / self.counts  # NaN where a parameter had no sample
        return {name: float(m) for name, m in zip(self.model.shapes, means, strict=True)}

    def grad_norms(self) -> dict[str, float]:
        """Mean ||dW|| per weight matrix (W1, W2, ...) over the epoch's samples."""
        count = max(1, self.count)
        return {
            name: float(total / count)
            for name, total in zip(self.model.shapes, self.grad_sums, strict=True)
            if name.startswith("W")
        }


def flush_subnormals(*arrays: np.ndarray | None) -> None:
    """Set the arrays' values below FLUSH_BELOW times the dtype's smallest normal number
    (subnormal ones, and those whose products are) to zero.

    Weight decay drives the weights of unused units, and Adam's moments of them, towards
    zero, through the subnormal range, which x86 CPUs compute through microcode assists
    (NumPy does not set flush-to-zero): on an Intel Xeon, a 256x256 Adam MLP of the search
    benchmark (shells data) went from 55 to 424 ms an epoch once 96% of its weights were
    subnormal; flushing only those left two epochs of 100-300 ms on the way, where weights
    just above the range still made subnormal products. A value this small (2e-31 in
    float32) changes no output: the run's validation accuracies stayed the same. Flushed at
    each epoch's end, a function of the run alone, so a resumed run does it where the
    uninterrupted one does."""
    for array in arrays:
        if array is not None and array.dtype.kind == "f":
            array[np.abs(array) < np.finfo(array.dtype).tiny * FLUSH_BELOW] = 0


def _array_state(optim_config: dict[str, Any]) -> list[np.ndarray]:
    """The update rule's per-parameter state (velocity, cache, m, v)."""
    return [v for v in optim_config.values() if isinstance(v, np.ndarray)]


def _update_average(average: np.ndarray, flat: np.ndarray, keep: float) -> None:
    average *= average.dtype.type(keep)
    average += average.dtype.type(1 - keep) * flat


def train_probe(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The evenly spread training examples (at most TRAIN_ACC_SAMPLES) train accuracy is
    measured on; gathered once per run, not once per epoch."""
    count = min(TRAIN_ACC_SAMPLES, len(data.X_train))
    rows = np.linspace(0, len(data.X_train) - 1, count).astype(np.intp)
    return data.X_train[rows], data.y_train[rows]


def record_epoch(
    model: FullyConnectedNet,
    data: Dataset,
    probe: tuple[np.ndarray, np.ndarray],
    state: TrainState,
    lr: float,
    ratios: dict[str, float],
    grad_norms: dict[str, float] | None = None,
) -> None:
    """The epoch-end evaluation: accuracies, mean cost, ratios, per-layer distributions,
    and the best parameters."""
    history = state.history
    with np.errstate(all="ignore"):  # a run about to explode may overflow here
        probe_scores, hidden = model.scores_and_activations(probe[0])
    train_acc = float(np.mean(np.argmax(probe_scores, axis=1) == probe[1]))
    shares, dead = layer_statistics(hidden)
    val_acc = model.accuracy(data.X_val, data.y_val)
    average = model.views(state.running_average(model.flat))
    average_val_acc = model.accuracy(data.X_val, data.y_val, params=average)
    history.end_epoch(
        state.iteration, state.iterations_per_epoch, train_acc, val_acc, average_val_acc, lr
    )
    for name, ratio in ratios.items():
        history.update_ratio.setdefault(name, []).append(ratio)
    history.add_layers(shares, dead)
    for name, norm in (grad_norms or {}).items():
        history.grad_norm.setdefault(name, []).append(norm)
    if val_acc > state.best_val_acc:
        state.best_val_acc = val_acc
        state.best_epoch = state.epoch
        state.best_flat = model.flat.copy()
