"""Applying worker events: idempotent (the master re-reads what it had not acknowledged),
attempt-aware, and batched into a few queries."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.messages import EventKind, TrialEvent, job_id
from master.db import Database
from master.dispatching import JOBS_PER_WORKER, MAX_BATCH, batch_size
from master.events import apply_events
from master.models import Stage, Trial, TrialEpoch
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec


def first_trial(db: Database) -> Trial:
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 2, "epochs": 2}]))
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        trial = sweep_trials(session, sweep.id)[0]
        trial.attempts = 1
        trial.job_id = job_id(trial.id, 1)  # as once enqueued
        return trial


def sweep_trials(session: Session, sweep_id: int) -> list[Trial]:
    return list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))


def epoch_event(trial_id: int, epoch: float, attempt: int = 1) -> TrialEvent:
    data = {"epoch": epoch, "cost": 1.0, "train_acc": 0.5, "val_acc": 0.4, "loss": [1.0]}
    return TrialEvent(EventKind.EPOCH, trial_id, attempt, data)


def test_events_read_twice_are_stored_once(db: Database) -> None:
    trial = first_trial(db)
    running = [
        TrialEvent(EventKind.STARTED, trial.id, 1, {"worker": "w"}),
        epoch_event(trial.id, 1.0),
        epoch_event(trial.id, 2.0),
    ]
    ended = TrialEvent(EventKind.ENDED, trial.id, 1, {"status": "finished", "epochs_done": 2.0})
    with db.writing() as session:
        assert apply_events(session, running) == set()
    # As after a master crash before the acknowledgement, while the trial still runs (so
    # only the de-duplication of epochs, not the final status, can keep them single), and
    # once more within one batch.
    with db.writing() as session:
        assert apply_events(session, [*running, epoch_event(trial.id, 1.0), ended]) == {
            trial.sweep_id
        }
    with db.writing() as session:
        assert apply_events(session, [*running, ended]) == set()
    with db.reading() as session:
        epochs = session.scalars(
            select(TrialEpoch.epoch).where(TrialEpoch.trial_id == trial.id)
        ).all()
        assert sorted(epochs) == [1.0, 2.0]
        assert session.get_one(Trial, trial.id).status == "finished"


def test_events_of_an_older_attempt_are_ignored(db: Database) -> None:
    trial = first_trial(db)
    with db.writing() as session:
        session.get(Trial, trial.id).attempts = 2  # type: ignore[union-attr]
    stale = TrialEvent(EventKind.ENDED, trial.id, 1, {"status": "finished"})
    with db.writing() as session:
        assert apply_events(session, [stale, epoch_event(trial.id, 1.0)]) == set()
    with db.reading() as session:
        assert session.get(Trial, trial.id).status == "queued"  # type: ignore[union-attr]


def test_an_interrupted_trial_goes_back_to_the_queue(db: Database) -> None:
    trial = first_trial(db)
    ended = TrialEvent(
        EventKind.ENDED, trial.id, 1, {"status": "interrupted", "reason": "shut down"}
    )
    with db.writing() as session:
        assert apply_events(session, [ended]) == set()
    with db.reading() as session:
        back = session.get(Trial, trial.id)
        assert back is not None and back.status == "queued" and back.job_id is None
        assert back.reason == "shut down; re-queued"
    # The same attempt's late events (a worker cut off, then back) change nothing now.
    with db.writing() as session:
        late = TrialEvent(EventKind.STARTED, trial.id, 1, {"worker": "w"})
        assert apply_events(session, [late, epoch_event(trial.id, 1.0)]) == set()
    with db.reading() as session:
        back = session.get_one(Trial, trial.id)
        assert back.status == "queued" and back.epochs_done == 0 and back.worker is None


def test_start_and_end_are_the_workers_times_not_the_masters(db: Database) -> None:
    trial = first_trial(db)
    started = TrialEvent(EventKind.STARTED, trial.id, 1, {"worker": "w"}, at=1_700_000_000.0)
    ended = TrialEvent(
        EventKind.ENDED, trial.id, 1, {"status": "finished", "epochs_done": 2}, at=1_700_000_042.5
    )
    with db.writing() as session:
        apply_events(session, [started, ended])  # applied together, as batches are
    with db.reading() as session:
        done = session.get_one(Trial, trial.id)
        assert done.started_at is not None and done.finished_at is not None
        seconds = (done.finished_at - done.started_at).total_seconds()
        assert seconds == 42.5


@pytest.mark.parametrize(
    ("count", "workers", "epochs", "expected"),
    [
        (2000, 2, 1.0, MAX_BATCH),  # many short trials: as large as allowed
        (60, 2, 1.0, 60 // (2 * JOBS_PER_WORKER)),  # enough jobs to keep both busy
        (8, 2, 1.0, 1),  # few trials: one per job
        (60, 0, 0.5, 60 // JOBS_PER_WORKER),  # no worker yet: counted as one
        (82, 2, 3.0, 82 // (2 * JOBS_PER_WORKER)),  # a budget's first stage of 3 epochs
        (500, 2, 6.0, 1),  # longer trials are never batched
    ],
)
def test_batch_size(count: int, workers: int, epochs: float, expected: int) -> None:
    assert batch_size(count, workers, epochs) == expected


def test_a_restart_that_set_checkpoints_aside_drops_them_and_says_why(db: Database) -> None:
    trial = first_trial(db)
    kept, bad = (
        "sweep000001/stage0/val0.5000_trial000001_ep001.npz",
        "val0.6000_trial000001_ep002.npz",
    )
    with db.writing() as session:
        session.get_one(Trial, trial.id).checkpoints = [kept, f"sweep000001/stage0/{bad}"]
    started = TrialEvent(
        EventKind.STARTED,
        trial.id,
        1,
        {"worker": "w", "damaged_checkpoints": [f"{bad}: not a readable checkpoint (EOF)"]},
    )
    with db.writing() as session:
        apply_events(session, [started])
    with db.reading() as session:
        after = session.get_one(Trial, trial.id)
        assert after.checkpoints == [kept]
        assert (
            after.reason == f"set aside damaged checkpoints: {bad}: not a readable checkpoint (EOF)"
        )


def test_unscaled_inputs_a_worker_reports_become_a_warning_of_the_stage_once(db: Database) -> None:
    trial = first_trial(db)
    warning = "x.npz: the inputs look unscaled: ..."
    started = TrialEvent(
        EventKind.STARTED, trial.id, 1, {"worker": "w", "data_warnings": [warning]}
    )
    other = "y.npz: the inputs look unscaled: ..."
    started_again = TrialEvent(
        EventKind.STARTED, trial.id, 1, {"worker": "w", "data_warnings": [warning, other]}
    )
    with db.writing() as session:
        apply_events(session, [started, started])
    with db.writing() as session:  # a later batch: the stage is read again
        apply_events(session, [started_again, started])
    with db.reading() as session:
        stage = session.scalars(
            select(Stage).where(Stage.sweep_id == trial.sweep_id, Stage.index == 0)
        ).one()
        assert stage.warnings == [warning, other]
