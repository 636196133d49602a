"""A user trainer's trials on a worker (worker.trainers through worker.jobs, real Redis):
the same events, files, kill, promotion and ensembles as the built-in net's, and refusals
of any trainer the worker's operator did not install."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis import Redis

from core.checkpoint import parse_checkpoint_name, read_summary
from core.data import load_dataset
from core.messages import EnsembleJob, EventKind, TrialJob
from core.run_checkpoint import load_run_checkpoint
from dashboard.weights import NoImage, describe_first_layer, first_layer_png
from tests.trainers import EXAMPLE, EXAMPLE_DIR, example_trainer, explodes_at_iteration_1
from tests.worker.test_jobs import events
from worker import lifecycle
from worker.ensembles import evaluate
from worker.jobs import run_trial
from worker.settings import WorkerSettings

TRAINERS = ",".join(
    [
        EXAMPLE,
        "scripted=tests.trainers:ScriptedTrainer",
        "failing=tests.trainers:FailingSetupTrainer",
    ]
)


@pytest.fixture
def worker_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHECKPOINT_DIR", str(checkpoints))
    monkeypatch.setenv("HPSEARCH_DATASET_DIRS", str(tmp_path))
    monkeypatch.setenv("HPSEARCH_TRAINERS", TRAINERS)
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    return checkpoints


def user_job(trial_id: int = 42, trainer: str = "twolayer", **changes: Any) -> dict[str, Any]:
    job = TrialJob(
        trial_id=trial_id,
        sweep_id=3,
        stage_index=0,
        dataset="digits",
        hyperparameters={"learning_rate": 3e-3, "hidden_size": 32},
        num_epochs=3,
        seed=5,
        explode_factor=3.0,
        trainer=trainer,
    ).to_dict()
    job.update(changes)
    return job


def test_a_user_trainer_reports_every_epoch_and_keeps_named_checkpoints(
    redis: Redis, worker_env: Path
) -> None:
    outcome = run_trial(user_job())
    assert outcome["status"] == "finished", outcome
    kinds = [e.kind for e in events(redis)]
    assert kinds == [EventKind.STARTED] + [EventKind.EPOCH] * 3 + [EventKind.ENDED]
    epochs = [e.data for e in events(redis) if e.kind is EventKind.EPOCH]
    assert [e["epoch"] for e in epochs] == [1.0, 2.0, 3.0]
    assert all(0.5 < e["val_acc"] <= 1 for e in epochs[1:])
    assert epochs[0]["average_val_acc"] is None  # it keeps no running average: not reported
    # What it reports of itself: the rate it used, and its hidden layer's activations.
    assert [e["learning_rate"] for e in epochs] == [3e-3, 3e-3 * 0.95, 3e-3 * 0.95**2]
    assert set(epochs[-1]["distributions"]) == {"activations", "dead_units"}
    assert len(epochs[-1]["distributions"]["activations"]["layer1"]) == 10  # the bins
    files = sorted((worker_env / "sweep000003" / "stage0").glob("*.npz"))
    assert outcome["checkpoints"] == [str(f.relative_to(worker_env)) for f in files]
    best = max(files, key=lambda f: parse_checkpoint_name(f).val_acc)
    assert parse_checkpoint_name(best).val_acc == round(max(e["val_acc"] for e in epochs), 4)
    summary = read_summary(best)
    assert summary["trainer"] == {"name": "twolayer", "version": "1"}
    assert summary["extra"]["trial"]["trainer"] == "twolayer"


@pytest.mark.parametrize("name", ["os:system", "json.tool:main", "mlp2"])
def test_a_trainer_the_worker_was_not_given_is_refused_and_nothing_imported(
    redis: Redis, worker_env: Path, name: str
) -> None:
    sys.modules.pop("json.tool", None)
    outcome = run_trial(user_job(trainer=name))
    assert "json.tool" not in sys.modules
    assert outcome["status"] == "failed"
    assert f"trainer {name!r} is not installed on this worker" in outcome["reason"]
    assert "(it has: mlp, failing, scripted, twolayer)" in outcome["reason"]
    assert not (worker_env / "sweep000003").exists()


def test_a_trainer_that_raises_in_setup_fails_its_trial_and_the_next_trial_runs(
    redis: Redis, worker_env: Path
) -> None:
    failed = run_trial(user_job(trainer="failing", hyperparameters={}))
    assert failed["status"] == "failed"
    assert failed["reason"] == (
        "TrainerError: trainer failing: setup raised RuntimeError: no GPU found"
    )
    assert run_trial(user_job(trial_id=43))["status"] == "finished"


def test_a_bad_hyperparameter_in_a_job_fails_its_trial_naming_it(
    redis: Redis, worker_env: Path
) -> None:
    outcome = run_trial(user_job(hyperparameters={"hidden_size": 0}))
    assert outcome["status"] == "failed"
    assert "hidden_size: must be >= 1, got 0" in outcome["reason"]


def test_a_user_trainer_whose_cost_triples_explodes_at_iteration_1(
    redis: Redis, worker_env: Path
) -> None:
    job = user_job(trainer="scripted", hyperparameters={"costs": explodes_at_iteration_1()})
    outcome = run_trial(job)
    assert outcome["status"] == "exploded"
    assert outcome["explosion"]["iteration"] == 1
    assert "at iteration 1 is 3.05x the first cost" in outcome["reason"]


def epoch_rows(redis: Redis) -> dict[float, tuple[Any, ...]]:
    """Epoch -> what its EPOCH event says of the training (not of the files)."""
    return {
        e.data["epoch"]: (e.data["loss"], e.data["cost"], e.data["train_acc"], e.data["val_acc"])
        for e in events(redis)
        if e.kind is EventKind.EPOCH
    }


def test_a_promoted_user_trial_goes_on_from_its_parents_checkpoint_exactly(
    redis: Redis, worker_env: Path
) -> None:
    straight = run_trial(user_job(trial_id=50, num_epochs=5, stage_index=2))
    reference = epoch_rows(redis)
    parent = run_trial(user_job(trial_id=51, num_epochs=2))
    redis.flushall()
    child = run_trial(
        user_job(trial_id=52, num_epochs=5, stage_index=1, resume_from=parent["checkpoints"][-1])
    )
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert started.data["resumed_from_epoch"] == 2.0
    trained = epoch_rows(redis)
    assert list(trained) == [3.0, 4.0, 5.0]
    assert trained == {k: reference[k] for k in (3.0, 4.0, 5.0)}  # every cost, bit for bit
    assert child["best_val_acc"] == straight["best_val_acc"]


def test_a_user_trial_shut_down_mid_epoch_resumes_from_its_checkpoint_exactly(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_trial(user_job(trial_id=80, keep_checkpoints="all"))
    reference = epoch_rows(redis)
    redis.flushall()
    cls = example_trainer()
    original = cls.train_step

    def step_then_shut_down(self: Any, X: Any, y: Any, epoch: float) -> float:
        cost: float = original(self, X, y, epoch)
        if epoch >= 1.5:  # as a SIGTERM half-way through the second epoch would
            lifecycle.SHUTTING_DOWN.set()
        return cost

    with monkeypatch.context() as patch:
        patch.setattr(cls, "train_step", step_then_shut_down)
        try:
            outcome = run_trial(user_job(trial_id=81, keep_checkpoints="all"))
        finally:
            lifecycle.SHUTTING_DOWN.clear()
    assert outcome["status"] == "interrupted", outcome
    redis.flushall()
    resumed = run_trial(user_job(trial_id=81, keep_checkpoints="all", attempt=2))
    assert resumed["status"] == "finished"
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert 1.5 < started.data["resumed_from_epoch"] < 2.0  # from its mid-epoch checkpoint
    assert epoch_rows(redis) == reference  # every epoch's costs and accuracies


def test_a_checkpoint_of_another_version_of_the_trainer_is_not_resumed(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_trial(user_job(trial_id=90, num_epochs=2))
    monkeypatch.setattr(example_trainer(), "version", "2")
    redis.flushall()
    rerun = run_trial(user_job(trial_id=90, num_epochs=2, attempt=2))
    assert rerun["status"] == "finished"
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert started.data["resumed_from_epoch"] == 0.0  # trained again, by version 2
    assert read_summary(worker_env / rerun["checkpoints"][-1])["trainer"]["version"] == "2"


def test_an_ensemble_of_user_trainer_checkpoints_averages_their_probabilities(
    redis: Redis, worker_env: Path
) -> None:
    members = []
    for trial_id, seed in ((60, 1), (61, 2), (62, 3)):
        outcome = run_trial(user_job(trial_id=trial_id, seed=seed))
        best = max(outcome["checkpoints"], key=lambda p: parse_checkpoint_name(p).val_acc)
        members.append(best)
    job = EnsembleJob(ensemble_id=1, sweep_id=3, dataset="digits", members=members)
    result = evaluate(job, WorkerSettings(), lambda: False)
    assert result.status == "finished" and result.has_test
    for member, path in zip(result.members, members, strict=True):  # as its file names it
        assert member.val_acc == pytest.approx(parse_checkpoint_name(path).val_acc, abs=5e-5)
    assert all(m.average_val_acc is None for m in result.members)  # it keeps no average
    assert [p.k for p in result.curve] == [1, 2, 3]
    # The curve is the members' probabilities averaged, as the trainers give them here.
    data = load_dataset("digits")
    trainers = {"twolayer": example_trainer()}
    probabilities = [
        load_run_checkpoint(worker_env / m, trainers).trainer.probabilities(data.X_val)
        for m in members
    ]
    for k in (2, 3):
        averaged = np.mean(probabilities[:k], axis=0)
        expected = float(np.mean(np.argmax(averaged, axis=1) == data.y_val))
        assert result.curve[k - 1].val_acc == expected
    assert result.curve[-1].test_acc is not None


def test_the_first_layer_a_trainer_reports_is_drawn_by_the_dashboard(
    redis: Redis, worker_env: Path
) -> None:
    with_weights = run_trial(user_job(trial_id=70))
    without = run_trial(user_job(trial_id=71, trainer="scripted", hyperparameters={}))
    path = worker_env / with_weights["checkpoints"][-1]
    assert describe_first_layer(path) == (32, 32, (8, 8))  # hidden_size 32, digits' 8x8
    assert first_layer_png(path).startswith(b"\x89PNG")
    with pytest.raises(NoImage, match=r"no first-layer weights \(params/W1\)"):
        describe_first_layer(worker_env / without["checkpoints"][-1])
