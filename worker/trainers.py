"""The user trainers this worker can run (core.registry, loaded once per process) and a
trial's run of one (core.run), ready for the job to drive.

A job names its trainer by name only. A name this worker does not have is refused: the
trial fails with a reason that lists the names it has. Nothing in a job is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import CheckpointError
from core.contract import BUILTIN, Declaration, Trainer
from core.data import confine
from core.messages import TrialJob
from core.registry import installed_trainers
from core.run import RunState, accuracy, continue_run, new_run, problem_of, run
from core.run_checkpoint import build_trainer, load_run_checkpoint, run_checkpoint_arrays
from core.trainer import ContinuationError
from worker.attempt import StopFlag
from worker.datasets import DATASETS
from worker.runs import PreparedRun, listed_for_resume, resume
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
# HPSEARCH_TRAINERS -> its trainers, imported once per process.
_INSTALLED: dict[str, dict[str, Any]] = {}


class UnknownTrainer(LookupError):
    """A job names a trainer this worker does not have."""


def installed(settings: WorkerSettings) -> dict[str, Any]:
    """Name -> class of the user trainers this worker has (core.registry.RegistryError if
    one cannot be loaded)."""
    setting = settings.trainers_setting
    if setting not in _INSTALLED:
        _INSTALLED[setting] = installed_trainers(setting)
    return _INSTALLED[setting]


def declarations(settings: WorkerSettings) -> list[dict[str, Any]]:
    """What this worker advertises with its registration: every user trainer it has."""
    return [Declaration.of(name, cls).to_json() for name, cls in installed(settings).items()]


def trainer_class(name: str, settings: WorkerSettings) -> Any:
    trainers = installed(settings)
    if name not in trainers:
        known = ", ".join([BUILTIN, *sorted(trainers)])
        raise UnknownTrainer(
            f"trainer {name!r} is not installed on this worker (it has: {known}); trainers "
            f"are registered by the worker's operator and looked up by name, never imported "
            f"from a job"
        )
    return trainers[name]


def prepare_user_trial(trial: TrialJob, settings: WorkerSettings) -> PreparedRun:
    """A user trainer's run of this trial: resumed from its newest intact checkpoint,
    continued from its parent's (promoted), or new."""
    name = trial.trainer
    cls = trainer_class(name, settings)
    declaration = Declaration.of(name, cls)
    hyperparameters = declaration.resolve(trial.hyperparameters)
    dataset = confine(trial.dataset, settings.dataset_dirs)
    data = DATASETS.get(
        dataset,
        str(hyperparameters.get("dtype", "float32")),
        str(hyperparameters.get("preprocessing", "mean")),
    )
    problem = problem_of(data)
    checkpoint_dir = settings.checkpoint_dir

    def same_run(state: RunState) -> bool:
        """Whether a checkpoint is of this very run, by this version of the trainer (another
        version is other code: its state may not mean the same)."""
        ran = (state.version, state.hyperparameters, state.seed, state.explode_factor)
        wanted = (declaration.version, hyperparameters, trial.seed, trial.explode_factor)
        return ran == wanted and state.num_epochs == trial.num_epochs

    def load(path: Path) -> tuple[Trainer, RunState] | None:
        checkpoint = load_run_checkpoint(path, {name: cls})
        return (checkpoint.trainer, checkpoint.state) if same_run(checkpoint.state) else None

    existing = listed_for_resume(checkpoint_dir, trial)
    resumed, existing, damaged = resume(existing, load, trial.trial_id)
    if resumed is None and trial.resume_from is not None:
        parent = checkpoint_dir / trial.resume_from
        resumed = _promoted(parent, cls, trial, declaration.version, hyperparameters)
    if resumed is None:
        fresh = build_trainer(cls, name, hyperparameters, problem, trial.seed)
        state = new_run(
            name,
            declaration.version,
            hyperparameters,
            fresh,
            len(data.X_train),
            seed=trial.seed,
            num_epochs=trial.num_epochs,
            explode_factor=trial.explode_factor,
        )
        resumed = fresh, state
    trainer, state = resumed
    extra = {"trial": trial.to_dict(), "image_shape": data.image_shape}

    def snapshot(trainer: Trainer, state: RunState, copy: bool) -> dict[str, np.ndarray]:
        return run_checkpoint_arrays(trainer, state, problem, extra, data.preprocessing, copy)

    def train_on(stop: StopFlag, on_epoch_end: Any) -> RunState:
        return run(trainer, data, state, should_stop=stop, on_epoch_end=on_epoch_end)

    def val_accuracy() -> float:
        with np.errstate(all="ignore"):
            return accuracy(name, trainer, data.X_val, data.y_val, data.num_classes)

    return PreparedRun(trainer, state, data, existing, damaged, snapshot, train_on, val_accuracy)


def _promoted(
    parent: Path, cls: Any, trial: TrialJob, version: str, hyperparameters: dict[str, Any]
) -> tuple[Trainer, RunState] | None:
    """The run a promoted trial goes on from: its parent's checkpoint, continued to this
    trial's epochs; None (train from scratch, losing nothing) if the file cannot be used.
    A trainer whose state does not load back (core.contract.TrainerError) fails the trial:
    that is the trainer's fault, and training from scratch would hide it."""
    try:
        checkpoint = load_run_checkpoint(parent, {trial.trainer: cls})
        state = continue_run(
            checkpoint.state, version, hyperparameters, trial.seed, trial.num_epochs
        )
        return checkpoint.trainer, state
    except (CheckpointError, ContinuationError) as exc:
        log.warning("cannot go on from %s: %s; training from scratch", parent, exc)
        return None
