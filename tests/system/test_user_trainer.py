"""A user's own model searched through the real system: `hpsearch master`, real RQ workers
given the example trainer (examples/twolayer) by HPSEARCH_TRAINERS, our own Redis. Its sweep
runs coarse to fine with promotion, is scored on the test split, ensembles and predicts
from the shell, is rebuilt by reindex, and a trial whose worker is SIGKILLed resumes
exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer

from core.contract import Declaration
from core.data import load_dataset
from core.messages import TrialJob
from core.run import new_run, problem_of, run
from core.run_checkpoint import build_trainer
from master.queueing import JOB_FUNCTION
from tests.servers import wait_for
from tests.system.conftest import System, running_system
from tests.system.test_evaluation import evaluated, finished_ensemble, ranked_rows
from tests.trainers import (
    EXAMPLE,
    EXAMPLE_DIR,
    HAS_TORCH,
    TORCH_DIR,
    TORCH_EXAMPLE,
    example_trainer,
    explodes_at_iteration_1,
    needs_torch,
)

pytestmark = pytest.mark.slow
# The workers have both examples where torch is installed (the torch extra), else the NumPy
# one; and a trainer that fails in setup (importable: workers run in the repository).
FAILING = "failing=tests.trainers:FailingSetupTrainer,scripted=tests.trainers:ScriptedTrainer"
ENV = {
    "HPSEARCH_TRAINERS": ",".join([EXAMPLE, FAILING, *([TORCH_EXAMPLE] if HAS_TORCH else [])]),
    "PYTHONPATH": os.pathsep.join(map(str, [EXAMPLE_DIR, TORCH_DIR])),
}
KILL_AT = 40  # epochs: past the first checkpoint, written a second in
DATABASES = ["sqlite", "postgresql"] if os.environ.get("HPSEARCH_TEST_DATABASE_URL") else ["sqlite"]


@pytest.fixture(scope="module", params=DATABASES)
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    root = tmp_path_factory.mktemp(f"user-trainer-{request.param}")
    with running_system(root, request.param, worker_env=ENV) as running:
        yield running


class SentEvents(threading.Thread):
    """The events of one kind workers send, as Redis's MONITOR sees them go by (the master
    deletes events from the stream once it has applied them)."""

    def __init__(self, redis_url: str, kind: str) -> None:
        super().__init__(daemon=True)
        self.redis = Redis.from_url(redis_url)
        self.marker = f'"kind": "{kind}"'
        self.seen: list[dict[str, Any]] = []

    def run(self) -> None:
        try:
            with self.redis.monitor() as monitor:
                while True:
                    command = monitor.next_command()["command"]
                    if command.startswith("XADD") and self.marker in command:
                        self.seen.append(json.loads(command[command.index('{"kind"') :]))
        except (RedisError, ValueError, TypeError):
            return  # Redis stopped with the system, or a command this does not read

    def of(self, trial_id: int, attempt: int) -> dict[str, Any] | None:
        return next(
            (e for e in self.seen if (e["trial_id"], e["attempt"]) == (trial_id, attempt)), None
        )


def user_spec(name: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "trainer": "twolayer",
        "fixed": {"update": "adam", "batch_size": 100},
        "space": {
            "learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 3e-2},
            "hidden_size": {"dist": "logint", "low": 16, "high": 128},
        },
        "stages": [
            {"trials": 8, "epochs": 1},
            {"trials": 4, "epochs": 3, "promote": 3},
            {"trials": 2, "epochs": 6, "promote": 2},
        ],
    }
    spec.update(changes)
    return spec


def hpsearch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master.cli", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **ENV},
    )  # fmt: skip


def test_a_user_trainer_sweep_runs_coarse_to_fine_and_is_scored_ensembled_and_predicted(
    system: System, tmp_path: Path
) -> None:
    sweep_id = system.submit(user_spec("twolayer-digits"))
    sweep = system.wait_until_done(sweep_id, 180)
    assert sweep["status"] == "finished", sweep
    trials = system.trials(sweep_id)
    assert len(trials) == 14 and {t["status"] for t in trials} <= {"finished", "exploded"}
    promoted = [t for t in trials if t["parent_id"] is not None]
    assert len(promoted) == 5
    for trial in promoted:  # trained on from the parent's epochs, each epoch once
        detail = system.get(f"/api/trials/{trial['id']}")
        assert [h["epoch"] for h in detail["history"]] == [
            float(e) for e in range(1, int(trial["num_epochs"]) + 1)
        ]
        assert detail["start_epoch"] > 0
    best = system.get("/api/leaderboard", sweep=sweep_id, limit=1)["data"][0]
    assert best["best_val_acc"] > 0.9
    test = evaluated(system, sweep_id)  # by a worker, from the user trainer's checkpoints
    assert test["best_trial_id"] == best["id"] and test["best_test_acc"] > 0.85
    code, asked = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "top-k", "max_k": 3})
    assert code == 201, asked
    ensemble = finished_ensemble(system, asked["id"])
    assert ensemble["status"] == "finished" and [p["k"] for p in ensemble["curve"]] == [1, 2, 3]
    assert all(m["average_val_acc"] is None for m in ensemble["members"])

    # `hpsearch predict` on raw test images, with the trainer installed where it runs.
    data = load_dataset("digits")
    assert data.X_test is not None
    raw = np.round((data.X_test.astype(np.float64) + data.mean_image) * 16)
    np.savez(tmp_path / "raw.npz", X=raw)
    out = tmp_path / "predictions.npy"
    best_file = system.checkpoints / ensemble["members"][0]["checkpoint"]
    predicted = hpsearch(
        "predict", "--checkpoint", str(best_file), "--input", str(tmp_path / "raw.npz"),
        "--output", str(out),
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    accuracy = float(np.mean(np.load(out) == data.y_test))
    assert accuracy == pytest.approx(ensemble["members"][0]["test_acc"])
    without = subprocess.run(
        [sys.executable, "-m", "master.cli", "predict", "--checkpoint", str(best_file),
         "--input", str(tmp_path / "raw.npz"), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "HPSEARCH_TRAINERS"},
    )  # fmt: skip
    assert without.returncode == 2
    assert "written by trainer 'twolayer', which is not installed here" in without.stderr

    # The volume alone rebuilds the sweep: every trial's row and every epoch.
    url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    rebuilt = hpsearch("reindex", str(system.checkpoints), "--database-url", url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    before_sweep, before = ranked_rows(system.database_url, sweep_id)
    after_sweep, after = ranked_rows(url, sweep_id)
    assert after == before and after_sweep["spec"]["trainer"] == "twolayer"
    record = system.checkpoints / f"sweep{sweep_id:06d}" / "sweep.json"
    record.rename(record.with_suffix(".away"))  # the spec is then what the trials tell
    try:
        bare = f"sqlite:///{tmp_path / 'bare.db'}"
        assert hpsearch("reindex", str(system.checkpoints), "--database-url", bare).returncode == 0
    finally:
        record.with_suffix(".away").rename(record)
    bare_sweep, bare_rows = ranked_rows(bare, sweep_id)
    assert bare_rows == before and bare_sweep["spec"]["trainer"] == "twolayer"


def test_a_sweep_naming_a_trainer_no_worker_has_is_refused(system: System) -> None:
    code, body = system.post("/api/sweeps", user_spec("unknown", trainer="my-cnn"))
    assert code == 422
    known = "mlp, failing, scripted, twolayer"
    known = known.replace("mlp, ", "mlp, digits-cnn, ") if HAS_TORCH else known
    assert f"'my-cnn' is no trainer of a live worker (known: {known})" in body["detail"]


def test_a_user_trainers_cost_over_3x_the_first_is_killed_at_iteration_1(system: System) -> None:
    costs = {"dist": "choice", "values": [explodes_at_iteration_1(), "2.0,1.9,1.8"]}
    spec = user_spec("exploding", trainer="scripted", fixed={}, space={"costs": costs})
    spec["stages"] = [{"trials": 6, "epochs": 1}]
    sweep = system.wait_until_done(system.submit(spec), 60)
    assert sweep["status"] == "finished", sweep
    trials = system.trials(sweep["id"])
    exploded = [t for t in trials if t["hyperparameters"]["costs"] != "2.0,1.9,1.8"]
    assert exploded and {t["status"] for t in exploded} == {"exploded"}
    for trial in exploded:
        assert trial["explosion"]["iteration"] == 1
        assert trial["epochs_done"] == pytest.approx(1 / 23)  # one step of 23 counted
        assert "at iteration 1 is 3.05x the first cost 2" in trial["reason"]
    assert {t["status"] for t in trials if t not in exploded} == {"finished"}


def test_a_sweep_whose_trainer_fails_every_trial_alike_fails_fast_with_the_reason(
    system: System,
) -> None:
    spec = user_spec("failing", trainer="failing", fixed={}, space={})
    spec["stages"] = [{"trials": 40, "epochs": 1}]
    sweep = system.wait_until_done(system.submit(spec), 60)
    assert sweep["status"] == "failed"
    assert sweep["reason"].startswith("its first ")
    assert sweep["reason"].endswith(
        "trials failed alike: TrainerError: trainer failing: setup raised RuntimeError: "
        "no GPU found"
    )
    statuses = {t["status"] for t in system.trials(sweep["id"])}
    assert statuses <= {"failed", "stopped", "queued"} and "failed" in statuses


@pytest.mark.parametrize(
    ("trainer", "fixed", "epochs"),
    [
        # About 5 s each here: the kill lands mid-trial, past its first checkpoint.
        ("twolayer", {"learning_rate": 1e-3, "hidden_size": 256, "batch_size": 10}, 150),
        pytest.param("digits-cnn", {"learning_rate": 1e-3, "channels": 8}, 80, marks=needs_torch),
    ],
)
def test_a_user_trainer_whose_worker_is_killed_resumes_elsewhere_exactly(
    system: System, trainer: str, fixed: dict[str, Any], epochs: int
) -> None:
    if system.database_url.startswith("postgresql"):
        pytest.skip("what workers and the protocol do: SQLite's run shows it")
    space = {"lr_decay": {"dist": "uniform", "low": 0.9, "high": 0.99}}
    stages = [{"trials": 1, "epochs": epochs}]
    spec = user_spec(f"{trainer}-killed", trainer=trainer, fixed=fixed, space=space, stages=stages)
    sweep_id = system.submit(spec)

    def some_epochs_done() -> dict[str, Any] | None:
        trials = system.trials(sweep_id)
        return trials[0] if trials and trials[0]["epochs_done"] >= KILL_AT else None

    started = SentEvents(system.redis_server.url, "started")
    started.start()
    trial = wait_for(some_epochs_done, 60, f"the trial's {KILL_AT}th epoch")
    victim = trial["worker"]
    system.workers[victim].send_signal(signal.SIGKILL)
    system.workers[victim].wait()
    assert system.get(f"/api/trials/{trial['id']}")["status"] == "running"
    try:
        system.wait_until_done(sweep_id, 120)
    finally:
        system.start_worker(victim, env=ENV)  # the module's other tests have two workers
    detail = system.get(f"/api/trials/{trial['id']}")
    assert detail["status"] == "finished" and detail["attempts"] >= 2
    assert detail["worker"] != victim
    # It went on from a checkpoint of the killed attempt (one is written every second).
    second = wait_for(lambda: started.of(trial["id"], 2), 10, "attempt 2's start")
    assert second["data"]["resumed_from_epoch"] > 0, second
    # The same trial trained here without interruption gives the very same numbers.
    cls = example_trainer(trainer)
    resolved = Declaration.of(trainer, cls).resolve(detail["hyperparameters"])
    data = load_dataset("digits")
    model = build_trainer(cls, trainer, resolved, problem_of(data), detail["seed"])
    state = new_run(
        trainer, "1", resolved, model, len(data.X_train),
        seed=detail["seed"], num_epochs=epochs, explode_factor=3.0,
    )  # fmt: skip
    reference = run(model, data, state).history
    assert [h["epoch"] for h in detail["history"]] == reference.epoch
    assert [h["val_acc"] for h in detail["history"]] == reference.val_acc
    assert [h["train_acc"] for h in detail["history"]] == reference.train_acc


def test_a_worker_refuses_a_job_naming_a_trainer_it_does_not_have(system: System) -> None:
    """A job written into Redis by anyone but the master (which refuses such a sweep): the
    worker looks the name up among its trainers, imports nothing, and fails the trial."""
    ended = SentEvents(system.redis_server.url, "ended")
    ended.start()
    job = TrialJob(
        trial_id=999_999, sweep_id=999_999, stage_index=0, dataset="digits",
        hyperparameters={}, num_epochs=1, seed=0, explode_factor=3.0, trainer="os:system",
    )  # fmt: skip
    queue = Queue("hpsearch", connection=system.redis, serializer=JSONSerializer)
    queue.enqueue_call(JOB_FUNCTION, kwargs={"trials": [job.to_dict()]}, job_id="trials-999999-1")
    event = wait_for(lambda: ended.of(999_999, 1), 30, "the worker's answer")
    assert event["data"]["status"] == "failed"
    assert (
        "trainer 'os:system' is not installed on this worker (it has: mlp, "
        in (event["data"]["reason"])
    )
    assert system.get("/api/health")["status"] == "ok"  # the master took it in its stride
