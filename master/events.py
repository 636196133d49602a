"""Applying worker events to the database.

Every event is applied idempotently, because the master re-reads the events it had not
acknowledged when it crashed: an epoch is stored once per (trial, epoch), a final status is
never overwritten, and events from an earlier attempt at a trial are ignored.

A trial whose worker shut down mid-trial ends INTERRUPTED: it goes back to the queue (the
scheduler gives it a new attempt, which resumes from its checkpoint), unless its sweep was
cancelled meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from core.messages import (
    CheckpointFiles,
    Ended,
    EndStatus,
    EpochEnded,
    EventKind,
    Started,
    TrialEvent,
)
from master.models import Stage, Sweep, SweepStatus, Trial, TrialEpoch, TrialStatus, utcnow

# The trial's status once an attempt ended so (an interrupted one is re-queued instead).
_FINAL_STATUSES: dict[EndStatus, TrialStatus] = {
    EndStatus.FINISHED: TrialStatus.FINISHED,
    EndStatus.EXPLODED: TrialStatus.EXPLODED,
    EndStatus.STOPPED: TrialStatus.STOPPED,
    EndStatus.FAILED: TrialStatus.FAILED,
}


@dataclass
class _Batch:
    """What a batch of events reads once: the epochs its trials already have, and the stages
    that workers' data warnings go to (every trial of a stage starts with the same ones)."""

    stored: set[tuple[int, float]]
    stages: dict[tuple[int, int], Stage | None] = field(default_factory=dict)
    # The new epochs' rows, inserted at once at the batch's end: one ORM object each cost
    # the master more than the insert itself.
    epochs: list[dict[str, Any]] = field(default_factory=list)


def apply_events(session: Session, events: list[TrialEvent]) -> set[int]:
    """Apply a batch of events in order; return the sweeps of the trials that ended.

    The batch's trials, and the epochs they already have, are read in two queries up front
    (the trials locked): one query per event made the master the bottleneck at a few hundred
    events a second."""
    ids = {e.trial_id for e in events}
    trials = {
        t.id: t for t in session.scalars(select(Trial).where(Trial.id.in_(ids)).with_for_update())
    }
    with_epochs = {e.trial_id for e in events if e.kind is EventKind.EPOCH}
    stored: set[tuple[int, float]] = set()
    if with_epochs:
        rows = session.execute(
            select(TrialEpoch.trial_id, TrialEpoch.epoch).where(
                TrialEpoch.trial_id.in_(with_epochs)
            )
        )
        stored = {(trial_id, epoch) for trial_id, epoch in rows}
    ended = set()
    batch = _Batch(stored)
    for event in events:
        trial = trials.get(event.trial_id)
        if trial is not None and (sweep_id := _apply(session, trial, event, batch)) is not None:
            ended.add(sweep_id)
    if batch.epochs:
        session.execute(insert(TrialEpoch), batch.epochs)
    return ended


def apply_event(session: Session, event: TrialEvent) -> int | None:
    """Apply one event; return the trial's sweep id when the trial just ended."""
    ended = apply_events(session, [event])
    return ended.pop() if ended else None


def _apply(session: Session, trial: Trial, event: TrialEvent, batch: _Batch) -> int | None:
    if event.attempt < trial.attempts:
        return None
    if trial.job_id is None:  # given up or re-queued: the attempt that sent it is over
        return None
    if trial.status.is_final:
        return None
    sent_at = datetime.fromtimestamp(event.at, UTC)
    match event.message:
        case Started() as started:
            trial.status = TrialStatus.RUNNING
            trial.worker = started.worker
            trial.started_at = trial.started_at or sent_at
            if started.damaged_checkpoints:
                _set_aside(trial, started.damaged_checkpoints)
            if started.data_warnings:
                _warn_stage(session, trial, started.data_warnings, batch)
            if started.num_classes is not None:
                trial.num_classes = started.num_classes
            if started.resumed_from_epoch < trial.start_epoch:
                # A promoted trial whose parent's checkpoint could not be used trains the
                # inherited epochs again: they count as trained by it, and its history is
                # what it trains, not the copy of its parent's.
                _forget_epochs_after(session, trial, started.resumed_from_epoch, batch)
                trial.start_epoch = started.resumed_from_epoch
                trial.reason = (
                    f"could not go on from trial {trial.parent_id}'s checkpoint; trained "
                    f"from epoch {started.resumed_from_epoch:g}"
                )
        case EpochEnded() as epoch:
            trial.status = TrialStatus.RUNNING
            _add_epoch(trial, epoch, batch)
            _update_files(trial, epoch.files)
            if trial.best_epoch == epoch.epoch:
                trial.train_acc = epoch.train_acc  # beside best_val_acc: the overfitting gap
        case Ended(status=EndStatus.INTERRUPTED) as ended:
            _update_files(trial, ended.files)
            why = ended.reason or "the worker shut down"
            if sweep_runs(session, trial):
                requeue(trial, why)
                return None
            end_cancelled(trial, why)
            return trial.sweep_id
        case Ended() as ended:
            trial.status = _FINAL_STATUSES[ended.status]
            # A promoted trial that had to train from scratch keeps saying so.
            fell_back = trial.parent_id is not None and trial.start_epoch == 0
            trial.reason = ended.reason or (trial.reason if fell_back else None)
            trial.explosion = ended.explosion
            trial.epochs_done = max(trial.epochs_done, ended.epochs_done or 0.0)
            trial.finished_at = sent_at
            _update_files(trial, ended.files)
            return trial.sweep_id
    return None


