"""The RQ job: train trials with core/, checkpoint every epoch, report on a Redis Stream.

`run_trials(trials)` takes a batch of `core.messages.TrialJob`s as plain JSON and runs them
one after the other (`run_trial` runs one). It never raises for what a trial does: an
exploding cost, a stop request or an exception in training are outcomes it reports in an
ENDED event (the master records them). A re-run trial (attempt > 1) resumes from its latest
checkpoint, so a trial re-queued after its worker died continues where it was; a trial whose
latest checkpoint is final is reported again, not trained again. A resumed trial re-sends
the EPOCH events of the epochs its checkpoint holds (the master stores each epoch once), so
its history has no gap even when the worker died between writing a checkpoint and reporting
its epoch.

Events are buffered and sent in one round trip with the next stop poll (at most every
STOP_POLL_SECONDS) or at the trial's end, so a short trial costs two round trips to Redis.
Redis going away does not fail a trial: the ENDED event is re-sent with back-off until Redis
is back, and a stop poll that cannot reach Redis is skipped.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job

from core.checkpoint import (
    CheckpointError,
    CheckpointName,
    checkpoint_name,
    load_checkpoint,
    parse_checkpoint_name,
    save_checkpoint,
)
from core.config import TrainConfig
from core.data import Dataset
from core.messages import (
    EVENT_STREAM,
    LEASE_RENEW_SECONDS,
    LEASE_SECONDS,
    EndStatus,
    EventKind,
    TrialEvent,
    TrialJob,
    stop_key,
    sweep_stop_key,
)
from core.model import FullyConnectedNet
from core.state import TrainState, TrainStatus
from core.trainer import build_model, new_state, train
from worker.checkpoints import best_of, prune, trial_checkpoints
from worker.datasets import DATASETS
from worker.lifecycle import LEASE_RENEWED, SHUTTING_DOWN, SUPERSEDED
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # a stop request ends the trial within this, plus one iteration
MAX_SEND_BACKOFF_SECONDS = 5.0
DAMAGED_SUFFIX = ".damaged"  # added to a checkpoint's name that cannot be loaded
# A lease renewed this recently is surely still held: it lapses LEASE_SECONDS after its
# renewal, and the master judges it one pass later.
LEASE_SURELY_HELD_SECONDS = LEASE_SECONDS - 1.0


def run_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a batch of trials, one after the other; return their outcomes."""
    settings = WorkerSettings()
    rq_job = get_current_job()
    redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    rq_id = rq_job.id if rq_job is not None else None
    worker_name = (rq_job.worker_name if rq_job is not None else None) or socket.gethostname()
    return [
        _run_one(TrialJob.from_dict(t), redis, settings.checkpoint_dir, rq_id, worker_name)
        for t in trials
    ]


