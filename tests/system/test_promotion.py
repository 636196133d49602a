"""Promotion through the real system: a stage trains the previous stage's best on from their
checkpoints, on real RQ worker processes, and they end exactly as if trained that long from
the start; a kill, a stop and a cancel work on them as on any trial."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.data import load_dataset
from core.model import FullyConnectedNet
from core.trainer import build_model, train
from tests.master.factories import example_spec
from tests.servers import wait_for
from tests.system.conftest import System, running_system
from tests.system.test_recovery import DATABASES, PROTOCOL_ONLY

pytestmark = pytest.mark.slow


@pytest.fixture(params=DATABASES)
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    with running_system(tmp_path, request.param) as running:
        yield running


def promoting_spec(name: str, stages: list[dict[str, Any]], **fixed: Any) -> dict[str, Any]:
    return example_spec(
        name=name,
        model={"hidden_sizes": [64]},
        fixed={"update": "adam", "batch_size": 50, "dropout": 0.2, **fixed},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-2}},
        stages=stages,
    )


def trained_from_scratch(trial: dict[str, Any], explode_factor: float) -> tuple[Any, Any]:
    config = TrainConfig.from_dict(
        {**trial["hyperparameters"], "num_epochs": trial["num_epochs"],
         "seed": trial["seed"], "explode_factor": explode_factor}
    )  # fmt: skip
    data = load_dataset("digits")
    model = build_model(config, data)
    return model, train(model, data, config)


def final_model(system: System, trial: dict[str, Any]) -> FullyConnectedNet:
    latest = trial["checkpoints"][-1]
    return load_checkpoint(system.checkpoints / latest).model


def test_promoted_trials_go_on_exactly_and_show_where_they_came_from(system: System) -> None:
    spec = promoting_spec(
        "promote",
        [{"trials": 4, "epochs": 2}, {"trials": 3, "epochs": 6, "keep_top": 2, "promote": 2}],
    )
    sweep_id = system.submit(spec)
    sweep = system.wait_until_done(sweep_id, timeout=120)
    assert sweep["status"] == "finished"
    trials = {t["id"]: t for t in system.trials(sweep_id)}
    first = [t for t in trials.values() if t["stage"] == 0]
    promoted = [t for t in trials.values() if t["parent_id"] is not None]
    assert len(promoted) == 2 and all(t["stage"] == 1 for t in promoted)
    assert sweep["stages"][1]["promote"] == 2

    by_last_val = sorted(first, key=lambda t: -t["val_acc"])
    assert sorted(t["parent_id"] for t in promoted) == sorted(t["id"] for t in by_last_val[:2])
    for child in promoted:
        parent = trials[child["parent_id"]]
        assert child["hyperparameters"] == parent["hyperparameters"]
        assert child["seed"] == parent["seed"] and child["start_epoch"] == 2.0
        detail = system.get(f"/api/trials/{child['id']}")
        assert [h["epoch"] for h in detail["history"]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        model, reference = trained_from_scratch(child, spec["explode_factor"])
        assert [h["val_acc"] for h in detail["history"]] == reference.history.val_acc
        assert detail["loss"] == pytest.approx(reference.history.loss, rel=1e-6)
        np.testing.assert_array_equal(final_model(system, child).flat, model.flat)
        # The inherited epochs are the parent's, as the parent recorded them.
        parent_history = system.get(f"/api/trials/{parent['id']}")["history"]
        assert detail["history"][:2] == parent_history

    # 4 x 2 epochs, then 2 promoted x 4 more and 1 new x 6.
    assert sweep["epochs_trained"] == pytest.approx(8 + 8 + 6)


@PROTOCOL_ONLY
def test_a_killed_worker_promoted_trial_resumes_and_still_ends_exactly(system: System) -> None:
    spec = promoting_spec(
        "promote-kill",
        [{"trials": 1, "epochs": 2}, {"trials": 1, "epochs": 20, "promote": 1}],
    )
    spec["model"] = {"hidden_sizes": [300, 300]}
    spec["fixed"]["batch_size"] = 10  # about 6 s for 20 epochs: the kill lands mid-trial
    sweep_id = system.submit(spec)

    def promoted_under_way() -> dict[str, Any] | None:
        found = [t for t in system.trials(sweep_id) if t["parent_id"] is not None]
        return found[0] if found and found[0]["epochs_done"] >= 4 else None

    child = wait_for(promoted_under_way, 90, "the promoted trial's fourth epoch")
    victim = child["worker"]
    system.workers[victim].send_signal(signal.SIGKILL)
    system.workers[victim].wait()
    assert system.get(f"/api/trials/{child['id']}")["status"] == "running"

    sweep = system.wait_until_done(sweep_id, timeout=180)
    assert sweep["status"] == "finished"
    done = system.get(f"/api/trials/{child['id']}")
    assert done["status"] == "finished" and done["attempts"] >= 2 and done["worker"] != victim
    assert [h["epoch"] for h in done["history"]] == [float(e) for e in range(1, 21)]
    model, reference = trained_from_scratch(done, spec["explode_factor"])
    assert [h["val_acc"] for h in done["history"]] == reference.history.val_acc
    np.testing.assert_array_equal(final_model(system, done).flat, model.flat)
    assert sweep["epochs_trained"] == pytest.approx(20)  # 2, then 18 on: none trained twice


def test_stop_and_cancel_end_promoted_trials(system: System) -> None:
    spec = promoting_spec(
        "promote-stop",
        [{"trials": 2, "epochs": 1}, {"trials": 2, "epochs": 400, "promote": 2}],
    )
    sweep_id = system.submit(spec)

    def promoted_running() -> list[dict[str, Any]] | None:
        found = [t for t in system.trials(sweep_id) if t["parent_id"] is not None]
        running = [t for t in found if t["status"] == "running" and t["epochs_done"] >= 2]
        return found if len(running) == 2 else None

    first, second = wait_for(promoted_running, 90, "both promoted trials to run")
    code, _ = system.post(f"/api/trials/{first['id']}/stop")
    assert code == 200
    wait_for(
        lambda: system.get(f"/api/trials/{first['id']}")["status"] == "stopped",
        30, "the stopped promoted trial to end",
    )  # fmt: skip
    assert system.get(f"/api/trials/{second['id']}")["status"] == "running"
    code, _ = system.post(f"/api/sweeps/{sweep_id}/cancel")
    assert code == 200
    wait_for(
        lambda: system.get(f"/api/trials/{second['id']}")["status"] == "stopped",
        30, "the cancelled sweep's promoted trial to end",
    )  # fmt: skip
    stopped = system.get(f"/api/trials/{first['id']}")
    assert 2 <= stopped["epochs_done"] < 400 and stopped["start_epoch"] == 1.0
