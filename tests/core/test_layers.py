"""Every layer's backward pass against centered differences, in float64 (notes: < 1e-7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import layers
from core.gradcheck import array_gradient


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator of each test's own: its data do not depend on which tests ran before."""
    return np.random.default_rng(0)


def max_relative_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    diff = np.abs(analytic - numerical)
    scale = np.maximum(np.abs(analytic) + np.abs(numerical), 1e-12)
    return float(np.max(np.where(diff == 0, 0.0, diff / scale)))


def test_affine_gradients(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    dx, dw, db = layers.affine_backward(dout, layers.affine_forward(x, w, b)[1])

    def f() -> float:
        return float(np.sum(layers.affine_forward(x, w, b)[0] * dout))

    # f is linear in every coordinate: a centered difference has no truncation error at any
    # step, and a larger step shrinks its rounding error.
    h = 1e-3
    assert dx is not None
    assert max_relative_error(dx, array_gradient(f, x, h)) < 1e-7
    assert max_relative_error(dw, array_gradient(f, w, h)) < 1e-7
    assert max_relative_error(db, array_gradient(f, b, h)) < 1e-7


def test_affine_backward_skips_dx_when_not_needed(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), np.zeros(4)
    dx, dw, _ = layers.affine_backward(np.ones((2, 4)), layers.affine_forward(x, w, b)[1], False)
    assert dx is None
    np.testing.assert_allclose(dw, x.T @ np.ones((2, 4)))


def test_relu_gradients_away_from_the_kink(rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep every input far from the kink at 0
    dout = rng.standard_normal(x.shape)
    dx = layers.relu_backward(dout, layers.relu_forward(x)[1])

    def f() -> float:
        return float(np.sum(layers.relu_forward(x)[0] * dout))

    assert max_relative_error(dx, array_gradient(f, x)) < 1e-7
    np.testing.assert_array_equal(layers.relu_forward(np.array([-1.0, 0.0, 2.0]))[0], [0, 0, 2])


def test_affine_relu_matches_its_parts(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    out, cache = layers.affine_relu_forward(x, w, b)
    np.testing.assert_allclose(out, np.maximum(x @ w + b, 0))
    dx, dw, db = layers.affine_relu_backward(dout, cache)

    def f() -> float:
        return float(np.sum(layers.affine_relu_forward(x, w, b)[0] * dout))

    assert dx is not None
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        assert max_relative_error(analytic, array_gradient(f, wrt)) < 1e-7


def test_dropout_with_a_fixed_seed(rng: np.random.Generator) -> None:
    x = rng.standard_normal((50, 40))
    dout = rng.standard_normal(x.shape)
    out, mask = layers.dropout_forward(x, 0.3, np.random.default_rng(7))
    dx = layers.dropout_backward(dout, mask)

    def f() -> float:
        return float(np.sum(layers.dropout_forward(x, 0.3, np.random.default_rng(7))[0] * dout))

    # f is linear in x (the mask is fixed by the seed): a larger step costs no truncation
    # error, and keeps the rounding of the 2000-term sum, over h, below 1e-7 of the
    # smallest entries of dx (h = 1e-5 gave 1.2e-7 on some draws).
    assert max_relative_error(dx, array_gradient(f, x, h=1e-3)) < 1e-7
    dropped = np.mean(out == 0)
    assert 0.25 < dropped < 0.35
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.7)  # inverted: survivors scaled up


def test_dropout_rejects_a_probability_of_one() -> None:
    with pytest.raises(ValueError, match="dropout"):
        layers.dropout_forward(np.ones(3), 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("loss_fn", [layers.softmax_loss, layers.svm_loss])
def test_loss_gradients(loss_fn, rng: np.random.Generator) -> None:
    scores = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    _, dscores = loss_fn(scores, y)

    def f() -> float:
        return float(loss_fn(scores, y)[0])

    assert max_relative_error(dscores, array_gradient(f, scores)) < 1e-7


def test_loss_values_at_chance() -> None:
    scores = np.zeros((3, 10))
    y = np.array([0, 4, 9])
    assert layers.softmax_loss(scores, y)[0] == pytest.approx(math.log(10))
    assert layers.svm_loss(scores, y)[0] == pytest.approx(9.0)


def test_softmax_is_stable_for_huge_scores() -> None:
    loss, dscores = layers.softmax_loss(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    assert loss == pytest.approx(500.0)
    assert np.all(np.isfinite(dscores))
