"""The RQ job: train one trial with core/, checkpoint every epoch, report on a Redis Stream.

`run_trial(job)` takes a `core.messages.TrialJob` as plain JSON. It never raises for what a
trial does: an exploding cost, a stop request or an exception in training are outcomes it
reports in an ENDED event (the master records them). It resumes from the trial's latest
checkpoint when one exists, so a trial re-queued after its worker died continues where it
was; a trial whose latest checkpoint is final is reported again, not trained again.
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

from core.checkpoint import CheckpointName, checkpoint_name, load_checkpoint, save_checkpoint
from core.config import TrainConfig
from core.data import Dataset
from core.messages import (
    EVENT_STREAM,
    EventKind,
    TrialEvent,
    TrialJob,
    parse_job_id,
    stop_key,
    sweep_stop_key,
)
from core.model import FullyConnectedNet
from core.state import TrainState, TrainStatus
from core.trainer import build_model, new_state, train
from worker.checkpoints import best_of, prune, trial_checkpoints
from worker.datasets import DATASETS
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # a stop request ends the trial within this, plus one iteration


def run_trial(job: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; return its outcome (also sent as the ENDED event)."""
    trial = TrialJob.from_dict(job)
    settings = WorkerSettings()
    rq_job = get_current_job()
    redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    parsed = parse_job_id(rq_job.id) if rq_job is not None else None
    attempt = parsed[1] if parsed else 0
    worker_name = (rq_job.worker_name if rq_job is not None else None) or socket.gethostname()
    reporter = _Reporter(redis, trial.trial_id, attempt)
    stop = _StopFlag(redis, trial)
    if stop():
        return reporter.ended(TrainStatus.STOPPED.value, reason="stopped before it started")
    try:
        return _train_trial(trial, settings.checkpoint_dir, reporter, stop, worker_name)
    except Exception as exc:  # a trial's failure is an outcome to record, not a worker crash
        log.exception("trial %s failed", trial.trial_id)
        return reporter.ended("failed", reason=f"{type(exc).__name__}: {exc}")


def _train_trial(
    trial: TrialJob, checkpoint_dir: Path, reporter: _Reporter, stop: _StopFlag, worker: str
) -> dict[str, Any]:
    config = TrainConfig.from_dict(
        {
            **trial.hyperparameters,
            "num_epochs": trial.num_epochs,
            "seed": trial.seed,
            "explode_factor": trial.explode_factor,
        }
    )
    data = DATASETS.get(trial.dataset, config.dtype)
    directory = checkpoint_dir / trial.checkpoint_subdir
    writer = _CheckpointWriter(trial, checkpoint_dir, directory, reporter)
    model, state = _resume_or_start(trial, directory, config, data)
    reporter.send(
        EventKind.STARTED,
        {"worker": worker, "host": socket.gethostname(), "resumed_from_epoch": state.epoch},
    )
    if state.status is not TrainStatus.RUNNING:
        return writer.report_end(state)
    state = train(model, data, config, state=state, should_stop=stop, on_epoch_end=writer.epoch)
    if state.iteration != writer.last_iteration:  # ended within an epoch: keep where it was
        writer.write(model, state, _accuracy(model, data))
    return writer.report_end(state)


def _resume_or_start(
    trial: TrialJob, directory: Path, config: TrainConfig, data: Dataset
) -> tuple[FullyConnectedNet, TrainState]:
    existing = trial_checkpoints(directory, trial.trial_id)
    if existing:
        checkpoint = load_checkpoint(existing[-1][0])
        if checkpoint.state.config == config:
            return checkpoint.model, checkpoint.state
        log.warning("trial %s: checkpoint config differs; starting over", trial.trial_id)
    model = build_model(config, data)
    return model, new_state(config, model, len(data.X_train))


def _accuracy(model: FullyConnectedNet, data: Dataset) -> float:
    with np.errstate(all="ignore"):  # an exploded model's scores may be inf or NaN
        return model.accuracy(data.X_val, data.y_val)


class _Reporter:
    """Appends this trial's events to the stream."""

    def __init__(self, redis: Redis, trial_id: int, attempt: int) -> None:
        self.redis = redis
        self.trial_id = trial_id
        self.attempt = attempt

    def send(self, kind: EventKind, data: dict[str, Any]) -> None:
        event = TrialEvent(kind, self.trial_id, self.attempt, data)
        self.redis.xadd(EVENT_STREAM, event.to_fields())  # type: ignore[arg-type]

    def ended(self, status: str, **data: Any) -> dict[str, Any]:
        outcome = {"status": status, **data}
        self.send(EventKind.ENDED, outcome)
        return outcome


