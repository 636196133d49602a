"""Every update rule against its formula computed by hand, and one contract for all rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import optim
from core.config import TrainConfig

W0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.1, 0.2, -0.3])
G2 = np.array([-0.4, 0.1, 0.2])


def two_steps(rule: optim.UpdateRule, config: dict) -> np.ndarray:
    w = W0.copy()
    w, config = rule(w, G1.copy(), config)
    w, config = rule(w, G2.copy(), config)
    return w


def test_sgd() -> None:
    w = two_steps(optim.sgd, {"learning_rate": 0.1})
    np.testing.assert_allclose(
        w, [1.0 - 0.1 * 0.1 + 0.1 * 0.4, -2.0 - 0.1 * 0.2 - 0.1 * 0.1, 0.5 + 0.1 * 0.3 - 0.1 * 0.2]
    )


def test_momentum() -> None:
    lr, mu = 0.1, 0.9
    v1 = -lr * G1
    v2 = mu * v1 - lr * G2
    w = two_steps(optim.momentum, {"learning_rate": lr, "momentum": mu})
    np.testing.assert_allclose(w, W0 + v1 + v2)
    # First coordinate by hand: v1 = -0.01, v2 = -0.009 + 0.04 = 0.031.
    assert w[0] == pytest.approx(1.0 - 0.01 + 0.031)


def test_nesterov_is_the_notes_v_prev_form() -> None:
    lr, mu = 0.1, 0.9
    x, v = W0.copy(), np.zeros(3)
    for dx in (G1, G2):
        v_prev = v  # the notes, line for line
        v = mu * v - lr * dx
        x = x + (-mu * v_prev + (1 + mu) * v)
    w = two_steps(optim.nesterov, {"learning_rate": lr, "momentum": mu})
    np.testing.assert_allclose(w, x)
    # First step by hand: v = -0.01, x = 1 + 1.9 * -0.01 = 0.981.
    first = optim.nesterov(W0.copy(), G1, {"learning_rate": lr, "momentum": mu})[0]
    assert first[0] == pytest.approx(0.981)


def test_adagrad() -> None:
    lr, eps = 0.1, 1e-8
    cache = G1**2
    w1 = W0 - lr * G1 / (np.sqrt(cache) + eps)
    cache = cache + G2**2
    expected = w1 - lr * G2 / (np.sqrt(cache) + eps)
    np.testing.assert_allclose(
        two_steps(optim.adagrad, {"learning_rate": lr, "epsilon": eps}), expected
    )


def test_rmsprop() -> None:
    lr, decay, eps = 0.01, 0.99, 1e-8
    cache = (1 - decay) * G1**2
    w1 = W0 - lr * G1 / (np.sqrt(cache) + eps)
    cache = decay * cache + (1 - decay) * G2**2
    expected = w1 - lr * G2 / (np.sqrt(cache) + eps)
    config = {"learning_rate": lr, "decay_rate": decay, "epsilon": eps}
    np.testing.assert_allclose(two_steps(optim.rmsprop, config), expected)


def test_adam_with_bias_correction() -> None:
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    m, v, w = np.zeros(3), np.zeros(3), W0.copy()
    for t, g in enumerate((G1, G2), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    config = {"learning_rate": lr, "beta1": b1, "beta2": b2, "epsilon": eps}
    np.testing.assert_allclose(two_steps(optim.adam, dict(config)), w)
    # With bias correction the very first step is lr * sign(g), whatever |g| is.
    first = optim.adam(W0.copy(), G1, dict(config))[0]
    np.testing.assert_allclose(first, W0 - lr * np.sign(G1), rtol=1e-6)


def rule_config(name: str) -> dict:
    defaults = TrainConfig(learning_rate=0.1)
    return {key: getattr(defaults, key) for key in optim.RULE_HYPERPARAMETERS[name]}


@pytest.mark.parametrize("name", sorted(optim.UPDATE_RULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contract(name: str, dtype: type) -> None:
    """In place on w, dw untouched, dtype kept, state in config, and it descends a bowl."""
    rule = optim.UPDATE_RULES[name]
    w: np.ndarray = np.array([3.0, -2.0, 1.5], dtype=dtype)
    config = rule_config(name)
    start = float(np.sum(w**2))
    for _ in range(200):
        dw = 2 * w  # gradient of sum(w**2)
        before = dw.copy()
        next_w, config = rule(w, dw, config)
        assert next_w is w
        assert next_w.dtype == dtype
        np.testing.assert_array_equal(dw, before)
        for value in config.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == dtype
    assert float(np.sum(w**2)) < start / 4
    assert math.isfinite(float(np.sum(w)))
