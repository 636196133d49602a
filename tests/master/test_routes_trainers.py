"""POST /api/sweeps with a user trainer: validated against what live workers declare, on a
real Redis (a real RQ worker registration) and database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from core.contract import Declaration
from tests.trainers import example_trainer
from worker.runner import make_worker


def advertise(redis: Redis, name: str = "w-user") -> None:
    """A worker that has the example trainer, registered as `hpsearch worker` registers."""
    declaration = Declaration.of("twolayer", example_trainer()).to_json()
    make_worker(redis, ["hpsearch"], name=name, trainers=[declaration]).register_birth()


def user_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "twolayer-digits",
        "trainer": "twolayer",
        "fixed": {"update": "adam"},
        "space": {
            "learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-1},
            "hidden_size": {"dist": "logint", "low": 16, "high": 256},
        },
        "stages": [{"trials": 4, "epochs": 1}, {"trials": 2, "epochs": 3, "promote": 2}],
    }
    spec.update(changes)
    return spec


def test_a_sweep_of_an_advertised_trainer_is_queued_with_its_name(
    api: TestClient, redis: Redis
) -> None:
    advertise(redis)
    response = api.post("/api/sweeps", json=user_spec(declared=None))
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["spec"]["trainer"] == "twolayer"
    assert set(sweep["spec"]["declared"]["hyperparameters"]) >= {"hidden_size", "reg"}
    queue = Queue("hpsearch", connection=redis, serializer=JSONSerializer)
    jobs = [queue.fetch_job(job_id) for job_id in queue.get_job_ids()]
    trials = [trial for job in jobs if job is not None for trial in job.kwargs["trials"]]
    assert len(trials) == 4
    assert {t["trainer"] for t in trials} == {"twolayer"}
    assert all(16 <= t["hyperparameters"]["hidden_size"] <= 256 for t in trials)


def test_a_trainer_no_live_worker_has_is_refused_naming_the_known_ones(
    api: TestClient, redis: Redis
) -> None:
    advertise(redis)
    response = api.post("/api/sweeps", json=user_spec(trainer="cnn"))
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem.startswith(
        "trainer: 'cnn' is no trainer of a live worker (known: mlp, twolayer)"
    )
    assert Queue("hpsearch", connection=redis).count == 0


@pytest.mark.parametrize("name", ["os:system", "os.system", "../evil", ""])
def test_a_trainer_named_by_module_path_is_refused(
    api: TestClient, redis: Redis, name: str
) -> None:
    advertise(redis)
    response = api.post("/api/sweeps", json=user_spec(trainer=name))
    assert response.status_code == 422, response.text
    assert any(p.startswith("trainer:") for p in response.json()["problems"])
    assert Queue("hpsearch", connection=redis).count == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"fixed": {"hidden_sizes": [64]}},
            "fixed.hidden_sizes: unknown hyperparameter of trainer twolayer (known: batch_size, "
            "hidden_size, learning_rate, lr_decay, reg, update)",
        ),
        (
            {"space": {"hidden_size": {"dist": "int", "low": 0, "high": 8}}},
            "space.hidden_size.low: must be >= 1, got 0",
        ),
        (
            {"space": {"hidden_size": {"dist": "loguniform", "low": 16, "high": 64}}},
            "space.hidden_size.low: must be int, got 16.0",
        ),
        ({"fixed": {"update": "lbfgs"}}, "fixed.update: must be one of sgd, adam, got 'lbfgs'"),
    ],
)
def test_hyperparameters_are_checked_against_the_trainers_declaration(
    api: TestClient, redis: Redis, change: dict[str, Any], problem: str
) -> None:
    advertise(redis)
    response = api.post("/api/sweeps", json=user_spec(**change))
    assert response.status_code == 422, response.text
    assert problem in response.json()["problems"]


def test_a_declaration_a_client_sends_is_replaced_by_the_workers(
    api: TestClient, redis: Redis
) -> None:
    advertise(redis)
    forged = {"name": "twolayer", "version": "9", "hyperparameters": {}}
    response = api.post("/api/sweeps", json=user_spec(declared=forged))
    assert response.status_code == 201, response.text
    declared = response.json()["spec"]["declared"]
    assert declared["version"] == "1" and "hidden_size" in declared["hyperparameters"]


def test_the_built_in_net_needs_no_worker_and_keeps_no_declaration(
    api: TestClient, redis: Redis
) -> None:
    spec = user_spec(trainer="mlp", fixed={}, space={}, stages=[{"trials": 1, "epochs": 1}])
    spec["declared"] = {"name": "mlp", "version": "1", "hyperparameters": {}}
    response = api.post("/api/sweeps", json=spec)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["declared"] is None
    assert json.loads(json.dumps(response.json()["spec"]))["trainer"] == "mlp"


def test_the_workers_list_says_which_trainers_each_can_run(api: TestClient, redis: Redis) -> None:
    advertise(redis, "w-user")
    make_worker(redis, ["hpsearch"], name="w-plain").register_birth()
    workers = {w["name"]: w["trainers"] for w in api.get("/api/workers").json()["data"]}
    assert workers == {"w-user": ["mlp", "twolayer"], "w-plain": ["mlp"]}


def test_a_trainer_some_live_workers_lack_is_refused_naming_them(
    api: TestClient, redis: Redis
) -> None:
    advertise(redis, "w-user")
    make_worker(redis, ["hpsearch"], name="w-plain").register_birth()
    response = api.post("/api/sweeps", json=user_spec())
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "trainer: 'twolayer' is not installed on worker(s) w-plain, which would take some of "
        "its trials: install it there too, or stop them"
    ]


def test_workers_that_declare_a_trainer_differently_are_refused(
    api: TestClient, redis: Redis
) -> None:
    advertise(redis, "w-one")
    other = {**Declaration.of("twolayer", example_trainer()).to_json(), "version": "2"}
    make_worker(redis, ["hpsearch"], name="w-two", trainers=[other]).register_birth()
    response = api.post("/api/sweeps", json=user_spec())
    assert response.status_code == 422
    assert "(w-one: 1, w-two: 2)" in response.json()["detail"]
