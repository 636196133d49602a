"""Batch normalization: the layer's gradients and both modes against hand-computed values,
nets with it (gradient check, no regularization of gamma and beta), and its running
statistics through checkpoints, prediction and an exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import layers
from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import ConfigError, TrainConfig
from core.data import Dataset
from core.gradcheck import array_gradient, check_model_gradients, relative_error
from core.model import FullyConnectedNet
from core.predict import load_model
from core.state import TrainState, TrainStatus
from core.trainer import build_model, train
from tests.core.factories import random_classification


def max_relative_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    return max(
        relative_error(float(a), float(n))
        for a, n in zip(analytic.flat, numerical.flat, strict=True)
    )


def test_the_layers_gradients_match_finite_differences_in_train_and_test_mode() -> None:
    rng = np.random.default_rng(0)
    x = 3 * rng.standard_normal((6, 4)) + 2
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    for mode in ("train", "test"):
        running = {"running_mean": rng.standard_normal(4), "running_var": rng.random(4) + 0.5}

        def loss(mode: str = mode, running: dict[str, Any] = running) -> float:
            # A copy of the statistics: a train-mode pass moves them.
            param = {"mode": mode, **{k: v.copy() for k, v in running.items()}}
            return float(np.sum(layers.batchnorm_forward(x, gamma, beta, param)[0] * dout))

        param = {"mode": mode, **{k: v.copy() for k, v in running.items()}}
        _, cache = layers.batchnorm_forward(x, gamma, beta, param)
        dx, dgamma, dbeta = layers.batchnorm_backward(dout, cache)
        for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
            assert max_relative_error(analytic, array_gradient(loss, wrt)) < 1e-7, mode


def test_train_mode_normalizes_with_the_batch_and_moves_the_running_statistics() -> None:
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    gamma, beta = np.array([2.0, 1.0]), np.array([0.5, -1.0])
    param: dict[str, Any] = {"mode": "train", "eps": 0.0, "momentum": 0.9}
    out, _ = layers.batchnorm_forward(x, gamma, beta, param)
    # Feature 0: mean 3, variance 8/3; feature 1: mean 30, variance 800/3.
    x_hat = np.array([-2, 0, 2]) / np.sqrt(8 / 3)
    np.testing.assert_allclose(out[:, 0], 2 * x_hat + 0.5)
    np.testing.assert_allclose(out[:, 1], x_hat - 1)
    np.testing.assert_allclose(param["running_mean"], [0.1 * 3, 0.1 * 30])
    np.testing.assert_allclose(param["running_var"], [0.9 + 0.1 * 8 / 3, 0.9 + 0.1 * 800 / 3])


def test_test_mode_uses_the_running_statistics_hand_computed() -> None:
    x = np.array([[4.0, -1.0], [0.0, 2.0]])
    param: dict[str, Any] = {
        "mode": "test",
        "eps": 1e-5,
        "running_mean": np.array([2.0, 1.0]),
        "running_var": np.array([4.0, 9.0]),
    }
    out, _ = layers.batchnorm_forward(x, np.array([3.0, 0.5]), np.array([1.0, 0.0]), param)
    expected = np.array(
        [
            [3 * (4 - 2) / np.sqrt(4 + 1e-5) + 1, 0.5 * (-1 - 1) / np.sqrt(9 + 1e-5)],
            [3 * (0 - 2) / np.sqrt(4 + 1e-5) + 1, 0.5 * (2 - 1) / np.sqrt(9 + 1e-5)],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    # Each example alone gives the same: at test time nothing depends on the batch.
    alone = layers.batchnorm_forward(x[:1], np.array([3.0, 0.5]), np.array([1.0, 0.0]), param)[0]
    np.testing.assert_allclose(alone, expected[:1], rtol=1e-12)
    np.testing.assert_array_equal(param["running_mean"], [2.0, 1.0])  # untouched
    with pytest.raises(ValueError, match="bn_param.mode: must be 'train' or 'test'"):
        layers.batchnorm_forward(x, np.ones(2), np.zeros(2), {"mode": "eval"})


def batchnorm_net(**changes: Any) -> FullyConnectedNet:
    options: dict[str, Any] = {"reg": 0.1, "dtype": "float64", "normalization": "batchnorm"}
    options.update(changes)
    return FullyConnectedNet(15, 5, (12, 9), rng=np.random.default_rng(1), **options)


def test_a_net_with_batchnorm_passes_the_gradient_check() -> None:
    X, y = random_classification(num_examples=8, input_dim=15, num_classes=5)
    model = batchnorm_net()
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(model.params)
    np.testing.assert_array_equal(model.params["gamma1"], np.ones(12))
    for dropout in (0.0, 0.3):
        model = batchnorm_net(dropout=dropout)
        report = check_model_gradients(model, X, y, coords_per_param=8)
        assert report.passed(1e-7), [(c.name, c.phase, c.max_error) for c in report.checks]


def test_gamma_and_beta_are_not_regularized() -> None:
    X, y = random_classification(num_examples=8, input_dim=15, num_classes=5)
    model = batchnorm_net(reg=0.5)
    before = model.reg_loss()
    model.params["gamma1"][...] = 7.0
    model.params["beta2"][...] = -3.0
    assert model.reg_loss() == before
    with_reg = model.loss(X, y)[1]
    without = model.astype("float64", reg=0.0).loss(X, y)[1]
    for name in ("gamma1", "beta1", "gamma2", "beta2"):
        np.testing.assert_allclose(with_reg[name], without[name], rtol=0, atol=1e-15)
    assert np.abs(with_reg["W1"] - without["W1"]).max() > 0.1


def test_batchnorm_is_a_validated_hyperparameter() -> None:
    assert TrainConfig(normalization="batchnorm").normalization == "batchnorm"
    with pytest.raises(ConfigError, match="normalization: must be one of none, batchnorm"):
        TrainConfig(normalization="layernorm")


def run(
    config: TrainConfig, data: Dataset, **callbacks: Any
) -> tuple[FullyConnectedNet, TrainState]:
    model = build_model(config, data)
    return model, train(model, data, config, **callbacks)


def test_running_statistics_travel_in_checkpoints_and_a_resume_stays_exact(
    digits: Dataset, tmp_path: Path
) -> None:
    config = TrainConfig(
        num_epochs=4, normalization="batchnorm", hidden_sizes=(50, 30), dropout=0.1,
        learning_rate=0.05,
    )  # fmt: skip
    whole_model, whole = run(config, digits)
    assert whole.status is TrainStatus.FINISHED and whole.best_val_acc > 0.85
    running = whole_model.running_stats()
    assert set(running) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert np.abs(running["running_mean1"]).max() > 0  # training moved them
    saved: list[Path] = []

    def at_epoch_2(model: FullyConnectedNet, state: TrainState) -> None:
        if state.epoch == 2:
            path = save_checkpoint(
                tmp_path / "ep2.npz", model, state, preprocessing=digits.preprocessing
            )
            saved.append(path)

    run(config, digits, on_epoch_end=at_epoch_2, should_stop=lambda: bool(saved))
    checkpoint = load_checkpoint(saved[0])
    resumed = train(checkpoint.model, digits, config, state=checkpoint.state)
    assert resumed.history.loss == whole.history.loss
    assert resumed.history.val_acc == whole.history.val_acc
    np.testing.assert_array_equal(checkpoint.model.flat, whole_model.flat)
    for name, array in running.items():
        np.testing.assert_array_equal(checkpoint.model.running_stats()[name], array)
    # Test mode after a load: the same scores as the model that trained, on raw inputs too.
    final = save_checkpoint(
        tmp_path / "final.npz", whole_model, whole, preprocessing=digits.preprocessing
    )
    loaded = load_model(final)
    raw = np.round((digits.X_val.astype(np.float64) + digits.mean_image) * 16)
    np.testing.assert_array_equal(loaded.predict(raw), whole_model.predict(digits.X_val))
    np.testing.assert_array_equal(
        load_checkpoint(final).model.scores(digits.X_val), whole_model.scores(digits.X_val)
    )
