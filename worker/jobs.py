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
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from redis import Redis
from rq import get_current_job

from core.checkpoint import (
    CheckpointError,
    CheckpointName,
    best_first,
    checkpoint_arrays,
    checkpoint_name,
    load_checkpoint,
    make_durable,
    parse_checkpoint_name,
    reported_best,
    write_checkpoint,
)
from core.config import TrainConfig
from core.data import Dataset, confine
from core.distributions import epoch_distributions
from core.messages import (
    CheckpointFiles,
    Ended,
    EndStatus,
    EpochEnded,
    Started,
    TrialJob,
)
from core.model import FullyConnectedNet
from core.state import TrainState, TrainStatus
from core.trainer import ContinuationError, build_model, continue_to, new_state, train
from worker.attempt import Reporter, StopFlag
from worker.checkpoints import SYNCER, best_of, prune, trial_checkpoints
from worker.datasets import DATASETS
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
DAMAGED_SUFFIX = ".damaged"  # added to a checkpoint's name that cannot be loaded
# How often, at most, a training trial writes its newest state to a file and puts it on disk
# (fsync); it always writes its end, and its best epoch (kept in memory until then). A file
# per epoch cost the search benchmark's model 1.7 ms of its 60 ms epoch (3%), for a crash
# only, and an fsync per epoch wrote every epoch's file to the disk (26.5 MB for a 20-epoch
# trial against 2.7 MB): a crash of the worker, or a power loss, costs at most this much
# training, which the resumed attempt repeats bit for bit.
SYNC_SECONDS = 1.0


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
    directory = checkpoint_dir / trial.checkpoint_subdir
    # A first attempt has no files yet: only a re-run lists the directory for them.
    existing = trial_checkpoints(directory, trial.trial_id) if trial.attempt > 1 else []
    resumed, existing, damaged = _resume(existing, config, trial.trial_id)
    if resumed is None and trial.resume_from is not None:
        resumed = _promoted(checkpoint_dir / trial.resume_from, config)
    if resumed is None:
        fresh = build_model(config, data)
        resumed = fresh, new_state(config, fresh, len(data.X_train))
    model, state = resumed
    writer = _CheckpointWriter(trial, checkpoint_dir, directory, reporter, stop, existing, data)
    host = socket.gethostname()
    warnings = list(data.warnings)
    reporter.send(Started(worker, host, state.epoch, damaged, warnings, data.num_classes))
    if existing:  # a resumed attempt: what its checkpoint holds, in case the events were lost
        for k in range(len(state.history.epoch)):
            writer.report_epoch(state, k)
    # (A promoted trial's first epochs are its parent's: the master copied them.)
    if state.status is not TrainStatus.RUNNING:
        return writer.report_end(state, stop)
    started = time.perf_counter()
    state = train(model, data, config, state=state, should_stop=stop, on_epoch_end=writer.epoch)
    writer.train_seconds = time.perf_counter() - started
    if stop.superseded:
        return {"status": "superseded"}  # a newer attempt owns the trial and its files
    if state.iteration != writer.last_iteration:  # where it ended, if not in a file yet
        ended_at_epoch = bool(state.history.epoch) and state.history.epoch[-1] == state.epoch
        val_acc = state.history.val_acc[-1] if ended_at_epoch else _accuracy(model, data)
        writer.write(model, state, val_acc)
    return writer.report_end(state, stop)


def _resume(
    existing: list[tuple[Path, CheckpointName]], config: TrainConfig, trial_id: int
) -> tuple[
    tuple[FullyConnectedNet, TrainState] | None, list[tuple[Path, CheckpointName]], list[str]
]:
    """The model and state to go on from: the newest intact checkpoint's, else None. Also
    returns the trial's files still in use and what was set aside as damaged."""
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
            return (checkpoint.model, state), existing, damaged
        log.warning("trial %s: checkpoint config differs; starting over", trial_id)
        break
    return None, existing, damaged


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


def _accuracy(model: FullyConnectedNet, data: Dataset) -> float:
    with np.errstate(all="ignore"):  # an exploded model's scores may be inf or NaN
        return model.accuracy(data.X_val, data.y_val)


def _beats(name: CheckpointName, others: list[CheckpointName]) -> bool:
    """Whether a checkpoint of this name would be the best of it and `others`."""
    return all(best_first(name) > best_first(other) for other in others)


@dataclass(frozen=True)
class _Unwritten:
    """An epoch kept in memory to be written later: its file name and archive entries."""

    name: str
    parsed: CheckpointName
    arrays: dict[str, np.ndarray]