def run_trial(job: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; return its outcome (also sent as the ENDED event)."""
    return run_trials([job])[0]


def _run_one(
    trial: TrialJob, redis: Redis, checkpoint_dir: Path, rq_id: str | None, worker: str
) -> dict[str, Any]:
    reporter = _Reporter(redis, trial.trial_id, trial.attempt)
    stop = _StopFlag(trial, rq_id, reporter)
    if stop():
        return stop.outcome("before it started")
    try:
        return _train_trial(trial, checkpoint_dir, reporter, stop, worker)
    except SystemExit:  # RQ's cold stop: the trial was not at fault, let the master re-queue it
        return reporter.ended(EndStatus.INTERRUPTED, reason="the worker was stopped")
    except Exception as exc:  # a trial's failure is an outcome to record, not a worker crash
        log.exception("trial %s failed", trial.trial_id)
        return reporter.ended(EndStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")


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
    # A first attempt has no files yet: only a re-run lists the directory for them.
    existing = trial_checkpoints(directory, trial.trial_id) if trial.attempt > 1 else []
    model, state, existing, damaged = _resume_or_start(existing, config, data, trial.trial_id)
    writer = _CheckpointWriter(
        trial, checkpoint_dir, directory, reporter, stop, existing, data.image_shape
    )
    reporter.send(
        EventKind.STARTED,
        {
            "worker": worker,
            "host": socket.gethostname(),
            "resumed_from_epoch": state.epoch,
            "damaged_checkpoints": damaged,
        },
    )
    for k in range(len(state.history.epoch)):  # what the checkpoint holds, in case it was lost
        writer.report_epoch(state, k)
    if state.status is not TrainStatus.RUNNING:
        return writer.report_end(state, stop)
    started = time.perf_counter()
    state = train(model, data, config, state=state, should_stop=stop, on_epoch_end=writer.epoch)
    writer.train_seconds = time.perf_counter() - started
    if stop.superseded:
        return {"status": "superseded"}  # a newer attempt owns the trial and its files
    if state.iteration != writer.last_iteration:  # ended within an epoch: keep where it was
        writer.write(model, state, _accuracy(model, data))
    return writer.report_end(state, stop)


def _resume_or_start(
    existing: list[tuple[Path, CheckpointName]], config: TrainConfig, data: Dataset, trial_id: int
) -> tuple[FullyConnectedNet, TrainState, list[tuple[Path, CheckpointName]], list[str]]:
    """The model and state to go on from: the newest intact checkpoint's, else new ones.
    Also returns the trial's files still in use and what was set aside as damaged."""
    damaged: list[str] = []
    while existing:
        path = existing[-1][0]
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as exc:
            # Truncated or corrupted (a full disk, a bad volume): set it aside under a name
            # that is no checkpoint's, so it is kept for a look but never listed or loaded
            # again, and try the one before it.
            path.rename(path.with_name(path.name + DAMAGED_SUFFIX))
            log.warning("trial %s: %s; set aside as %s%s", trial_id, exc, path.name, DAMAGED_SUFFIX)
            damaged.append(str(exc).replace(str(path), path.name))
            existing = existing[:-1]
            continue
        if checkpoint.state.config == config:
            state = checkpoint.state
            if state.status is TrainStatus.STOPPED:
                # Stopped by a worker shutdown (a user's stop is caught by the stop flag
                # before this): go on from where it was.
                state.status = TrainStatus.RUNNING
            return checkpoint.model, state, existing, damaged
        log.warning("trial %s: checkpoint config differs; starting over", trial_id)
        break
    model = build_model(config, data)
    return model, new_state(config, model, len(data.X_train)), existing, damaged


def _accuracy(model: FullyConnectedNet, data: Dataset) -> float:
    with np.errstate(all="ignore"):  # an exploded model's scores may be inf or NaN
        return model.accuracy(data.X_val, data.y_val)


class _Reporter:
    """Collects this trial's events and appends them to the stream in one round trip: with
    the next stop poll, or, waiting out a Redis outage, at the trial's end."""

    def __init__(self, redis: Redis, trial_id: int, attempt: int) -> None:
        self.redis = redis
        self.trial_id = trial_id
        self.attempt = attempt
        self.pending: list[dict[str, str]] = []

    def send(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.pending.append(TrialEvent(kind, self.trial_id, self.attempt, data).to_fields())

    def flush(self, *also: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Send what is pending, plus the commands `also` (name, args) in the same round
        trip; returns the replies to `also`. Raises RedisError, keeping what is pending."""
        with self.redis.pipeline(transaction=False) as pipe:
            for fields in self.pending:
                pipe.xadd(EVENT_STREAM, fields)  # type: ignore[arg-type]
            for name, args in also:
                getattr(pipe, name)(*args)
            replies = pipe.execute()
        sent = len(self.pending)
        self.pending = []
        return replies[sent:]

    def ended(self, status: EndStatus, **data: Any) -> dict[str, Any]:
        outcome = {"status": status, **data}
        self.send(EventKind.ENDED, outcome)
        backoff = 0.1
        while True:
            try:
                self.flush()
                return outcome
            except RedisError as exc:
                # An event is never dropped: the master needs every one to account for
                # the trial. A worker that cannot reach Redis has nothing better to do.
                log.warning("trial %s: cannot send its end (%s); retrying", self.trial_id, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_SEND_BACKOFF_SECONDS)


class _StopFlag:
    """should_stop() for the trainer. True once the user stopped the trial or its sweep (keys
    polled at most every STOP_POLL_SECONDS, with the pending events, so a stop costs
    microseconds per iteration), the worker is shutting down, or the master gave this job up
    for dead."""

    def __init__(self, trial: TrialJob, rq_id: str | None, reporter: _Reporter) -> None:
        self.keys = (stop_key(trial.trial_id), sweep_stop_key(trial.sweep_id))
        self.rq_id = rq_id
        self.reporter = reporter
        self.next_poll = 0.0
        self.requested = False

    @property
    def interrupted(self) -> bool:
        return SHUTTING_DOWN.is_set()

    @property
    def superseded(self) -> bool:
        return self.rq_id in SUPERSEDED

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.requested and now >= self.next_poll:
            self.next_poll = now + STOP_POLL_SECONDS
            try:
                [found] = self.reporter.flush(("exists", self.keys))
                self.requested = bool(found)
            except RedisError as exc:  # Redis restarting: train on, poll again later
                log.warning("cannot poll the stop flags: %s", exc)
        return self.requested or self.interrupted or self.superseded

    def may_write(self) -> bool:
        """Whether this attempt may write (and prune) the trial's files: only while its
        lease is surely held. Cut off from Redis for longer (a partition), it may have been
        given up for dead and the trial given to another worker, whose files it must not
        touch: it waits until Redis answers and says which. Outside a worker there is no
        lease."""
        if self.rq_id is None:
            return True
        while not (self.superseded or self.interrupted):
            renewed = LEASE_RENEWED.get(self.rq_id)
            if renewed is not None and time.monotonic() - renewed < LEASE_SURELY_HELD_SECONDS:
                return True
            time.sleep(LEASE_RENEW_SECONDS / 4)
        return False

    def ending(self, when: str) -> tuple[EndStatus, str]:
        """The status and reason of a trial this flag ended `when` ("at epoch 2.50"): a
        user's stop wins over a worker shutdown, which re-queues the trial."""
        if self.requested:
            return EndStatus.STOPPED, f"stopped {when}"
        return EndStatus.INTERRUPTED, f"the worker shut down {when}"

    def outcome(self, when: str) -> dict[str, Any]:
        """The ENDED event of a trial this flag ended before it trained."""
        if self.superseded:
            return {"status": "superseded"}
        status, reason = self.ending(when)
        return self.reporter.ended(status, reason=reason)


class _CheckpointWriter:
    """Writes a checkpoint at every epoch end (and at an early end), prunes, and reports."""

    def __init__(
        self,
        trial: TrialJob,
        root: Path,
        directory: Path,
        reporter: _Reporter,
        stop: _StopFlag,
        existing: list[tuple[Path, CheckpointName]],
        image_shape: tuple[int, ...] | None,
    ) -> None:
        self.trial = trial
        self.stop = stop
        self.root = root
        self.directory = directory
        self.reporter = reporter
        self.last_iteration = -1
        # Saved with each checkpoint so the dashboard can draw first-layer weights as images.
        self.image_shape = image_shape
        self.train_seconds = 0.0  # in the trainer, this attempt: the rest is our overhead
        # The trial's files, oldest epoch first, kept up to date here rather than listed
        # again: a stage directory holds every trial's files.
        self.checkpoints = existing

    def epoch(self, model: FullyConnectedNet, state: TrainState) -> None:
        if self.write(model, state, state.history.val_acc[-1]):
            self.report_epoch(state, len(state.history.epoch) - 1)

    def report_epoch(self, state: TrainState, k: int) -> None:
        """Send the EPOCH event of the k-th epoch in the state's history."""
        history = state.history
        per_epoch = state.iterations_per_epoch
        start = round(history.epoch[k - 1] * per_epoch) if k else 0
        end = round(history.epoch[k] * per_epoch)
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
                "loss": [float(c) for c in history.loss[start:end]],
                **self._files(),
            },
        )

    def write(self, model: FullyConnectedNet, state: TrainState, val_acc: float) -> bool:
        """Write a checkpoint of `state` and prune; False if this attempt may no longer
        (its stop flag then ends the trial)."""
        if not self.stop.may_write():
            return False
        name = checkpoint_name(val_acc, self.trial.trial_id, state.epoch)
        path = save_checkpoint(
            self.directory / name,
            model,
            state,
            extra={"trial": self.trial.to_dict(), "image_shape": self.image_shape},
        )
        checkpoints = [c for c in self.checkpoints if c[0] != path]
        checkpoints.append((path, parse_checkpoint_name(path)))
        checkpoints.sort(key=lambda item: item[1].epoch)
        if self.trial.keep_checkpoints != "all":
            checkpoints = prune(checkpoints, path)
        self.checkpoints = checkpoints
        self.last_iteration = state.iteration
        return True

    def _files(self) -> dict[str, Any]:
        checkpoints = self.checkpoints
        if not checkpoints:
            return {"checkpoints": [], "best_val_acc": None, "best_epoch": None}
        _, best = best_of(checkpoints)
        return {
            "checkpoints": [str(p.relative_to(self.root)) for p, _ in checkpoints],
            "best_val_acc": best.val_acc,
            "best_epoch": best.epoch,
        }

    def report_end(self, state: TrainState, stop: _StopFlag) -> dict[str, Any]:
        history = state.history
        explosion = state.explosion
        outcome: dict[str, Any] = {
            "epochs_done": state.epoch,
            "val_acc": history.val_acc[-1] if history.val_acc else None,
            "train_seconds": self.train_seconds,
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
            status, outcome["reason"] = stop.ending(f"at epoch {state.epoch:.2f}")
            return self.reporter.ended(status, **outcome)
        return self.reporter.ended(EndStatus(state.status.value), **outcome)
