"""Sweeps submitted over REST and run by real worker processes through a real Redis."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rq import Queue

from core.checkpoint import parse_checkpoint_name
from core.messages import worker_shutdown_key
from tests.conftest import SWEEPS_GROUP
from tests.master.factories import example_spec
from tests.servers import REPO, wait_for
from tests.system.conftest import FINAL, System

# Nothing here kills a process or lets a lease lapse: beside the serial group.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SWEEPS_GROUP)]


def test_the_example_sweep_runs_coarse_to_fine(system: System) -> None:
    spec = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    sweep_id = system.submit(spec)
    sweep = system.wait_until_done(sweep_id, timeout=600)
    assert sweep["status"] == "finished"
    assert [s["status"] for s in sweep["stages"]] == ["finished"] * 3
    trials = system.trials(sweep_id)
    assert len(trials) == sum(s["trials"] for s in spec["stages"]) == sweep["done_trials"]
    assert {t["status"] for t in trials} <= {"finished", "exploded"}
    assert sum(sweep["counts"].values()) == len(trials)

    # Ranked by best validation accuracy, ties to more epochs; every ranked trial is there.
    board = system.get("/api/leaderboard", sweep=sweep_id, limit=1000)["data"]
    keys = [(-t["best_val_acc"], -t["epochs_done"]) for t in board]
    assert keys == sorted(keys)
    assert len(board) == sum(t["best_val_acc"] is not None for t in trials)
    assert board[0]["best_val_acc"] >= 0.95

    for trial in trials:
        detail = system.get(f"/api/trials/{trial['id']}")
        assert_checkpoints_match(system.checkpoints, detail)
        if trial["status"] == "exploded":
            assert trial["explosion"]["ratio"] is None or trial["explosion"]["ratio"] > 3
        if trial["status"] == "exploded" and trial["stage"] == 0:
            assert trial["epochs_done"] < 1 and detail["history"] == []  # killed in epoch 1
        if trial["status"] == "finished":
            assert [h["epoch"] for h in detail["history"]] == [
                float(e) for e in range(1, math.ceil(trial["num_epochs"]) + 1)
            ]

    # Coarse to fine: the learning-rate range narrows from stage to stage.
    widths = [log_width(s["space"]["learning_rate"]) for s in sweep["stages"]]
    assert widths[0] > widths[1] >= widths[2]


def assert_checkpoints_match(root: Path, trial: dict[str, Any]) -> None:
    assert trial["checkpoints"], f"trial {trial['id']} has no checkpoint"
    names = [parse_checkpoint_name(path) for path in trial["checkpoints"]]
    for path in trial["checkpoints"]:
        assert (root / path).is_file(), path
    best = max(names, key=lambda n: n.val_acc)
    assert f"{best.val_acc:.4f}" == f"{trial['best_val_acc']:.4f}"
    assert all(n.trial_id == trial["id"] for n in names)


def log_width(dist: dict[str, Any]) -> float:
    return math.log10(dist["high"]) - math.log10(dist["low"])


def test_best_on_the_border_widens_the_next_stage(system: System) -> None:
    # With momentum for one epoch, the larger the learning rate in [1e-3, 1e-1], the better
    # (val 0.12 at 1e-3, 0.53 at 3e-2): the best trial sits at the top border, and the next
    # stage must search beyond it.
    spec = example_spec(
        name="border",
        fixed={"update": "momentum", "batch_size": 100},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-3, "high": 1e-1}},
        stages=[{"trials": 30, "epochs": 1}, {"trials": 4, "epochs": 1, "keep_top": 5}],
        seed=3,
    )
    sweep = system.wait_until_done(system.submit(spec), timeout=120)
    stage = sweep["stages"][1]
    assert any("is at the top of [0.001, 0.1]" in w for w in stage["warnings"]), stage
    assert stage["space"]["learning_rate"]["high"] > 0.1


def test_a_dataset_every_trial_fails_on_fails_the_sweep_with_the_reason(
    system: System, tmp_path: Path
) -> None:
    broken = system.datasets / "broken.npz"
    broken.write_bytes(b"this is not an npz archive")
    spec = example_spec(
        name="broken-data",
        dataset=f"npz:{broken}",
        stages=[{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 1}],
    )
    spec_file = tmp_path / "broken.json"
    spec_file.write_text(json.dumps(spec))
    # As a user sees it: --watch ends with the reason and exits non-zero.
    watched = subprocess.run(
        [sys.executable, "-m", "master.cli", "submit", str(spec_file), "--url", system.url,
         "--watch"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert watched.returncode == 1, watched.stdout + watched.stderr
    sweep_id = int(re.search(r"^sweep (\d+) ", watched.stdout, re.M)[1])  # type: ignore[index]
    sweep = system.get(f"/api/sweeps/{sweep_id}")
    assert sweep["status"] == "failed"
    assert sweep["reason"].startswith("its first 3 trials failed alike: DatasetError: ")
    assert "broken.npz" in sweep["reason"]
    assert f"sweep {sweep_id} failed: {sweep['reason']}" in watched.stdout
    trials = system.trials(sweep_id)
    assert len(trials) == 3 and {t["status"] for t in trials} == {"failed"}  # no stage 1
    assert sweep["stages"][1]["status"] == "pending"


def long_spec(name: str, trials: int) -> dict[str, Any]:
    return example_spec(
        name=name,
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "sgd", "batch_size": 10},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
        stages=[{"trials": trials, "epochs": 1000}],
    )


def running_trials(system: System, sweep_id: int) -> list[dict[str, Any]]:
    return [t for t in system.trials(sweep_id) if t["status"] == "running"]


def test_cancel_under_load_leaves_nothing_running_or_queued(system: System) -> None:
    sweep_id = system.submit(long_spec("cancel-me", trials=202))
    wait_for(lambda: len(running_trials(system, sweep_id)) == 2, 60, "two running trials")
    queue = Queue("hpsearch", connection=system.redis)
    assert queue.count == 200
    code, sweep = system.post(f"/api/sweeps/{sweep_id}/cancel")
    assert code == 200 and sweep["status"] == "cancelled"

    def settled() -> bool:
        trials = system.trials(sweep_id)
        workers = system.get("/api/workers")["data"]
        return (
            all(t["status"] in FINAL for t in trials)
            and all(w["current_job"] is None for w in workers)
            and queue.count == 0
        )

    wait_for(settled, 10, "nothing of the sweep to run or wait 10 s after cancel")
    statuses = {t["status"] for t in system.trials(sweep_id)}
    assert statuses == {"stopped"}


def test_stopping_one_trial(system: System) -> None:
    sweep_id = system.submit(long_spec("stop-one", trials=2))
    running = wait_for(lambda: running_trials(system, sweep_id), 60, "a running trial")
    trial_id = running[0]["id"]
    code, _ = system.post(f"/api/trials/{trial_id}/stop")
    assert code == 200

    def stopped() -> dict[str, Any] | None:
        trial = system.get(f"/api/trials/{trial_id}")
        return trial if trial["status"] == "stopped" else None

    trial: dict[str, Any] = wait_for(stopped, 5, f"trial {trial_id} to stop")
    assert trial["reason"].startswith("stopped at epoch")
    assert trial["checkpoints"]  # where it was when it stopped
    other = [t for t in system.trials(sweep_id) if t["id"] != trial_id][0]
    assert other["status"] in ("queued", "running")
    system.post(f"/api/sweeps/{sweep_id}/cancel")


def test_workers_are_listed_and_can_be_shut_down(system: System) -> None:
    workers = system.get("/api/workers")["data"]
    assert len(workers) == 2 and all(w["host"] and w["last_heartbeat"] for w in workers)
    extra = system.processes.hpsearch("worker-extra", "worker", "--name", "extra-worker")
    wait_for(lambda: system.get("/api/workers")["count"] == 3, 30, "the extra worker")
    code, body = system.post("/api/workers/extra-worker/shutdown")
    assert code == 202, body
    wait_for(lambda: extra.poll() is not None, 15, "the extra worker to exit")
    assert system.post("/api/workers/no-such-worker/shutdown")[0] == 404


def test_a_shutdown_request_the_worker_did_not_hear_waits_for_it(system: System) -> None:
    # As the master's request leaves it when the pub/sub command is lost (a worker that is
    # not subscribed, as after Redis restarted): only the waiting key.
    deaf = system.processes.hpsearch("worker-deaf", "worker", "--name", "deaf-worker")
    wait_for(lambda: system.get("/api/workers")["count"] == 3, 30, "the extra worker")
    system.redis.set(worker_shutdown_key("deaf-worker"), "1", ex=60)
    wait_for(lambda: deaf.poll() is not None, 15, "the worker to take the request and exit")
    assert deaf.returncode == 0
    assert not system.redis.exists(worker_shutdown_key("deaf-worker"))  # taken, not left
    log = (system.processes.logs / "worker-deaf.log").read_text()
    assert "a shutdown request; shutting down" in log


def test_a_shutdown_request_left_from_an_earlier_worker_of_its_name_is_not_taken(
    system: System,
) -> None:
    system.redis.set(worker_shutdown_key("reborn-worker"), "1", ex=60)
    reborn = system.processes.hpsearch("worker-reborn", "worker", "--name", "reborn-worker")
    # It clears the old request before it registers, so once it is listed no heartbeat of
    # its own can have taken it.
    wait_for(lambda: system.get("/api/workers")["count"] == 3, 30, "the reborn worker")
    assert not system.redis.exists(worker_shutdown_key("reborn-worker"))
    assert reborn.poll() is None
    assert "shutting down" not in (system.processes.logs / "worker-reborn.log").read_text()
    reborn.terminate()
    reborn.wait(timeout=30)
