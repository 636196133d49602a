"""The loop around a user's trainer (core.contract): what core.trainer does for the built-in
net, for any model.

`run(trainer, data, state)` trains until the state's iterations are done, the cost
explodes (not finite, or above explode_factor x the first cost, from iteration 1), or
should_stop() says so. The loop owns the batch order (one generator seeded from the run's
seed, its state saved with the run) and the history; the trainer owns its model, optimizer
and any RNG of its own, saved by its state(). So a run resumed from a saved RunState and the
trainer's state goes on exactly as the uninterrupted one, within an epoch too, provided the
trainer's state() is whole.

What the trainer does wrong is a TrainerError naming the trainer, the method and what it
returned: the worker reports the trial failed with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.contract import Problem, Trainer, TrainerError
from core.data import Dataset
from core.distributions import PROBE_ROWS, layer_statistics
from core.state import Explosion, History, TrainStatus
from core.trainer import ContinuationError, extend_run, iterations_per_epoch, train_probe

RunCallback = Callable[[Trainer, "RunState"], None]


@dataclass
class RunState:
    """A run of a user's trainer: what the loop needs to report on it and go on with it
    (the trainer's own state is its state())."""

    trainer: str  # the registered name
    version: str
    hyperparameters: dict[str, Any]  # resolved: every declared name
    seed: int
    explode_factor: float
    num_epochs: float
    iterations_per_epoch: int
    total_iterations: int
    iteration: int = 0
    status: TrainStatus = TrainStatus.RUNNING
    initial_cost: float | None = None
    explosion: Explosion | None = None
    rng_state: dict[str, Any] | None = None  # the batch order's generator
    order: np.ndarray | None = None  # the batch order of an epoch under way
    history: History = field(default_factory=History)
    best_val_acc: float = -1.0
    best_epoch: float = 0.0

    @property
    def epoch(self) -> float:
        return self.iteration / self.iterations_per_epoch


def problem_of(data: Dataset) -> Problem:
    return Problem(data.input_dim, data.num_classes, data.image_shape)


def batch_size_of(name: str, trainer: Trainer) -> int:
    size = getattr(trainer, "batch_size", None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise TrainerError(f"trainer {name}: batch_size must be an integer >= 1, got {size!r}")
    return size


def new_run(
    name: str,
    version: str,
    hyperparameters: dict[str, Any],
    trainer: Trainer,
    num_train: int,
    *,
    seed: int,
    num_epochs: float,
    explode_factor: float,
) -> RunState:
    """The state of a run that has not started."""
    per_epoch = iterations_per_epoch(num_train, batch_size_of(name, trainer))
    return RunState(
        trainer=name,
        version=version,
        hyperparameters=hyperparameters,
        seed=seed,
        explode_factor=explode_factor,
        num_epochs=num_epochs,
        iterations_per_epoch=per_epoch,
        total_iterations=max(1, round(num_epochs * per_epoch)),
        rng_state=dict(np.random.default_rng([seed, 1]).bit_generator.state),
    )


def continue_run(
    state: RunState, version: str, hyperparameters: dict[str, Any], seed: int, num_epochs: float
) -> RunState:
    """`state`, made to go on to `num_epochs` (a run promoted to a longer budget): exactly
    as a run trained that long from the start, since the batch order's generator is saved
    and the trainer's schedule is a function of the epoch it is given. Only num_epochs may
    differ; ContinuationError says why a run cannot go on (another version of the trainer
    is other code: its state may not mean the same)."""
    if state.hyperparameters != hyperparameters or state.seed != seed:
        raise ContinuationError("the checkpoint was trained with other hyperparameters")
    if state.version != version:
        raise ContinuationError(
            f"the checkpoint is of version {state.version} of trainer {state.trainer}, "
            f"this is version {version}"
        )
    extend_run(state, num_epochs)
    state.num_epochs = num_epochs
    return state


def run(
    trainer: Trainer,
    data: Dataset,
    state: RunState,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_epoch_end: RunCallback | None = None,
) -> RunState:
    """Train `trainer` on from `state` (see the module docstring); should_stop is polled
    after every iteration, on_epoch_end(trainer, state) runs after each epoch's metrics are
    recorded."""
    if state.status is not TrainStatus.RUNNING:
        return state
    X, y = data.X_train, data.y_train
    per_epoch, total = state.iterations_per_epoch, state.total_iterations
    batch = min(batch_size_of(state.trainer, trainer), len(X))
    rng = np.random.default_rng()
    if state.rng_state is not None:
        rng.bit_generator.state = state.rng_state
    initial = state.initial_cost
    threshold = math.inf if initial is None else state.explode_factor * initial
    probe = train_probe(data)
    order, n = state.order, len(X)
    for it in range(state.iteration, total):
        position = it % per_epoch
        if order is None:
            order = state.order = rng.permutation(n)
        rows = order[position * batch : (position + 1) * batch]
        got = call(
            state.trainer, "train_step", trainer.train_step, X[rows], y[rows], it / per_epoch
        )
        cost = _cost(state.trainer, got)
        state.history.loss.append(cost)
        if state.initial_cost is None:
            state.initial_cost = cost
            threshold = state.explode_factor * cost
        if not cost <= threshold:  # also true for NaN
            state.status = TrainStatus.EXPLODED
            state.explosion = Explosion(it, cost, state.initial_cost)
            break
        state.iteration = it + 1
        if position == per_epoch - 1 or it == total - 1:
            if state.iteration == total:
                state.status = TrainStatus.FINISHED
            state.order = order = None
            record_epoch(trainer, data, probe, state)
            state.rng_state = dict(rng.bit_generator.state)
            if on_epoch_end is not None:
                on_epoch_end(trainer, state)
        if should_stop is not None and should_stop() and state.status is TrainStatus.RUNNING:
            state.status = TrainStatus.STOPPED
            break
    state.rng_state = dict(rng.bit_generator.state)
    return state


def call(name: str, method: str, function: Callable[..., Any], *args: Any) -> Any:
    """function(*args), with anything it raises made a TrainerError naming the trainer and
    the method (the worker reports the trial failed with it)."""
    try:
        return function(*args)
    except TrainerError:
        raise
    except Exception as exc:
        raise TrainerError(f"trainer {name}: {method} raised {type(exc).__name__}: {exc}") from exc


def _cost(name: str, value: Any) -> float:
    """train_step's return as a float (NaN and infinity pass: they explode the run)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise TrainerError(
            f"trainer {name}: train_step returned {type(value).__name__} {value!r:.80}, "
            f"not a number (the minibatch's cost)"
        ) from None


def accuracy(name: str, trainer: Trainer, X: np.ndarray, y: np.ndarray, classes: int) -> float:
    """The share of rows whose most probable class is y; TrainerError if probabilities()
    returns anything but an (N, classes) array."""
    probabilities = checked_probabilities(name, trainer, X, classes)
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def read_only(X: np.ndarray) -> np.ndarray:
    """A view of X that a trainer cannot write to: the splits are the worker's, shared by
    every trial it runs."""
    view = X.view()
    view.flags.writeable = False
    return view


def checked_probabilities(name: str, trainer: Trainer, X: np.ndarray, classes: int) -> np.ndarray:
    got = call(name, "probabilities", trainer.probabilities, read_only(X))
    shape = getattr(got, "shape", None)
    if shape != (len(X), classes):
        raise TrainerError(
            f"trainer {name}: probabilities returned shape {shape} for {len(X)} inputs "
            f"of {classes} classes (expected ({len(X)}, {classes}))"
        )
    return np.asarray(got, dtype=np.float64)


def record_epoch(
    trainer: Trainer, data: Dataset, probe: tuple[np.ndarray, np.ndarray], state: RunState
) -> None:
    """The epoch-end evaluation: accuracies from probabilities(), the mean cost, and what
    the trainer reports of itself (NaN where it reports nothing)."""
    history, name, classes = state.history, state.trainer, data.num_classes
    with np.errstate(all="ignore"):  # a run about to explode may overflow here
        train_acc = accuracy(name, trainer, probe[0], probe[1], classes)
        val_acc = accuracy(name, trainer, data.X_val, data.y_val, classes)
    last = (state.iteration - 1) / state.iterations_per_epoch  # where the last step was
    lr = _reported(name, trainer, "learning_rate", last)
    # A user's trainer keeps no running average: NaN, as JSON carries it, None.
    per_epoch = state.iterations_per_epoch
    history.end_epoch(state.iteration, per_epoch, train_acc, val_acc, math.nan, lr)
    _record_activations(trainer, name, probe[0], history)
    ratios = getattr(trainer, "update_ratios", None)
    if callable(ratios):
        reported = call(name, "update_ratios", lambda: _ratios(ratios()))
        epochs = len(history.epoch)
        for key in reported.keys() | history.update_ratio.keys():
            # One value per epoch in every series: NaN where an epoch reported none.
            series = history.update_ratio.setdefault(key, [])
            series += [math.nan] * (epochs - 1 - len(series))
            series.append(reported.get(key, math.nan))
    if val_acc > state.best_val_acc:
        state.best_val_acc = val_acc
        state.best_epoch = state.epoch


def _record_activations(trainer: Trainer, name: str, X: np.ndarray, history: History) -> None:
    """The optional hidden_activations(X): each hidden layer's ReLU outputs (rows, units)
    on the probe's first rows, kept as the built-in net's are (core.distributions)."""
    method = getattr(trainer, "hidden_activations", None)
    if not callable(method):
        return
    rows = read_only(X[:PROBE_ROWS])
    layers = call(name, "hidden_activations", lambda: [np.asarray(a) for a in method(rows)])
    for k, layer in enumerate(layers, start=1):
        if layer.ndim != 2 or len(layer) != len(rows) or layer.dtype.kind not in "fiu":
            raise TrainerError(
                f"trainer {name}: hidden_activations returned layer {k} as {layer.dtype} "
                f"{layer.shape}, not numbers of ({len(rows)}, units)"
            )
    history.add_layers(*layer_statistics(layers))


def _ratios(reported: Any) -> dict[str, float]:
    return {str(key): float(value) for key, value in dict(reported).items()}


def _reported(name: str, trainer: Trainer, attribute: str, epoch: float) -> float:
    """An optional number a trainer may report, a method of the epoch (e.g. its learning
    rate, at the epoch's last step), or NaN."""
    method = getattr(trainer, attribute, None)
    if not callable(method):
        return math.nan
    value: float = call(name, attribute, lambda: float(method(epoch)))
    return value
