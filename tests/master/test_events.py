"""Applying worker events: idempotent (the master re-reads what it had not acknowledged),
attempt-aware, and batched into a few queries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.messages import EventKind, TrialEvent
from master.db import Database
from master.events import apply_events
from master.models import Trial, TrialEpoch
from master.scheduler import JOBS_PER_WORKER, MAX_BATCH, batch_size
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.create_tables()
    yield database
    database.dispose()


def first_trial(db: Database) -> Trial:
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 2, "epochs": 2}]))
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        trial = sweep_trials(session, sweep.id)[0]
        trial.attempts = 1
        return trial


def sweep_trials(session: Session, sweep_id: int) -> list[Trial]:
    return list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))


def epoch_event(trial_id: int, epoch: float, attempt: int = 1) -> TrialEvent:
    data = {"epoch": epoch, "cost": 1.0, "train_acc": 0.5, "val_acc": 0.4, "loss": [1.0]}
    return TrialEvent(EventKind.EPOCH, trial_id, attempt, data)


def test_events_read_twice_are_stored_once(db: Database) -> None:
    trial = first_trial(db)
    events = [
        TrialEvent(EventKind.STARTED, trial.id, 1, {"worker": "w"}),
        epoch_event(trial.id, 1.0),
        epoch_event(trial.id, 2.0),
        TrialEvent(EventKind.ENDED, trial.id, 1, {"status": "finished", "epochs_done": 2.0}),
    ]
    with db.writing() as session:
        assert apply_events(session, events) == {trial.sweep_id}
    with db.writing() as session:  # as after a master crash before the acknowledgement
        assert apply_events(session, events + [epoch_event(trial.id, 1.0)]) == set()
    with db.reading() as session:
        stored = session.scalar(
            select(func.count()).select_from(TrialEpoch).where(TrialEpoch.trial_id == trial.id)
        )
        assert stored == 2
        assert session.get(Trial, trial.id).status == "finished"  # type: ignore[union-attr]


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


@pytest.mark.parametrize(
    ("count", "workers", "epochs", "expected"),
    [
        (2000, 2, 1.0, MAX_BATCH),  # many short trials: as large as allowed
        (60, 2, 1.0, 60 // (2 * JOBS_PER_WORKER)),  # enough jobs to keep both busy
        (8, 2, 1.0, 1),  # few trials: one per job
        (60, 0, 0.5, 60 // JOBS_PER_WORKER),  # no worker yet: counted as one
        (500, 2, 5.0, 1),  # longer trials are never batched
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
