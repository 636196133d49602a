"""Checking a user's trainer against the contract (core.contract) before a sweep relies on it.

`check_trainer(name, cls, data, values)` builds the trainer, trains it a few epochs with the
worker's own loop (core.run), and checks what a sweep needs of it: a sound declaration,
probabilities of the right shape that sum to 1, and exact resume, both from a state saved
mid-epoch and from a checkpoint file (as a promoted trial goes on). Each check is a Finding;
one that fails says what it saw and what to look at. Nothing is written outside a
temporary folder.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import CheckpointError, write_checkpoint
from core.config import ConfigError
from core.contract import Declaration, TrainerError
from core.data import Dataset
from core.run import (
    RunState,
    call,
    checked_probabilities,
    continue_run,
    new_run,
    problem_of,
    run,
)
from core.run_checkpoint import build_trainer, load_run_checkpoint, run_checkpoint_arrays
from core.state import TrainStatus
from core.trainer import ContinuationError

SUM_TOLERANCE = 1e-4  # how far a row of probabilities may be from 1


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


def check_trainer(
    name: str, cls: Any, data: Dataset, values: dict[str, Any], *, epochs: int = 2, seed: int = 0
) -> list[Finding]:
    """The findings, in order; the first failure ends the checks that depend on it."""
    findings: list[Finding] = []
    try:
        declaration = Declaration.of(name, cls)
        hyperparameters = declaration.resolve(values)
    except (TrainerError, ConfigError) as exc:
        return [Finding(False, str(exc))]
    shown = ", ".join(f"{k}={v}" for k, v in hyperparameters.items())
    findings.append(Finding(True, f"declares {len(hyperparameters)} hyperparameters: {shown}"))

    def fresh(num_epochs: float) -> tuple[Any, RunState]:
        trainer = build_trainer(cls, name, hyperparameters, problem_of(data), seed)
        state = new_run(
            name, declaration.version, hyperparameters, trainer, len(data.X_train),
            seed=seed, num_epochs=num_epochs, explode_factor=3.0,
        )  # fmt: skip
        return trainer, state

    try:
        started = time.perf_counter()
        trainer, straight = fresh(epochs)
        straight = run(trainer, data, straight)
        seconds = time.perf_counter() - started
        if straight.status is not TrainStatus.FINISHED:
            assert straight.explosion is not None
            return [
                *findings,
                Finding(
                    False,
                    f"exploded at iteration {straight.explosion.iteration} (cost "
                    f"{straight.explosion.cost:.4g}, {straight.explosion.ratio:.3g}x the first): "
                    f"check with other hyperparameters (--set learning_rate=...)",
                ),
            ]
        findings.append(
            Finding(
                True,
                f"trains {epochs} epochs of {straight.iterations_per_epoch} iterations: val "
                f"{straight.history.val_acc[-1]:.4f} in {seconds:.2f} s",
            )
        )
        findings.append(_probabilities(name, trainer, data))
        findings.append(_resumed_mid_epoch(trainer, data, straight, fresh))
        findings.append(_continued_from_a_file(trainer, data, straight, fresh, epochs))
    except TrainerError as exc:
        findings.append(Finding(False, str(exc)))
    return findings


def _probabilities(name: str, trainer: Any, data: Dataset) -> Finding:
    X = data.X_val
    probabilities = checked_probabilities(name, trainer, X, data.num_classes)
    sums = probabilities.sum(axis=1)
    worst = float(np.max(np.abs(sums - 1))) if len(sums) else 0.0
    if not np.all(np.isfinite(probabilities)) or worst > SUM_TOLERANCE:
        return Finding(
            False,
            f"probabilities: rows sum to 1 within {worst:.3g}, not {SUM_TOLERANCE:g} (or are "
            f"not finite): return a softmax, not scores",
        )
    return Finding(True, f"probabilities: {probabilities.shape}, every row sums to 1")


def _resumed_mid_epoch(trainer: Any, data: Dataset, straight: RunState, fresh: Any) -> Finding:
    """Stop half-way, rebuild from (hyperparameters, problem, seed) + state(), go on."""
    stop_at = max(1, straight.total_iterations // 2)
    if stop_at % straight.iterations_per_epoch == 0 and straight.iterations_per_epoch > 1:
        stop_at += 1  # within an epoch: the batch order and the trainer's RNG are mid-way
    first, state = fresh(straight.num_epochs)
    polls = iter(range(1, 10**9))
    state = run(first, data, state, should_stop=lambda: next(polls) >= stop_at)
    second = fresh(straight.num_epochs)[0]
    saved = {
        k: np.array(v, copy=True) for k, v in call(state.trainer, "state", first.state).items()
    }
    call(state.trainer, "load_state", second.load_state, saved)
    state.status = TrainStatus.RUNNING
    state = run(second, data, state)
    return _compare(
        straight,
        state,
        trainer,
        second,
        f"resumes exactly from a state saved at iteration {stop_at} of {straight.total_iterations}",
    )


def _continued_from_a_file(
    trainer: Any, data: Dataset, straight: RunState, fresh: Any, epochs: int
) -> Finding:
    """Train 1 epoch, write a real checkpoint, load it and go on to `epochs`."""
    parent, state = fresh(1)
    state = run(parent, data, state)
    with tempfile.TemporaryDirectory(prefix="hpsearch-check-") as folder:
        path = Path(folder) / "parent.npz"
        arrays = run_checkpoint_arrays(parent, state, problem_of(data), {}, data.preprocessing)
        write_checkpoint(path, arrays, durable=False)
        try:
            loaded = load_run_checkpoint(path, {state.trainer: type(parent)})
            continued = continue_run(
                loaded.state, state.version, state.hyperparameters, state.seed, epochs
            )
        except (CheckpointError, ContinuationError) as exc:
            return Finding(False, f"cannot go on from its checkpoint file: {exc}")
    continued = run(loaded.trainer, data, continued)
    return _compare(
        straight,
        continued,
        trainer,
        loaded.trainer,
        f"goes on exactly from a checkpoint file (1 -> {epochs} epochs, as a promoted trial)",
    )


def _compare(straight: RunState, other: RunState, ran: Any, resumed: Any, claim: str) -> Finding:
    costs, again = straight.history.loss, other.history.loss
    for i, (a, b) in enumerate(zip(costs, again, strict=False)):
        if a != b and not (np.isnan(a) and np.isnan(b)):
            return Finding(
                False,
                f"{claim.split(' exactly')[0]} differently: iteration {i}'s cost is {b!r}, "
                f"{a!r} uninterrupted. state() must hold everything train_step reads or "
                f"changes: weights, optimizer state (step counts too), every RNG's state",
            )
    if len(costs) != len(again):
        return Finding(False, f"{claim}: {len(again)} iterations against {len(costs)}")
    final, other_final = ran.state(), resumed.state()
    for key, array in final.items():
        nan_is_nan = np.asarray(array).dtype.kind in "fc"
        if key not in other_final or not np.array_equal(
            array, other_final[key], equal_nan=nan_is_nan
        ):
            return Finding(False, f"{claim}: every cost the same, but state()[{key!r}] differs")
    return Finding(True, f"{claim}: every cost and state() the same")