def _add_epoch(trial: Trial, epoch: EpochEnded, batch: _Batch) -> None:
    if (trial.id, epoch.epoch) in batch.stored:  # a re-read or re-sent event
        return
    batch.stored.add((trial.id, epoch.epoch))
    batch.epochs.append(
        {
            "trial_id": trial.id,
            "epoch": epoch.epoch,
            "cost": epoch.cost,
            "train_acc": epoch.train_acc,
            "val_acc": epoch.val_acc,
            "average_val_acc": epoch.average_val_acc,
            "learning_rate": epoch.learning_rate,
            "update_ratio": epoch.update_ratio,
            "loss": epoch.loss,
            "distributions": epoch.distributions or None,
        }
    )
    trial.epochs_done = max(trial.epochs_done, epoch.epoch)
    trial.val_acc = epoch.val_acc


def _forget_epochs_after(session: Session, trial: Trial, epoch: float, batch: _Batch) -> None:
    session.execute(
        delete(TrialEpoch).where(TrialEpoch.trial_id == trial.id, TrialEpoch.epoch > epoch)
    )
    batch.stored = {(t, e) for t, e in batch.stored if t != trial.id or e <= epoch}
    trial.epochs_done = epoch
    trial.val_acc = trial.best_val_acc = trial.best_epoch = trial.train_acc = None


def _warn_stage(session: Session, trial: Trial, warnings: list[str], batch: _Batch) -> None:
    """A worker found the trial's inputs unscaled: its stage says so, once."""
    key = (trial.sweep_id, trial.stage_index)
    if key not in batch.stages:
        # Once a batch, and without flushing the batch's rows first: one query, and a flush,
        # per started trial took 9% of the master's CPU in a budget sweep.
        with session.no_autoflush:
            batch.stages[key] = session.scalars(
                select(Stage).where(Stage.sweep_id == key[0], Stage.index == key[1])
            ).first()
    stage = batch.stages[key]
    if stage is None:
        return
    new = [w for w in warnings if w not in (stage.warnings or [])]
    if new:
        stage.warnings = [*(stage.warnings or []), *new]


def _set_aside(trial: Trial, damaged: list[str]) -> None:
    """The worker found these checkpoints ("NAME: why") damaged and renamed them: they are
    no longer the trial's files, and its reason says so until the trial ends."""
    names = {entry.partition(": ")[0] for entry in damaged}
    trial.checkpoints = [c for c in trial.checkpoints or [] if Path(c).name not in names]
    trial.reason = "set aside damaged checkpoints: " + "; ".join(damaged)


def _update_files(trial: Trial, files: CheckpointFiles | None) -> None:
    if files is not None:
        trial.checkpoints = files.checkpoints
        trial.best_val_acc = files.best_val_acc
        trial.best_epoch = files.best_epoch


def sweep_runs(session: Session, trial: Trial) -> bool:
    """Whether the trial's sweep still runs. Only then may an attempt that ended before its
    trial did be re-queued: nothing dispatches the trials of a cancelled sweep, so a trial
    re-queued there would stay queued for ever."""
    sweep = session.get(Sweep, trial.sweep_id)
    return sweep is not None and sweep.status == SweepStatus.RUNNING


def requeue(trial: Trial, why: str) -> None:
    """Put a trial back in the queue; the scheduler enqueues it as a new attempt, which
    resumes from the trial's latest checkpoint."""
    trial.status = TrialStatus.QUEUED
    trial.job_id = None
    trial.worker = None
    trial.reason = f"{why}; re-queued"


def end_cancelled(trial: Trial, why: str) -> None:
    """End a trial of a cancelled sweep whose attempt ended before it did."""
    trial.status = TrialStatus.STOPPED
    trial.reason = f"sweep cancelled; {why}"
    trial.finished_at = utcnow()
