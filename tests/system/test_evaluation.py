"""Evaluation through the real system: a finished sweep is scored on its test split by a
worker, ensembles of both kinds run on real RQ workers and match what core.predict computes
from the same checkpoints, the test split never changes what a sweep selects, the shell
goes from a sweep to predictions, and the checkpoint volume alone rebuilds the database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.data import load_dataset
from core.predict import load_ensemble, load_model
from master.db import Database
from master.models import Sweep, Trial, ranking
from tests.master.factories import example_spec
from tests.servers import wait_for
from tests.system.conftest import System

pytestmark = pytest.mark.slow


def small_spec(name: str, **changes: Any) -> dict[str, Any]:
    spec = example_spec(
        name=name,
        model={"hidden_sizes": [32]},
        fixed={"update": "adam", "batch_size": 100},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 3e-2}},
        stages=[{"trials": 6, "epochs": 2}, {"trials": 3, "epochs": 4, "keep_top": 3}],
    )
    spec.update(changes)
    return spec


def finished_ensemble(system: System, ensemble_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        ensemble: dict[str, Any] = system.get(f"/api/ensembles/{ensemble_id}")
        return ensemble if ensemble["status"] not in ("queued", "running") else None

    result: dict[str, Any] = wait_for(done, 60, f"ensemble {ensemble_id} to end", 0.2)
    return result


def evaluated(system: System, sweep_id: int) -> dict[str, Any]:
    """The sweep's test evaluation, once the worker's job has finished it."""

    def finished() -> dict[str, Any] | None:
        test: dict[str, Any] | None = system.get(f"/api/sweeps/{sweep_id}")["test"]
        return test if test is not None and test["status"] == "finished" else None

    result: dict[str, Any] = wait_for(finished, 60, f"sweep {sweep_id}'s test evaluation", 0.2)
    return result


def test_a_finished_sweep_is_scored_on_its_test_split(system: System) -> None:
    sweep_id = system.submit(small_spec("evaluated"))
    system.wait_until_done(sweep_id, 120)
    test = evaluated(system, sweep_id)
    best = system.get("/api/leaderboard", sweep=sweep_id, limit=1)["data"][0]
    assert test["best_trial_id"] == best["id"]
    # The checkpoint's name rounds its validation accuracy to 4 places.
    assert abs(test["best_val_acc"] - best["best_val_acc"]) < 5e-5
    ensemble = system.get(f"/api/ensembles/{test['ensemble_id']}")
    assert ensemble["automatic"] and ensemble["kind"] == "top-k"
    assert [p["k"] for p in ensemble["curve"]] == list(range(1, len(ensemble["members"]) + 1))
    # k is chosen on validation alone: the first of the best.
    vals = [p["val_acc"] for p in ensemble["curve"]]
    assert ensemble["k"] == vals.index(max(vals)) + 1
    assert test["ensemble_test_acc"] == ensemble["curve"][ensemble["k"] - 1]["test_acc"]
    # The numbers are what core.predict makes of the same files on raw test images.
    data = load_dataset("digits")
    assert data.X_test is not None
    raw = np.round((data.X_test.astype(np.float64) + data.mean_image) * 16)
    paths = [system.checkpoints / m["checkpoint"] for m in ensemble["members"]]
    single = load_model(paths[0]).predict(raw)
    assert test["best_test_acc"] == pytest.approx(float(np.mean(single == data.y_test)))
    together = load_ensemble(paths[: ensemble["k"]]).predict(raw)
    assert test["ensemble_test_acc"] == pytest.approx(float(np.mean(together == data.y_test)))
    detail = system.get(f"/api/trials/{best['id']}")
    assert detail["best_checkpoint"] == ensemble["members"][0]["checkpoint"]


def test_both_kinds_run_on_workers_and_a_lost_file_fails_one(system: System) -> None:
    sweep_id = system.submit(small_spec("kinds", keep_checkpoints="all"))
    system.wait_until_done(sweep_id, 120)
    code, top = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "top-k", "max_k": 3})
    assert code == 201, top
    top = finished_ensemble(system, top["id"])
    assert top["status"] == "finished" and len(top["curve"]) == 3
    assert all(m["average_val_acc"] is not None for m in top["members"])
    best_id = top["members"][0]["trial_id"]
    code, one = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "checkpoints"})
    assert code == 201, one
    assert one["params"] == {"max_k": 5, "trial_id": best_id}  # the sweep's best by default
    one = finished_ensemble(system, one["id"])
    trial = system.get(f"/api/trials/{best_id}")
    assert {m["checkpoint"] for m in one["members"]} == set(trial["checkpoints"])
    accuracies = [m["val_acc"] for m in one["members"]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    # A member's file gone from the volume: the worker's job fails, naming it.
    victim = system.checkpoints / top["members"][1]["checkpoint"]
    victim.rename(victim.with_suffix(".moved"))
    try:
        code, broken = system.post(
            f"/api/sweeps/{sweep_id}/ensembles", {"kind": "top-k", "max_k": 3}
        )
        assert code == 201
        broken = finished_ensemble(system, broken["id"])
    finally:
        victim.with_suffix(".moved").rename(victim)
    assert broken["status"] == "failed"
    assert victim.name in broken["reason"] and "no such file" in broken["reason"]


def test_a_seeds_ensemble_retrains_the_best_from_new_seeds_as_a_stage(system: System) -> None:
    sweep_id = system.submit(small_spec("seeds"))
    system.wait_until_done(sweep_id, 120)
    first_evaluation = evaluated(system, sweep_id)
    code, asked = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "seeds", "seeds": 2})
    assert code == 201, asked
    best_id = first_evaluation["best_trial_id"]
    assert asked["params"] == {"trial_id": best_id, "seeds": 2, "stage": 2}
    assert asked["members"] == [] and asked["status"] == "queued"  # until its stage ends
    assert system.get(f"/api/sweeps/{sweep_id}")["status"] == "running"
    sweep = system.wait_until_done(sweep_id, 120)
    assert sweep["status"] == "finished" and sweep["stages"][2]["counts"] == {"finished": 2}
    ensemble = finished_ensemble(system, asked["id"])
    assert ensemble["status"] == "finished", ensemble
    best = system.get(f"/api/trials/{best_id}")
    again = [t for t in system.trials(sweep_id) if t["stage"] == 2]
    assert [m["trial_id"] for m in ensemble["members"]] == [best_id] + [t["id"] for t in again]
    assert all(t["hyperparameters"] == best["hyperparameters"] for t in again)
    assert all(t["num_epochs"] == best["num_epochs"] for t in again)
    assert len({best["seed"], *(t["seed"] for t in again)}) == 3
    assert [p["k"] for p in ensemble["curve"]] == [1, 2, 3]
    # The sweep keeps its first test evaluation; its border check still reads its search.
    assert (
        system.get(f"/api/sweeps/{sweep_id}")["test"]["ensemble_id"]
        == first_evaluation["ensemble_id"]
    )
    # Cancelled while its re-trainings run: the ensemble ends with what they have.
    code, cut = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "seeds", "seeds": 2})
    assert code == 201
    code, _ = system.post(f"/api/sweeps/{sweep_id}/cancel")
    assert code == 200
    cut = finished_ensemble(system, cut["id"])
    if cut["status"] == "failed":
        assert "re-trainings has a checkpoint" in cut["reason"]
    else:
        assert cut["status"] == "finished" and len(cut["members"]) >= 2


def test_bad_ensemble_requests_are_refused_naming_the_field(system: System) -> None:
    sweep_id = system.submit(small_spec("refusals"))
    code, body = system.post(f"/api/sweeps/{sweep_id}/ensembles", {"kind": "top-k"})
    assert code == 409 and "running" in body["detail"]
    system.wait_until_done(sweep_id, 120)
    trials = system.trials(sweep_id)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "bagging"}, 422, "kind"),
        ({}, 422, "kind"),
        ({"kind": "top-k", "max_k": 0}, 422, "max_k"),
        ({"kind": "top-k", "max_k": 51}, 422, "max_k"),
        ({"kind": "top-k", "trial_id": trials[0]["id"]}, 422, "trial_id: only for kinds"),
        ({"kind": "top-k", "seeds": 3}, 422, "seeds: only for kind seeds"),
        ({"kind": "seeds", "seeds": 0}, 422, "seeds"),
        ({"kind": "seeds", "seeds": 50}, 422, "seeds"),
        ({"kind": "seeds", "trial_id": trials[0]["id"] + 10_000}, 422, "trial_id"),
        ({"kind": "top-k", "members": 3}, 422, "members"),
        ({"kind": "checkpoints", "trial_id": 2**31}, 422, "trial_id"),
        ({"kind": "checkpoints", "trial_id": trials[0]["id"] + 10_000}, 422, "trial_id"),
        # Two files at most (best and latest): not enough, and the message says what to do.
        ({"kind": "checkpoints", "trial_id": trials[0]["id"]}, 422, "keep_checkpoints: all"),
    ]
    for body_in, expected, words in cases:
        code, body = system.post(f"/api/sweeps/{sweep_id}/ensembles", body_in)
        assert code == expected and words in body["detail"], (body_in, code, body)
    code, body = system.post("/api/sweeps/999999/ensembles", {"kind": "top-k"})
    assert code == 404 and "sweep 999999" in body["detail"]
    code, body = system.post("/api/ensembles/999999/stop")
    assert code == 404 and "ensemble 999999" in body["detail"]
    test = evaluated(system, sweep_id)
    code, body = system.post(f"/api/ensembles/{test['ensemble_id']}/stop")
    assert code == 409 and "already finished" in body["detail"]


def test_the_test_split_changes_nothing_a_sweep_selects(system: System, tmp_path: Path) -> None:
    digits = load_dataset("digits", dtype="float64")
    assert digits.X_test is not None and digits.y_test is not None
    arrays: dict[str, Any] = {
        "X_train": digits.X_train, "y_train": digits.y_train,
        "X_val": digits.X_val, "y_val": digits.y_val,
    }  # fmt: skip
    honest, scrambled = system.datasets / "honest.npz", system.datasets / "scrambled.npz"
    np.savez(honest, **arrays, X_test=digits.X_test, y_test=digits.y_test)
    wrong = (digits.y_test + 1 + np.arange(len(digits.y_test)) % 9) % 10  # every label wrong
    np.savez(scrambled, **arrays, X_test=digits.X_test, y_test=wrong)
    runs = []
    for path in (honest, scrambled):
        sweep_id = system.submit(small_spec(path.stem, dataset=f"npz:{path}"))
        system.wait_until_done(sweep_id, 120)
        test = evaluated(system, sweep_id)
        chosen = [
            (t["stage"], t["hyperparameters"], t["best_val_acc"], t["epochs_done"])
            for t in system.trials(sweep_id)
        ]
        runs.append((chosen, test))
    (honest_trials, honest_test), (scrambled_trials, scrambled_test) = runs
    assert honest_trials == scrambled_trials  # every stage sampled and ranked the same
    assert honest_test["best_val_acc"] == scrambled_test["best_val_acc"]
    # The same model, scored against labels that are all wrong: only its own mistakes match.
    assert honest_test["best_test_acc"] > 0.5 and scrambled_test["best_test_acc"] < 0.1


def test_from_sweep_to_predictions_on_the_command_line(system: System, tmp_path: Path) -> None:
    spec_file = tmp_path / "sweep.json"
    spec_file.write_text(json.dumps(small_spec("shell")))
    env = {**os.environ, "HPSEARCH_URL": system.url}
    watched = hpsearch("submit", str(spec_file), "--watch", env=env)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert "test split (held out: nothing was selected on it):" in lines
    best = re.search(r"best trial (\d+): val 0\.\d{4}  test (0\.\d{4})", watched.stdout)
    chosen = re.search(
        r"top-(\d) ensemble \(k chosen on val\): .*/api/ensembles/(\d+)\)", watched.stdout
    )
    assert best and chosen, watched.stdout
    ensemble_id, k = int(chosen[2]), int(chosen[1])
    ensemble = system.get(f"/api/ensembles/{ensemble_id}")
    # The raw test images in an .npz, predicted with the stored ensemble's chosen members.
    data = load_dataset("digits")
    assert data.X_test is not None
    raw = np.round((data.X_test.astype(np.float64) + data.mean_image) * 16)
    np.savez(tmp_path / "raw.npz", X=raw)
    out = tmp_path / "predictions.npy"
    predicted = hpsearch(
        "predict", "--ensemble", str(ensemble_id), "--checkpoint-dir", str(system.checkpoints),
        "--input", str(tmp_path / "raw.npz"), "--output", str(out), env=env,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert (
        f"300 inputs from {tmp_path / 'raw.npz'}, predicted by ensemble {ensemble_id}"
        in predicted.stdout
    )
    paths = [system.checkpoints / m["checkpoint"] for m in ensemble["members"][:k]]
    np.testing.assert_array_equal(np.load(out), load_ensemble(paths).predict(raw))
    assert float(np.mean(np.load(out) == data.y_test)) == pytest.approx(
        float(chosen_test(watched.stdout))
    )
    one = hpsearch(
        "predict", "--checkpoint", str(paths[0]), "--input", str(tmp_path / "raw.npz"),
        "--output", str(out), "--probabilities", env=env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert np.load(out).shape == (300, 10)
    assert float(best[2]) == pytest.approx(
        float(np.mean(np.load(out).argmax(1) == data.y_test)), abs=5e-5
    )
    bad = hpsearch(
        "predict", "--checkpoint", str(tmp_path / "none.npz"),
        "--input", str(tmp_path / "raw.npz"), "--output", str(out), env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "none.npz: no such file" in bad.stderr
    sweep_id = ensemble["sweep_id"]
    asked = hpsearch(
        "ensemble", str(sweep_id), "--kind", "top-k", "--max-k", "2", "--watch", env=env
    )
    assert asked.returncode == 0, asked.stderr
    assert re.search(r"^   1  0\.\d{4}  0\.\d{4}", asked.stdout, re.M), asked.stdout
    assert "<- chosen on val" in asked.stdout
    refused = hpsearch("ensemble", str(sweep_id), "--max-k", "0", env=env)
    assert refused.returncode == 2 and "max_k" in refused.stderr


def chosen_test(stdout: str) -> str:
    match = re.search(r"top-\d ensemble .*test (0\.\d{4})", stdout)
    assert match, stdout
    return match[1]


def hpsearch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master.cli", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def ranked_rows(url: str, sweep_id: int) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """A sweep's name and spec, and its trials in leaderboard order with their epochs."""
    db = Database(url)
    try:
        with db.reading() as session:
            sweep = session.get_one(Sweep, sweep_id)
            trials = session.scalars(
                select(Trial)
                .where(Trial.sweep_id == sweep_id)
                .options(selectinload(Trial.epochs))
                .order_by(*ranking())
            ).all()
            rows = [
                (
                    t.id, t.stage_index, t.index, t.parent_id, t.start_epoch, t.hyperparameters,
                    t.seed, t.num_epochs, t.status, t.epochs_done, t.best_val_acc, t.best_epoch,
                    t.train_acc, t.val_acc, t.explosion, t.checkpoints,
                    [(e.epoch, e.cost, e.train_acc, e.val_acc, e.average_val_acc,
                      e.learning_rate, e.update_ratio, e.loss) for e in t.epochs],
                )
                for t in trials
            ]  # fmt: skip
            return {"name": sweep.name, "spec": sweep.spec}, rows
    finally:
        db.dispose()


