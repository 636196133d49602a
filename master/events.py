"""Applying worker events to the database.

Every event is applied idempotently, because the master re-reads the events it had not
acknowledged when it crashed: an epoch is stored once per (trial, epoch), a final status is
never overwritten, and events from an earlier attempt at a trial are ignored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.messages import EventKind, TrialEvent
from master.models import Trial, TrialEpoch, TrialStatus, utcnow

_ENDED_STATUSES = {
    "finished": TrialStatus.FINISHED,
    "exploded": TrialStatus.EXPLODED,
    "stopped": TrialStatus.STOPPED,
    "failed": TrialStatus.FAILED,
}


def apply_event(session: Session, event: TrialEvent) -> int | None:
    """Apply one event; return the trial's sweep id when the trial just ended."""
    trial = session.get(Trial, event.trial_id, with_for_update=True)
    if trial is None or event.attempt < trial.attempts:
        return None
    if TrialStatus(trial.status).is_final:
        return None
    data = event.data
    if event.kind is EventKind.STARTED:
        trial.status = TrialStatus.RUNNING
        trial.worker = data.get("worker")
        trial.started_at = trial.started_at or utcnow()
    elif event.kind is EventKind.EPOCH:
        trial.status = TrialStatus.RUNNING
        _add_epoch(session, trial, data)
        _update_files(trial, data)
        if trial.best_epoch == float(data["epoch"]):
            trial.train_acc = data["train_acc"]  # beside best_val_acc: the overfitting gap
    elif event.kind is EventKind.ENDED:
        trial.status = _ENDED_STATUSES.get(data.get("status", ""), TrialStatus.FAILED)
        trial.reason = data.get("reason")
        trial.explosion = data.get("explosion")
        trial.epochs_done = max(trial.epochs_done, data.get("epochs_done") or 0.0)
        trial.finished_at = utcnow()
        _update_files(trial, data)
        return trial.sweep_id
    return None


def _add_epoch(session: Session, trial: Trial, data: dict[str, Any]) -> None:
    epoch = float(data["epoch"])
    exists = session.scalar(
        select(TrialEpoch.id).where(TrialEpoch.trial_id == trial.id, TrialEpoch.epoch == epoch)
    )
    if exists is not None:
        return
    session.add(
        TrialEpoch(
            trial_id=trial.id,
            epoch=epoch,
            cost=data.get("cost"),
            train_acc=data["train_acc"],
            val_acc=data["val_acc"],
            average_val_acc=data.get("average_val_acc"),
            learning_rate=data.get("learning_rate"),
            update_ratio=data.get("update_ratio") or {},
            loss=data.get("loss") or [],
        )
    )
    trial.epochs_done = max(trial.epochs_done, epoch)
    trial.val_acc = data["val_acc"]


def _update_files(trial: Trial, data: dict[str, Any]) -> None:
    if "checkpoints" in data:
        trial.checkpoints = data["checkpoints"]
        trial.best_val_acc = data.get("best_val_acc")
        trial.best_epoch = data.get("best_epoch")
