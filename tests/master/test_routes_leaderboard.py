"""/api/leaderboard ranks by best validation accuracy, ties to more epochs trained."""

from __future__ import annotations

from fastapi.testclient import TestClient

from master.db import Database
from master.models import Trial, TrialStatus
from master.settings import Settings
from tests.master.factories import example_spec


def test_leaderboard_ranks_by_accuracy_then_epochs(api: TestClient, database_url: str) -> None:
    spec = example_spec(stages=[{"trials": 5, "epochs": 1}])
    sweep_id = api.post("/api/sweeps", json=spec).json()["id"]
    other_id = api.post("/api/sweeps", json=spec).json()["id"]
    results = [(0.90, 1.0), (0.95, 1.0), (None, 0.0), (0.95, 5.0), (0.80, 2.0)]
    with Database(Settings(database_url=database_url).database).writing() as session:
        trials = session.query(Trial).filter_by(sweep_id=sweep_id).order_by(Trial.id).all()
        for trial, (acc, epochs) in zip(trials, results, strict=True):
            trial.best_val_acc, trial.epochs_done = acc, epochs
            trial.status = TrialStatus.FINISHED
        session.query(Trial).filter_by(sweep_id=other_id).first().best_val_acc = 0.99  # type: ignore[union-attr]

    board = api.get("/api/leaderboard", params={"sweep": sweep_id}).json()
    assert board["count"] == 4  # the trial without an accuracy is not ranked
    ranked = [(t["best_val_acc"], t["epochs_done"]) for t in board["data"]]
    assert ranked == [(0.95, 5.0), (0.95, 1.0), (0.90, 1.0), (0.80, 2.0)]
    assert [t["rank"] for t in board["data"]] == [1, 2, 3, 4]

    everything = api.get("/api/leaderboard").json()
    assert everything["data"][0]["sweep_id"] == other_id
    second_page = api.get("/api/leaderboard", params={"limit": 2, "offset": 2}).json()
    assert [t["rank"] for t in second_page["data"]] == [3, 4]
    assert api.get("/api/leaderboard", params={"sweep": 0}).status_code == 422