def test_reindex_rebuilds_a_sweep_from_the_volume_alone(system: System, tmp_path: Path) -> None:
    spec = small_spec(
        "reindexed",
        stages=[{"trials": 5, "epochs": 2}, {"trials": 3, "epochs": 4, "promote": 2}],
    )
    sweep_id = system.submit(spec)
    system.wait_until_done(sweep_id, 120)
    url = f"sqlite:///{tmp_path / 'rebuilt.db'}"  # the lost database's stand-in
    env = dict(os.environ)
    rebuilt = hpsearch("reindex", str(system.checkpoints), "--database-url", url, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert re.match(r"reindexed \d+ sweeps, \d+ trials and \d+ epochs from ", rebuilt.stdout)
    before_sweep, before = ranked_rows(system.database_url, sweep_id)
    after_sweep, after = ranked_rows(url, sweep_id)
    assert after_sweep == before_sweep
    assert len(after) == 8 and any(row[3] is not None for row in after)  # lineage kept
    assert after == before  # the leaderboard, every trial's row and every epoch
    again = hpsearch("reindex", str(system.checkpoints), "--database-url", url, env=env)
    assert again.returncode == 2 and "already holds sweep(s)" in again.stderr
    # Without the sweep's record the trials are all there; the spec is what they tell.
    record = system.checkpoints / f"sweep{sweep_id:06d}" / "sweep.json"
    record.rename(record.with_suffix(".away"))
    try:
        bare = f"sqlite:///{tmp_path / 'bare.db'}"
        assert (
            hpsearch("reindex", str(system.checkpoints), "--database-url", bare, env=env).returncode
            == 0
        )
        bare_sweep, bare_rows = ranked_rows(bare, sweep_id)
    finally:
        record.with_suffix(".away").rename(record)
    assert bare_rows == before
    assert bare_sweep["name"] == f"sweep {sweep_id}"
    assert bare_sweep["spec"]["dataset"] == "digits"
    assert [s["trials"] for s in bare_sweep["spec"]["stages"]] == [5, 3]
