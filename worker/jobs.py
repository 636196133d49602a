"""The RQ job: train trials with core/, checkpoint them, report every epoch on a Redis Stream.

`run_trials(trials)` takes a batch of `core.messages.TrialJob`s as plain JSON and runs them
one after the other (`run_trial` runs one). It never raises for what a trial does: an
exploding cost, a stop request or an exception in training are outcomes it reports in an
ENDED event (the master records them). A re-run trial (attempt > 1) resumes from its latest
checkpoint, so a trial re-queued after its worker died continues where it was; a trial whose
latest checkpoint is final is reported again, not trained again. A resumed trial re-sends
the EPOCH events of the epochs its checkpoint holds (the master stores each epoch once), so
its history has no gap even when the worker died between writing a checkpoint and reporting
its epoch. What an attempt sends, and when it must stop, is worker.attempt's.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from redis import Redis
from rq import get_current_job

from core.checkpoint import (
    CheckpointError,
    checkpoint_arrays,
    load_checkpoint,
)
from core.config import TrainConfig
from core.contract import BUILTIN
from core.data import confine
from core.messages import Ended, EndStatus, Started, TrialJob
from core.model import FullyConnectedNet
from core.state import TrainState, TrainStatus
from core.trainer import ContinuationError, build_model, continue_to, new_state, train
from worker.attempt import Reporter, StopFlag
from worker.datasets import DATASETS
from worker.runs import PreparedRun, listed_for_resume, resume
from worker.settings import WorkerSettings
from worker.trainers import prepare_user_trial
from worker.writer import CheckpointWriter

log = logging.getLogger(__name__)


def run_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a batch of trials, one after the other; return their outcomes."""
    settings = WorkerSettings()
    rq_job = get_current_job()
    redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    rq_id = rq_job.id if rq_job is not None else None
    worker_name = (rq_job.worker_name if rq_job is not None else None) or socket.gethostname()
    return [_run_one(TrialJob.from_dict(t), redis, settings, rq_id, worker_name) for t in trials]


def run_trial(job: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; return its outcome (also sent as the ENDED event)."""
    return run_trials([job])[0]


def _run_one(
    trial: TrialJob, redis: Redis, settings: WorkerSettings, rq_id: str | None, worker: str
) -> dict[str, Any]:
    reporter = Reporter(redis, trial.trial_id, trial.attempt)
    stop = StopFlag(trial, rq_id, reporter)
    if stop():
        return stop.outcome("before it started")
    try:
        return _train_trial(trial, settings, reporter, stop, worker)
    except SystemExit:  # RQ's cold stop: the trial was not at fault, let the master re-queue it
        return reporter.end(Ended(EndStatus.INTERRUPTED, reason="the worker was stopped"))
    except Exception as exc:  # a trial's failure is an outcome to record, not a worker crash
        log.exception("trial %s failed", trial.trial_id)
        return reporter.end(Ended(EndStatus.FAILED, reason=f"{type(exc).__name__}: {exc}"))


def _train_trial(
    trial: TrialJob, settings: WorkerSettings, reporter: Reporter, stop: StopFlag, worker: str
) -> dict[str, Any]:
    prepare = _prepare_builtin if trial.trainer == BUILTIN else prepare_user_trial
    run = prepare(trial, settings)
    checkpoint_dir = settings.checkpoint_dir
    directory = checkpoint_dir / trial.checkpoint_subdir
    writer = CheckpointWriter(
        trial, checkpoint_dir, directory, reporter, stop, run.existing, run.snapshot
    )
    state, data = run.state, run.data
    host = socket.gethostname()
    warnings = list(data.warnings)
    reporter.send(Started(worker, host, state.epoch, run.damaged, warnings, data.num_classes))
    if run.existing:  # a resumed attempt: what its checkpoint holds, in case events were lost
        for k in range(len(state.history.epoch)):
            writer.report_epoch(state, k)
    # (A promoted trial's first epochs are its parent's: the master copied them.)
    if state.status is not TrainStatus.RUNNING:
        return writer.report_end(state, stop)
    started = time.perf_counter()
    state = run.train(stop, writer.epoch)
    writer.train_seconds = time.perf_counter() - started
    if stop.superseded:
        return {"status": "superseded"}  # a newer attempt owns the trial and its files
    if state.iteration != writer.last_iteration:  # where it ended, if not in a file yet
        ended_at_epoch = bool(state.history.epoch) and state.history.epoch[-1] == state.epoch
        val_acc = state.history.val_acc[-1] if ended_at_epoch else run.val_accuracy()
        writer.write(run.model, state, val_acc)
    return writer.report_end(state, stop)


def _prepare_builtin(trial: TrialJob, settings: WorkerSettings) -> PreparedRun:
    """The built-in net's run of this trial: resumed, promoted or new."""
    checkpoint_dir = settings.checkpoint_dir
    config = TrainConfig.from_dict(
        {
            **trial.hyperparameters,
            "num_epochs": trial.num_epochs,
            "seed": trial.seed,
            "explode_factor": trial.explode_factor,
        }
    )
    # Workers enforce the dataset folders too: a job is not trusted to name a safe path.
    dataset = confine(trial.dataset, settings.dataset_dirs)
    data = DATASETS.get(dataset, config.dtype, config.preprocessing)

    def load(path: Path) -> tuple[FullyConnectedNet, TrainState] | None:
        checkpoint = load_checkpoint(path)
        if checkpoint.state.config != config:
            return None
        return checkpoint.model, checkpoint.state

    existing = listed_for_resume(checkpoint_dir, trial)
    resumed, existing, damaged = resume(existing, load, trial.trial_id)
    if resumed is None and trial.resume_from is not None:
        resumed = _promoted(checkpoint_dir / trial.resume_from, config)
    if resumed is None:
        fresh = build_model(config, data)
        resumed = fresh, new_state(config, fresh, len(data.X_train))
    model, state = resumed
    # Saved with each checkpoint: the dashboard draws first-layer weights as images, and
    # the preprocessing makes the model predict on raw inputs.
    extra = {"trial": trial.to_dict(), "image_shape": data.image_shape}

    def snapshot(model: FullyConnectedNet, state: TrainState, copy: bool) -> dict[str, Any]:
        return checkpoint_arrays(model, state, extra, data.preprocessing, copy)

    def train_on(stop: StopFlag, on_epoch_end: Any) -> TrainState:
        return train(model, data, config, state=state, should_stop=stop, on_epoch_end=on_epoch_end)

    def val_accuracy() -> float:
        with np.errstate(all="ignore"):  # an exploded model's scores may be inf or NaN
            return model.accuracy(data.X_val, data.y_val)

    return PreparedRun(model, state, data, existing, damaged, snapshot, train_on, val_accuracy)


def _promoted(parent: Path, config: TrainConfig) -> tuple[FullyConnectedNet, TrainState] | None:
    """The run a promoted trial goes on from: its parent's checkpoint, continued to this
    trial's epochs (core.trainer.continue_to: exactly as if trained that long from the
    start). None if that checkpoint cannot be used: the trial trains from scratch, which
    costs more epochs but loses nothing; Started's resumed_from_epoch tells the master. (A
    model built first and then discarded cost each promoted trial about 1.2 ms.)"""
    try:
        checkpoint = load_checkpoint(parent)
        return checkpoint.model, continue_to(checkpoint.state, config)
    except (CheckpointError, ContinuationError) as exc:
        log.warning("cannot go on from %s: %s; training from scratch", parent, exc)
        return None
