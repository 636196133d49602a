"""Writing a trial's checkpoints while it trains, and reporting its epochs and its end.

One writer serves every trainer: the built-in net's runs (core.trainer) and a user
trainer's (core.run) keep the same history and best-epoch fields, and differ only in what a
checkpoint holds, which the caller's `snapshot(model, state, copy)` gives
(core.checkpoint.checkpoint_arrays, core.run_checkpoint.run_checkpoint_arrays).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import (
    CheckpointName,
    best_first,
    checkpoint_name,
    make_durable,
    parse_checkpoint_name,
    reported_best,
    write_checkpoint,
)
from core.distributions import epoch_distributions
from core.messages import CheckpointFiles, Ended, EndStatus, EpochEnded, TrialJob
from core.run import RunState
from core.state import TrainState, TrainStatus
from worker.attempt import Reporter, StopFlag
from worker.checkpoints import SYNCER, best_of, prune

# How often, at most, a training trial writes its newest state to a file and puts it on disk
# (fsync); it always writes its end, and its best epoch (kept in memory until then). A file
# per epoch cost the search benchmark's model 1.7 ms of its 60 ms epoch (3%), for a crash
# only, and an fsync per epoch wrote every epoch's file to the disk (26.5 MB for a 20-epoch
# trial against 2.7 MB): a crash of the worker, or a power loss, costs at most this much
# training, which the resumed attempt repeats bit for bit.
SYNC_SECONDS = 1.0

AnyRun = TrainState | RunState
# (model or trainer, its run's state, copy) -> the checkpoint's archive entries.
Snapshot = Callable[[Any, Any, bool], dict[str, np.ndarray]]


def _beats(name: CheckpointName, others: list[CheckpointName]) -> bool:
    """Whether a checkpoint of this name would be the best of it and `others`."""
    return all(best_first(name) > best_first(other) for other in others)


@dataclass(frozen=True)
class _Unwritten:
    """An epoch kept in memory to be written later: its file name and archive entries."""

    name: str
    parsed: CheckpointName
    arrays: dict[str, np.ndarray]


class CheckpointWriter:
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
        snapshot: Snapshot,
    ) -> None:
        self.trial = trial
        self.stop = stop
        self.root = root
        self.directory = directory
        self.reporter = reporter
        self.last_iteration = -1
        self.snapshot = snapshot
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

    def epoch(self, model: Any, state: AnyRun) -> None:
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
                arrays = self.snapshot(model, state, True)
                self.unwritten_best = _Unwritten(name, parsed, arrays)
        self.report_epoch(state, len(state.history.epoch) - 1)

    def report_epoch(self, state: AnyRun, k: int) -> None:
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

    def write(self, model: Any, state: AnyRun, val_acc: float) -> bool:
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
        arrays = self.snapshot(model, state, False)
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

    def _files(self, state: AnyRun) -> CheckpointFiles:
        paths = [str(p.relative_to(self.root)) for p, _ in self.checkpoints]
        best_val_acc, best_epoch = reported_best(
            self._names(),
            state.best_val_acc,
            state.best_epoch,
            promoted=self.trial.resume_from is not None,
        )
        return CheckpointFiles(paths, best_val_acc, best_epoch)

    def report_end(self, state: AnyRun, stop: StopFlag) -> dict[str, Any]:
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
