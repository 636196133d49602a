"""A database with a sweep in it, written the way the master writes one, and the dashboard
over it through FastAPI's test client (SQLite, and PostgreSQL where configured)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoint import checkpoint_name, save_checkpoint
from core.config import TrainConfig
from core.data import Dataset
from core.trainer import build_model, train
from dashboard.app import create_app
from master.db import Database
from master.models import Trial, TrialEpoch, TrialStatus
from master.settings import Settings
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec

# The ranked order the fixture's finished trials must appear in: (val acc, epochs).
ACCURACIES = [0.91, 0.95, 0.62, 0.95, 0.30]


@dataclass
class Board:
    client: TestClient
    db: Database
    sweep_id: int
    trials: list[int]  # the sweep's trial ids, by id
    checkpoints: Path
    exploded: int  # a trial that exploded before its first epoch ended
    with_checkpoint: int  # a finished trial with a real checkpoint file


@pytest.fixture
def board(database_url: str, tmp_path: Path, digits: Dataset) -> Iterator[Board]:
    db = Database(database_url)
    db.create_tables()
    checkpoints = tmp_path / "checkpoints"
    spec = SweepSpec.model_validate(
        example_spec(stages=[{"trials": 8, "epochs": 2}, {"trials": 4, "epochs": 3}])
    )
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        session.flush()
        sweep_id = sweep.id
        trials = sorted(sweep_trials(session, sweep_id), key=lambda t: t.id)
        for trial, accuracy in zip(trials, ACCURACIES, strict=False):
            finish(session, trial, accuracy)
        exploded = trials[len(ACCURACIES)]
        exploded.status = TrialStatus.EXPLODED
        exploded.explosion = {"iteration": 17, "cost": 40.0, "initial_cost": 2.3, "ratio": 17.39}
        exploded.reason = "cost 40 at iteration 17 is 17.4x the first cost 2.3"
        exploded.epochs_done = 0.2
        ids = [t.id for t in trials]
        with_checkpoint = trials[0]
        relative = write_checkpoint(checkpoints, sweep_id, with_checkpoint.id, digits)
        with_checkpoint.checkpoints = [relative]
        exploded_id, checkpoint_id = exploded.id, with_checkpoint.id
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        checkpoint_dir_setting=str(checkpoints),
        redis_url="redis://127.0.0.1:1/0",  # nothing listens: only the workers page notices
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Board(client, db, sweep_id, ids, checkpoints, exploded_id, checkpoint_id)
    db.dispose()


def sweep_trials(session: Session, sweep_id: int) -> list[Trial]:
    return list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))


def finish(session: Session, trial: Trial, accuracy: float) -> None:
    """What the master records for a trial that trained 2 epochs."""
    trial.status = TrialStatus.FINISHED
    trial.epochs_done = 2.0
    trial.best_val_acc = accuracy
    trial.best_epoch = 2.0
    trial.train_acc = min(1.0, accuracy + 0.03)
    trial.val_acc = accuracy
    trial.worker = "w0"
    for epoch in (1.0, 2.0):
        session.add(
            TrialEpoch(
                trial_id=trial.id,
                epoch=epoch,
                cost=2.0 / epoch,
                train_acc=accuracy * epoch / 2,
                val_acc=accuracy * epoch / 2,
                average_val_acc=None,
                learning_rate=1e-3,
                update_ratio={"W1": 2e-3, "b1": 0.5, "W2": 1e-3 * epoch, "b2": 0.1},
                loss=[2.3, 2.1, 1.9],
            )
        )


def write_checkpoint(root: Path, sweep_id: int, trial_id: int, digits: Dataset) -> str:
    """A real checkpoint of a small digits model, where a worker would write it."""
    config = TrainConfig(num_epochs=1, learning_rate=1e-2, hidden_sizes=(12,))
    model = build_model(config, digits)
    state = train(model, digits, config)
    relative = f"sweep{sweep_id:06d}/stage0/{checkpoint_name(0.91, trial_id, 2)}"
    save_checkpoint(root / relative, model, state, extra={"image_shape": [8, 8]})
    return relative