class _StopFlag:
    """should_stop() for the trainer: polls the trial's and its sweep's stop keys, at most
    every STOP_POLL_SECONDS, so that a stop costs microseconds per iteration."""

    def __init__(self, redis: Redis, trial: TrialJob) -> None:
        self.redis = redis
        self.keys = (stop_key(trial.trial_id), sweep_stop_key(trial.sweep_id))
        self.next_poll = 0.0
        self.stopped = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stopped and now >= self.next_poll:
            self.next_poll = now + STOP_POLL_SECONDS
            self.stopped = bool(self.redis.exists(*self.keys))
        return self.stopped


class _CheckpointWriter:
    """Writes a checkpoint at every epoch end (and at an early end), prunes, and reports."""

    def __init__(self, trial: TrialJob, root: Path, directory: Path, reporter: _Reporter) -> None:
        self.trial = trial
        self.root = root
        self.directory = directory
        self.reporter = reporter
        self.last_iteration = -1
        # The trial's files as of the last write (one directory listing per epoch); None
        # until this attempt writes one.
        self.checkpoints: list[tuple[Path, CheckpointName]] | None = None

    def epoch(self, model: FullyConnectedNet, state: TrainState) -> None:
        history = state.history
        self.write(model, state, history.val_acc[-1])
        k = len(history.epoch) - 1
        start = round(history.epoch[k - 1] * state.iterations_per_epoch) if k else 0
        self.reporter.send(
            EventKind.EPOCH,
            {
                "epoch": history.epoch[k],
                "cost": float(history.cost[k]),
                "train_acc": float(history.train_acc[k]),
                "val_acc": float(history.val_acc[k]),
                "average_val_acc": float(history.average_val_acc[k]),
                "learning_rate": float(history.lr[k]),
                "update_ratio": {n: float(v[k]) for n, v in history.update_ratio.items()},
                "loss": [float(c) for c in history.loss[start : state.iteration]],
                **self._files(),
            },
        )

    def write(self, model: FullyConnectedNet, state: TrainState, val_acc: float) -> None:
        name = checkpoint_name(val_acc, self.trial.trial_id, state.epoch)
        path = save_checkpoint(
            self.directory / name, model, state, extra={"trial": self.trial.to_dict()}
        )
        checkpoints = trial_checkpoints(self.directory, self.trial.trial_id)
        if self.trial.keep_checkpoints != "all":
            checkpoints = prune(checkpoints, path)
        self.checkpoints = checkpoints
        self.last_iteration = state.iteration

    def _files(self) -> dict[str, Any]:
        checkpoints = self.checkpoints
        if checkpoints is None:  # e.g. a final trial reported again: what an earlier run wrote
            checkpoints = trial_checkpoints(self.directory, self.trial.trial_id)
        if not checkpoints:
            return {"checkpoints": [], "best_val_acc": None, "best_epoch": None}
        _, best = best_of(checkpoints)
        return {
            "checkpoints": [str(p.relative_to(self.root)) for p, _ in checkpoints],
            "best_val_acc": best.val_acc,
            "best_epoch": best.epoch,
        }

    def report_end(self, state: TrainState) -> dict[str, Any]:
        history = state.history
        explosion = state.explosion
        outcome: dict[str, Any] = {
            "epochs_done": state.epoch,
            "val_acc": history.val_acc[-1] if history.val_acc else None,
            **self._files(),
        }
        if explosion is not None:
            outcome["explosion"] = {
                "iteration": explosion.iteration,
                "cost": float(explosion.cost),
                "initial_cost": float(explosion.initial_cost),
                "ratio": float(explosion.ratio),
            }
            outcome["reason"] = (
                f"cost {explosion.cost:.4g} at iteration {explosion.iteration} is "
                f"{explosion.ratio:.3g}x the first cost {explosion.initial_cost:.4g}"
            )
        elif state.status is TrainStatus.STOPPED:
            outcome["reason"] = f"stopped at epoch {state.epoch:.2f}"
        return self.reporter.ended(state.status.value, **outcome)