class _CheckpointWriter:
    """Writes checkpoints (at most every SYNC_SECONDS, and at the end), prunes, and reports
    every epoch.

    The files a trial ends with are those a checkpoint per epoch would leave: its newest and
    its best epoch's. An epoch that is the best so far, written or not, is kept in memory
    (core.checkpoint.checkpoint_arrays, copied) and written with the next write, unless a
    better one replaces it first. A checkpoint is written whole and renamed into place at
    once, which a crash of the worker cannot undo. Putting it on disk (fsync) is what only a
    power loss needs: SYNCER puts the newest file on disk at most every SYNC_SECONDS while
    the trial trains on, and the trial's best and last files at its end.
    The file last put on disk is pruned only once a newer one is, so that a power loss always
    leaves one intact and costs at most SYNC_SECONDS of training (resuming from it ends bit
    for bit as if nothing had happened). While a trial trains it keeps at most four files:
    the best, the newest on disk, the one being put there and the newest (a resumed attempt
    also keeps the files it started with until one of its own is on disk)."""

    def __init__(
        self,
        trial: TrialJob,
        root: Path,
        directory: Path,
        reporter: Reporter,
        stop: StopFlag,
        existing: list[tuple[Path, CheckpointName]],
        data: Dataset,
    ) -> None:
        self.trial = trial
        self.stop = stop
        self.root = root
        self.directory = directory
        self.reporter = reporter
        self.last_iteration = -1
        # Saved with each checkpoint: the dashboard draws first-layer weights as images, and
        # the preprocessing makes the model predict on raw inputs.
        self.extra = {"trial": trial.to_dict(), "image_shape": data.image_shape}
        self.preprocessing = data.preprocessing
        self.train_seconds = 0.0  # in the trainer, this attempt: the rest is our overhead
        # The trial's files, oldest epoch first, kept up to date here rather than listed
        # again: a stage directory holds every trial's files.
        self.checkpoints = existing
        # A resumed attempt's files may be all there is on disk: kept until one of this
        # attempt's is there.
        self.inherited = {path for path, _ in existing}
        self.newest: Path | None = None  # written by this attempt
        self.on_disk: set[Path] = set()  # put on disk by this attempt, and not pruned
        self.durable: Path | None = None  # the newest of those
        self.syncing: Future[None] | None = None
        self.syncing_path: Path | None = None
        # On the monotonic clock. A trial shorter than SYNC_SECONDS writes and syncs only its
        # end (and its best epoch, if that is another).
        self.next_sync = self.next_write = time.monotonic() + SYNC_SECONDS
        self.every_file = trial.keep_checkpoints == "all"  # each kept, so each on disk
        self.unwritten_best: _Unwritten | None = None

    def epoch(self, model: FullyConnectedNet, state: TrainState) -> None:
        if not self.stop.may_write():
            return  # the stop flag ends the trial
        val_acc = state.history.val_acc[-1]
        # A finished run's last epoch is its end: written now, so that its event names it.
        finished = state.status is not TrainStatus.RUNNING
        if self.every_file or finished or time.monotonic() >= self.next_write:
            self.write(model, state, val_acc)
        else:
            name = checkpoint_name(val_acc, self.trial.trial_id, state.epoch)
            parsed = parse_checkpoint_name(name)
            if _beats(parsed, self._names()):
                arrays = checkpoint_arrays(model, state, self.extra, self.preprocessing, True)
                self.unwritten_best = _Unwritten(name, parsed, arrays)
        self.report_epoch(state, len(state.history.epoch) - 1)

    def report_epoch(self, state: TrainState, k: int) -> None:
        """Send the EPOCH event of the k-th epoch in the state's history."""
        history = state.history
        per_epoch = state.iterations_per_epoch
        start = round(history.epoch[k - 1] * per_epoch) if k else 0
        end = round(history.epoch[k] * per_epoch)
        self.reporter.send(
            EpochEnded(
                epoch=history.epoch[k],
                train_acc=float(history.train_acc[k]),
                val_acc=float(history.val_acc[k]),
                cost=float(history.cost[k]),
                average_val_acc=float(history.average_val_acc[k]),
                learning_rate=float(history.lr[k]),
                update_ratio={n: float(v[k]) for n, v in history.update_ratio.items()},
                loss=[float(c) for c in history.loss[start:end]],
                files=self._files(state),
                distributions=epoch_distributions(history, k),
            )
        )

    def write(self, model: FullyConnectedNet, state: TrainState, val_acc: float) -> bool:
        """Write a checkpoint of `state`, start putting it on disk if one is due, and prune;
        False if this attempt may no longer write (its stop flag then ends the trial)."""
        if not self.stop.may_write():
            return False
        self._collect(wait=self.every_file)
        name = checkpoint_name(val_acc, self.trial.trial_id, state.epoch)
        unwritten, self.unwritten_best = self.unwritten_best, None
        if (
            unwritten is not None
            and unwritten.name != name
            and not _beats(parse_checkpoint_name(name), [unwritten.parsed])
        ):  # still the best: its own file (the same name is this very epoch)
            self._add(write_checkpoint(self.directory / unwritten.name, unwritten.arrays, False))
        arrays = checkpoint_arrays(model, state, self.extra, self.preprocessing)
        path = write_checkpoint(self.directory / name, arrays, durable=False)
        self._add(path)
        self.newest = path
        self.next_write = time.monotonic() + SYNC_SECONDS
        if self.syncing is None and (self.every_file or time.monotonic() >= self.next_sync):
            self.next_sync = time.monotonic() + SYNC_SECONDS
            self.syncing_path = path
            self.syncing = SYNCER.submit(make_durable, path)
        self._prune()
        self.last_iteration = state.iteration
        return True

    def _names(self) -> list[CheckpointName]:
        """The trial's checkpoint names, the unwritten best's included (as its file will
        name it)."""
        names = [name for _, name in self.checkpoints]
        if self.unwritten_best is not None:
            names.append(self.unwritten_best.parsed)
        return names

    def _add(self, path: Path) -> None:
        checkpoints = [c for c in self.checkpoints if c[0] != path]
        checkpoints.append((path, parse_checkpoint_name(path)))
        checkpoints.sort(key=lambda item: item[1].epoch)
        self.checkpoints = checkpoints

    def _collect(self, wait: bool) -> None:
        """Take in the sync under way once it is done (or wait for it): an error there fails
        the trial, as a failed write does."""
        if self.syncing is None or not (wait or self.syncing.done()):
            return
        syncing, self.syncing = self.syncing, None
        syncing.result()
        assert self.syncing_path is not None
        self.durable = self.syncing_path
        self.on_disk.add(self.durable)

    def _prune(self) -> None:
        """Delete this trial's files but the best, the newest, the newest on disk and the one
        going there (and, until one of this attempt's is on disk, the inherited ones)."""
        if self.every_file:
            return
        keep = {p for p in (self.newest, self.durable, self.syncing_path) if p is not None}
        if self.durable is None:
            keep |= self.inherited
        self.checkpoints = prune(self.checkpoints, keep)
        self.on_disk &= {p for p, _ in self.checkpoints}

    def _finish(self) -> None:
        """Put the files the trial ends with on disk: its newest and its best (which the master
        offers as the model), then keep those two."""
        self._collect(wait=True)
        if self.newest is None or not self.stop.may_write():
            return  # nothing written, or another attempt may own the files now
        best = best_of(self.checkpoints)[0]
        for path in dict.fromkeys((self.newest, best)):
            if path not in self.on_disk:
                make_durable(path)
                self.on_disk.add(path)
        self.durable = self.newest
        self.syncing_path = None
        self._prune()

    def _files(self, state: TrainState) -> CheckpointFiles:
        paths = [str(p.relative_to(self.root)) for p, _ in self.checkpoints]
        best_val_acc, best_epoch = reported_best(
            self._names(),
            state.best_val_acc,
            state.best_epoch,
            promoted=self.trial.resume_from is not None,
        )
        return CheckpointFiles(paths, best_val_acc, best_epoch)

    def report_end(self, state: TrainState, stop: StopFlag) -> dict[str, Any]:
        self._finish()  # the files the end names are on disk before it is sent
        history = state.history
        explosion = state.explosion
        status, reason = EndStatus(state.status.value), None
        if explosion is not None:
            reason = (
                f"cost {explosion.cost:.4g} at iteration {explosion.iteration} is "
                f"{explosion.ratio:.3g}x the first cost {explosion.initial_cost:.4g}"
            )
        elif state.status is TrainStatus.STOPPED:
            status, reason = stop.ending(f"at epoch {state.epoch:.2f}")
        return self.reporter.end(
            Ended(
                status,
                reason=reason,
                epochs_done=state.epoch,
                val_acc=history.val_acc[-1] if history.val_acc else None,
                train_seconds=self.train_seconds,
                explosion=None if explosion is None else explosion.to_json(),
                files=self._files(state),
            )
        )
