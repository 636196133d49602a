"""POST/GET /api/sweeps, cancel, and the sweep's trials, on a real Redis and database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, Worker

from core.messages import sweep_stop_key
from tests.master.conftest import ApiFactory
from tests.master.factories import example_spec


def small_spec(**changes: Any) -> dict[str, Any]:
    return example_spec(
        stages=[{"trials": 6, "epochs": 1}, {"trials": 2, "epochs": 2, "keep_top": 2}],
        **changes,
    )


def test_create_sweep_stores_and_queues_the_first_stage(api: TestClient, redis: Redis) -> None:
    response = api.post("/api/sweeps", json=small_spec())
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["status"] == "running"
    assert [s["status"] for s in sweep["stages"]] == ["running", "pending"]
    assert sweep["stages"][0]["counts"] == {"queued": 6}
    assert sweep["stages"][0]["ranges"]["learning_rate"] == "[1.00e-06, 10]"
    assert sweep["total_trials"] == 8 and sweep["progress"] == 0.0
    assert Queue("hpsearch", connection=redis).count == 6

    listed = api.get("/api/sweeps").json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == sweep["id"]
    assert api.get(f"/api/sweeps/{sweep['id']}").json()["name"] == "digits-lr-reg"


def test_the_same_seed_samples_the_same_trials(api: TestClient) -> None:
    first = api.post("/api/sweeps", json=small_spec(seed=7)).json()["id"]
    second = api.post("/api/sweeps", json=small_spec(seed=7)).json()["id"]
    other = api.post("/api/sweeps", json=small_spec(seed=8)).json()["id"]

    def drawn(sweep_id: int) -> list[dict[str, Any]]:
        trials = api.get(f"/api/sweeps/{sweep_id}/trials?sort=id").json()["data"]
        return [t["hyperparameters"] for t in trials]

    assert drawn(first) == drawn(second)
    assert drawn(first) != drawn(other)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"space": {"learnin_rate": {"dist": "uniform", "low": 0, "high": 1}}},
            "space.learnin_rate",
        ),
        ({"space": {"reg": {"dist": "uniform", "low": 1, "high": 1}}}, "space.reg.high"),
        ({"space": {"reg": {"dist": "loguniform", "low": 0, "high": 1}}}, "space.reg.low"),
        ({"space": {"reg": {"dist": "gaussian", "low": 0, "high": 1}}}, "space.reg"),
        ({"stages": []}, "stages"),
        ({"stages": [{"trials": 20000, "epochs": 1}]}, "stages"),
        ({"fixed": {"momentum": 2}}, "fixed.momentum"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"dataset": "npz:/no/such/file.npz"}, "dataset"),
        ({"name": ""}, "name"),
        ({"stages": [], "budget": {"epochs": 0, "max_epochs": 10}}, "budget.epochs"),
        ({"stages": [], "budget": {"epochs": 100, "max_epochs": -1}}, "budget.max_epochs"),
        ({"stages": [], "budget": {"epochs": 100, "max_epochs": 200}}, "budget.max_epochs"),
        (
            {"stages": [], "budget": {"epochs": 100, "max_epochs": 20, "min_epochs": 30}},
            "budget.min_epochs",
        ),
        (
            {"stages": [], "budget": {"epochs": 100, "max_epochs": 20, "reduction": 1}},
            "budget.reduction",
        ),
        ({"stages": [], "budget": {"epochs": 100}}, "budget.max_epochs"),
        ({"budget": {"epochs": 100, "max_epochs": 20}}, "budget"),
        (
            {"stages": [{"trials": 4, "epochs": 2}, {"trials": 2, "epochs": 5, "promote": 3}]},
            "stages.1.promote",
        ),
        ({"sampler": "grid"}, "sampler"),
        ({"stages": [], "budget": {"epochs": 10**9, "max_epochs": 1}}, "budget.epochs"),
        (
            {"stages": [], "budget": {"epochs": 100, "max_epochs": 10, "reduction": 1.01}},
            "budget.reduction",
        ),
    ],
)
def test_bad_specs_get_422_naming_the_field(
    api: TestClient, change: dict[str, Any], field: str
) -> None:
    response = api.post("/api/sweeps", json=example_spec(**change))
    assert response.status_code == 422
    body = response.json()
    assert any(p.startswith(f"{field}") for p in body["problems"]), body
    assert field in body["detail"]


def test_malformed_json_and_wrong_types_are_422(api: TestClient) -> None:
    response = api.post(
        "/api/sweeps", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"]
    assert api.post("/api/sweeps", json=[1, 2]).status_code == 422


def test_too_many_trials_for_the_configured_maximum(make_api: ApiFactory) -> None:
    api = make_api(max_trials=5)
    response = api.post("/api/sweeps", json=small_spec())
    assert response.status_code == 422
    assert "more than the maximum of 5" in response.json()["detail"]


def test_bodies_over_the_limit_get_413_as_json(make_api: ApiFactory) -> None:
    api = make_api(max_body_bytes=2048)
    big = small_spec(name="x" * 100, model={"hidden_sizes": [10] * 1000})
    response = api.post("/api/sweeps", json=big)
    assert response.status_code == 413
    assert "limit of 2048 bytes" in response.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b" " * 1000

    response = api.post(
        "/api/sweeps", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_token_guards_every_call_but_health(make_api: ApiFactory, tmp_path: Path) -> None:
    api = make_api(api_token="s3cret")
    assert api.post("/api/sweeps", json=small_spec()).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert api.post("/api/sweeps", json=small_spec(), headers=wrong).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    created = api.post("/api/sweeps", json=small_spec(), headers=good)
    assert created.status_code == 201
    sweep_id = created.json()["id"]
    assert api.post(f"/api/sweeps/{sweep_id}/cancel").status_code == 401
    trial_id = api.get(f"/api/sweeps/{sweep_id}/trials", headers=good).json()["data"][0]["id"]
    reads = [
        "/api/sweeps", f"/api/sweeps/{sweep_id}", f"/api/sweeps/{sweep_id}/trials",
        f"/api/trials/{trial_id}", "/api/leaderboard", "/api/workers",
        f"/api/sweeps/{sweep_id}/ensembles", "/api/ensembles/1",
    ]  # fmt: skip
    for path in reads:
        refused = api.get(path)
        assert refused.status_code == 401, path
        assert "Bearer" in refused.json()["detail"] and "s3cret" not in refused.text
        assert api.get(path, headers=good).status_code in (200, 404), path
    assert api.post(f"/api/sweeps/{sweep_id}/cancel", headers=good).status_code == 200
    # Health stays open for probes, and names no path of the machine.
    health = api.get("/api/health")
    assert health.status_code in (200, 503)
    assert str(tmp_path) not in health.text and "CHECKPOINT_DIR is writable" in health.text
    assert api.get("/openapi.json").status_code == 200


def test_unknown_sweep_is_404_as_json(api: TestClient) -> None:
    for path in ("/api/sweeps/999", "/api/sweeps/999/trials"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["detail"] == "sweep 999: no such sweep"
    assert api.post("/api/sweeps/999/cancel").status_code == 404
    assert api.get("/api/sweeps/0").status_code == 422


def test_ids_beyond_the_databases_integers_are_422_not_500(api: TestClient) -> None:
    """An INTEGER id column holds up to 2**31 - 1; PostgreSQL errors on a larger one."""
    for path in (
        "/api/sweeps/2147483648",
        "/api/trials/2147483648",
        "/api/sweeps/2147483648/trials",
    ):
        response = api.get(path)
        assert response.status_code == 422, (path, response.text)
        assert "2147483647" in response.text
    assert api.get("/api/leaderboard", params={"sweep": 2**31}).status_code == 422
    assert api.get("/api/trials/2147483647").status_code == 404  # the largest is a fine id


def test_trials_filter_sort_and_page(api: TestClient) -> None:
    sweep_id = api.post("/api/sweeps", json=small_spec()).json()["id"]
    url = f"/api/sweeps/{sweep_id}/trials"
    assert api.get(url, params={"status": "queued"}).json()["count"] == 6
    assert api.get(url, params={"status": "running"}).json()["count"] == 0
    assert api.get(url, params={"stage": 1}).json()["count"] == 0
    page = api.get(url, params={"sort": "-id", "limit": 2, "offset": 1}).json()
    assert page["count"] == 6 and len(page["data"]) == 2
    assert page["data"][0]["id"] > page["data"][1]["id"]
    assert api.get(url, params={"status": "bogus"}).status_code == 422
    assert api.get(url, params={"sort": "name"}).status_code == 422
    assert api.get(url, params={"limit": 0}).status_code == 422


def test_cancel_takes_queued_trials_off_the_queue(api: TestClient, redis: Redis) -> None:
    sweep_id = api.post("/api/sweeps", json=small_spec()).json()["id"]
    response = api.post(f"/api/sweeps/{sweep_id}/cancel")
    assert response.status_code == 200
    sweep = response.json()
    assert sweep["status"] == "cancelled"
    assert sweep["counts"] == {"stopped": 6}
    assert sweep["progress"] == 1.0
    assert Queue("hpsearch", connection=redis).count == 0
    assert redis.exists(sweep_stop_key(sweep_id))


def test_stop_a_queued_trial_and_conflict_when_final(api: TestClient, redis: Redis) -> None:
    sweep_id = api.post("/api/sweeps", json=small_spec()).json()["id"]
    trial = api.get(f"/api/sweeps/{sweep_id}/trials?sort=id").json()["data"][0]
    response = api.post(f"/api/trials/{trial['id']}/stop")
    assert response.status_code == 200
    assert response.json()["status"] == "stopped"
    assert Queue("hpsearch", connection=redis).count == 5
    again = api.post(f"/api/trials/{trial['id']}/stop")
    assert again.status_code == 409 and "already stopped" in again.json()["detail"]
    assert api.get("/api/trials/424242").status_code == 404


def test_a_budget_is_laid_out_for_the_workers_registered_unless_it_says(
    api: TestClient, redis: Redis
) -> None:
    spec = example_spec(stages=[], budget={"epochs": 800, "max_epochs": 80})
    body = api.post("/api/sweeps", json=spec).json()  # no worker registered: one at a time
    assert body["spec"]["budget"]["parallel"] == 1
    assert body["stages"][-1]["trials"] == 3
    spec["budget"]["parallel"] = 2
    body = api.post("/api/sweeps", json=spec).json()
    assert body["spec"]["budget"]["parallel"] == 2
    assert body["stages"][-1]["trials"] == 4  # finalists in whole pairs
    assert [s["trials"] for s in body["stages"]] == [27, 27, 28, 27, 10, 4]  # and the one before
    assert [s["promote"] for s in body["stages"]] == [0, 0, 0, 27, 10, 4]
    # Each part of the first rung is planned from the parts before it, and the 27 promoted
    # are the best of all three (one rung of 3 epochs).
    assert [s["ranked_from"] for s in body["stages"]] == [[], [0], [0, 1], [0, 1, 2], [3], [4]]
    # Two workers registered (as `hpsearch worker` registers itself): laid out for two.
    queue = Queue("hpsearch", connection=redis)
    registered = [Worker([queue], name=f"w{i}", connection=redis) for i in range(2)]
    for worker in registered:
        worker.register_birth()
    del spec["budget"]["parallel"]
    body = api.post("/api/sweeps", json=spec).json()
    assert body["spec"]["budget"]["parallel"] == 2 and body["stages"][-1]["trials"] == 4
    for worker in registered:
        worker.register_death()


def test_datasets_are_read_only_from_the_dataset_folders(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "datasets"
    folder.mkdir()
    np.savez(folder / "mine.npz", X_train=np.ones((4, 2)), y_train=[0, 1, 0, 1],
             X_val=np.ones((2, 2)), y_val=[0, 1])  # fmt: skip
    (folder / "escape.npz").symlink_to("/etc/hostname")
    api = make_api(dataset_dirs_setting=str(folder))

    def submit(dataset: str) -> tuple[int, Any]:
        response = api.post("/api/sweeps", json=example_spec(dataset=dataset))
        return response.status_code, response.json()

    refused = {}
    for dataset in ["npz:/etc/hostname", "npz:/etc/no-such-file", "npz:../../../etc/hostname",
                    "npz:/proc/self/environ", "npz:escape.npz", "cifar10:/etc"]:  # fmt: skip
        code, body = submit(dataset)
        assert code == 422, (dataset, body)
        refused[dataset] = body["detail"].replace(dataset, "SPEC")
    # One answer, whether or not the path exists: nothing about the machine leaks.
    assert len(set(refused.values())) == 1, refused
    assert "not in a dataset folder" in next(iter(refused.values()))
    # A relative path is one in the (first) dataset folder; an absolute one there works too.
    assert submit("npz:mine.npz")[0] == 201
    assert submit(f"npz:{folder / 'mine.npz'}")[0] == 201
    code, body = submit("npz:absent.npz")
    assert code == 422 and "no such file or folder in the dataset folders" in body["detail"]
