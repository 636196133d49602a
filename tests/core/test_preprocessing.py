"""Input preprocessing the notes name (mean subtraction, standardization, none), kept with
the model; unscaled inputs said in words; and a failed gradient check told apart: a wrong
gradient, or a check that input scale or float precision makes unreliable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import ConfigError, TrainConfig
from core.data import DatasetError, load_dataset
from core.gradcheck import (
    GRADIENT_WRONG,
    UNRELIABLE_PRECISION,
    UNRELIABLE_SCALE,
    GradCheckReport,
    ParamCheck,
    diagnose,
)
from core.predict import load_model
from core.preprocessing import Preprocessing
from core.trainer import build_model, train


def test_standardize_divides_by_the_training_std_and_keeps_constant_features() -> None:
    X = np.array([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0], [0.0, 5.0, 5.0]])
    prep = Preprocessing.fit(X, "standardize")
    np.testing.assert_allclose(prep.mean, [0.0, 3.0, 5.0])
    assert prep.std is not None
    np.testing.assert_allclose(prep.std, [1.0, np.sqrt(8 / 3), 1.0])  # constants: 1
    out = prep.apply(X)
    np.testing.assert_allclose(out.std(axis=0), [0.0, 1.0, 0.0])
    none = Preprocessing.fit(X, "none")
    np.testing.assert_array_equal(none.apply(X), X)
    with pytest.raises(ValueError, match="preprocessing: must be one of mean, standardize, none"):
        Preprocessing.fit(X, "whiten")


def test_every_kind_loads_travels_in_the_checkpoint_and_predicts_on_raw_inputs(
    tmp_path: Path,
) -> None:
    for kind in ("mean", "standardize", "none"):
        data = load_dataset("digits", preprocessing=kind)
        assert data.preprocessing_kind == kind
        if kind == "standardize":
            assert data.feature_std is not None
            assert abs(float(data.X_train.std(axis=0).max()) - 1.0) < 1e-5
        if kind == "none":
            assert float(data.X_train.min()) == 0.0  # pixels / 16, not centred
        config = TrainConfig(num_epochs=1, hidden_sizes=(20,), preprocessing=kind)
        model = build_model(config, data)
        state = train(model, data, config)
        path = save_checkpoint(
            tmp_path / f"{kind}.npz", model, state, preprocessing=data.preprocessing
        )
        stored = load_checkpoint(path).preprocessing
        assert stored is not None and stored.kind == kind
        # Raw 0-16 pixels back from the preprocessed split, through the stored preprocessing.
        pixels = data.X_val.astype(np.float64)
        if data.feature_std is not None:
            pixels = pixels * data.feature_std
        pixels = np.round((pixels + data.mean_image) * 16)
        np.testing.assert_array_equal(load_model(path).predict(pixels), model.predict(data.X_val))
    with pytest.raises(DatasetError, match="preprocessing: must be one of"):
        load_dataset("digits", preprocessing="pca")
    with pytest.raises(ConfigError, match="preprocessing: must be one of mean, standardize, none"):
        TrainConfig(preprocessing="pca")


def raw_pixels_npz(path: Path) -> str:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (120, 48)).astype(np.float64)
    y = rng.integers(0, 3, 120)
    np.savez(path, X_train=X[:80], y_train=y[:80], X_val=X[80:], y_val=y[80:])
    return f"npz:{path}"


def test_unscaled_inputs_are_said_in_words_and_standardize_fixes_them(tmp_path: Path) -> None:
    spec = raw_pixels_npz(tmp_path / "raw.npz")
    warned = load_dataset(spec)
    assert len(warned.warnings) == 1
    assert "the inputs look unscaled" in warned.warnings[0] and "raw.npz" in warned.warnings[0]
    assert "divide pixels by 255" in warned.warnings[0]
    assert load_dataset(spec, preprocessing="standardize").warnings == ()
    assert load_dataset("digits").warnings == ()


def hpsearch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_train_and_check_say_when_inputs_look_unscaled(tmp_path: Path) -> None:
    spec = raw_pixels_npz(tmp_path / "raw.npz")
    trained = hpsearch("train", "--dataset", spec, "--epochs", "1", "--no-progress")
    assert "warning: " in trained.stderr and "the inputs look unscaled" in trained.stderr
    checked = hpsearch("check", "--dataset", spec, "--json")
    report = json.loads(checked.stdout)
    assert report["warnings"] and "look unscaled" in report["warnings"][0]
    fine = hpsearch("check", "--dataset", spec, "--json", "--preprocessing", "standardize")
    assert json.loads(fine.stdout)["warnings"] == []


def report(errors: dict[str, float], h: float) -> GradCheckReport:
    checks = tuple(ParamCheck("data", name, 10, 0, error, (0,)) for name, error in errors.items())
    return GradCheckReport(checks, h, 3)


def test_a_failed_check_is_told_apart_wrong_or_unreliable() -> None:
    assert diagnose({1e-5: report({"W1": 1e-9, "b1": 1e-8}, 1e-5)}, []) is None
    # Wrong code: the same error at every step.
    wrong = diagnose(
        {1e-5: report({"W1": 0.3}, 1e-5), 1e-4: report({"W1": 0.29}, 1e-4),
         1e-6: report({"W1": 0.31}, 1e-6)},
        [],
    )  # fmt: skip
    assert wrong is not None and wrong.verdict == GRADIENT_WRONG
    assert "data W1" in wrong.text and "gradient code is wrong" in wrong.text
    # Precision: fine at another step.
    precise = diagnose(
        {1e-5: report({"W1": 0.05}, 1e-5), 1e-4: report({"W1": 3e-8}, 1e-4),
         1e-6: report({"W1": 0.4}, 1e-6)},
        [],
    )  # fmt: skip
    assert precise is not None and precise.verdict == UNRELIABLE_PRECISION
    assert "changes with the step h (1e-05, 0.0001, 1e-06)" in precise.text
    # Input scale: said first, whatever the steps show.
    scaled = diagnose({1e-5: report({"W2": 0.5}, 1e-5)}, ["x.npz: the inputs look unscaled"])
    assert scaled is not None and scaled.verdict == UNRELIABLE_SCALE
    assert "not a sign of a wrong gradient: x.npz: the inputs look unscaled" in scaled.text
