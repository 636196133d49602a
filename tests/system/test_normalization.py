"""Batch normalization through the real system: a sweep that searches `normalization` runs
on real RQ workers, and its batchnorm checkpoints predict after a load exactly as they
scored when written (test mode with the running statistics they carry)."""

from __future__ import annotations

import numpy as np
import pytest

from core.checkpoint import parse_checkpoint_name
from core.data import load_dataset
from core.predict import load_model
from tests.conftest import SWEEPS_GROUP
from tests.master.factories import example_spec
from tests.system.conftest import System

# Nothing here kills a process or lets a lease lapse: beside the serial group.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SWEEPS_GROUP)]


def test_a_sweep_searches_batchnorm_and_its_checkpoints_predict_after_a_load(
    system: System,
) -> None:
    spec = example_spec(
        name="batchnorm",
        model={"hidden_sizes": [40, 40]},
        fixed={"update": "momentum", "batch_size": 50},
        space={
            "learning_rate": {"dist": "loguniform", "low": 1e-3, "high": 3e-1},
            "normalization": {"dist": "choice", "values": ["none", "batchnorm"]},
        },
        stages=[{"trials": 8, "epochs": 2}, {"trials": 4, "epochs": 3, "keep_top": 4}],
    )
    sweep_id = system.submit(spec)
    sweep = system.wait_until_done(sweep_id, 180)
    assert sweep["status"] == "finished"
    trials = system.trials(sweep_id)
    kinds = {t["hyperparameters"]["normalization"] for t in trials}
    assert kinds == {"none", "batchnorm"}
    data = load_dataset("digits")
    raw = np.round((data.X_val.astype(np.float64) + data.mean_image) * 16)
    checked = 0
    for trial in trials:
        if trial["hyperparameters"]["normalization"] != "batchnorm":
            continue
        assert trial["status"] == "finished", trial
        for relative in trial["checkpoints"]:
            model = load_model(system.checkpoints / relative)
            assert "gamma1" in model.net.params and "b1" not in model.net.params
            accuracy = float(np.mean(model.predict(raw) == data.y_val))
            # The file's name holds the validation accuracy the worker measured when it wrote it.
            assert f"{accuracy:.4f}" == f"{parse_checkpoint_name(relative).val_acc:.4f}"
            checked += 1
    assert checked >= 2
