"""The full net against the notes' gradient check, and its basic contract."""

from __future__ import annotations

import numpy as np
import pytest

from core.gradcheck import check_model_gradients
from core.model import FullyConnectedNet
from tests.core.factories import random_classification


def make_net(
    hidden: tuple[int, ...],
    loss: str = "softmax",
    reg: float = 0.0,
    dropout: float = 0.0,
    seed: int = 1,
) -> FullyConnectedNet:
    return FullyConnectedNet(
        15,
        5,
        hidden,
        loss=loss,
        reg=reg,
        dropout=dropout,
        dtype="float64",
        rng=np.random.default_rng(seed),
    )


@pytest.mark.parametrize("loss", ["softmax", "svm"])
@pytest.mark.parametrize("hidden", [(10,), (10, 8, 6)])
@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_full_net_passes_gradient_check(
    loss: str, hidden: tuple[int, ...], reg: float, dropout: float
) -> None:
    X, y = random_classification()
    report = check_model_gradients(make_net(hidden, loss, reg, dropout), X, y, coords_per_param=20)
    names = {c.name for c in report.checks}
    assert names == {f"{kind}{i}" for kind in "Wb" for i in range(1, len(hidden) + 2)}
    assert {c.phase for c in report.checks} == {"data", "reg"}
    assert report.passed(1e-7), [(c.phase, c.name, c.max_error) for c in report.checks]


def test_kinks_are_reported_not_failed() -> None:
    X, y = random_classification()
    net = make_net((10,))
    # Put one hidden unit's pre-activation for the first example exactly on the ReLU's kink.
    pre = X[0] @ net.params["W1"] + net.params["b1"]
    net.params["b1"][0] -= pre[0]
    report = check_model_gradients(net, X, y, coords_per_param=1000)
    b1 = next(c for c in report.checks if c.phase == "data" and c.name == "b1")
    assert b1.kinks >= 1
    assert b1.max_error < 1e-7


def test_a_wrong_gradient_is_caught() -> None:
    class OffByTwoPercent(FullyConnectedNet):
        def loss(self, X, y, rng=None):
            value, grads = super().loss(X, y, rng)
            grads["W2"] = grads["W2"] * 1.02
            return value, grads

    X, y = random_classification()
    net = OffByTwoPercent(15, 5, (10,), dtype="float64", rng=np.random.default_rng(1))
    report = check_model_gradients(net, X, y)
    w2 = next(c for c in report.checks if c.phase == "data" and c.name == "W2")
    assert w2.verdict == "uncomfortable"
    assert not report.passed()


def test_regularization_convention_is_reg_times_sum_of_squared_weights() -> None:
    X, y = random_classification()
    net = make_net((10,), reg=0.0)
    data_loss = net.loss(X, y)[0]
    net.reg = 0.5
    squares = sum(float(np.sum(net.params[w] ** 2)) for w in ("W1", "W2"))
    assert net.loss(X, y)[0] == pytest.approx(data_loss + 0.5 * squares)


def test_scores_predict_and_dtype() -> None:
    net = FullyConnectedNet(15, 5, (10,), rng=np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((7, 15)).astype(np.float32)
    assert net.scores(X).shape == (7, 5)
    assert net.scores(X).dtype == np.float32
    np.testing.assert_array_equal(net.predict(X), net.scores(X).argmax(axis=1))


def test_large_inputs_are_scored_in_chunks_identically() -> None:
    net = FullyConnectedNet(4, 3, (5,), dtype="float64", rng=np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((5000, 4))
    expected = np.maximum(X @ net.params["W1"] + net.params["b1"], 0) @ net.params["W2"]
    np.testing.assert_allclose(net.scores(X), expected + net.params["b2"])


def test_he_and_fixed_scale_initialization() -> None:
    he = FullyConnectedNet(400, 10, (300,), rng=np.random.default_rng(0))
    assert np.std(he.params["W1"]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    small = FullyConnectedNet(400, 10, (300,), weight_scale=1e-4, rng=np.random.default_rng(0))
    assert np.std(small.params["W1"]) == pytest.approx(1e-4, rel=0.02)
    assert not small.params["b1"].any()


def test_dropout_needs_a_generator_and_params_need_right_shapes() -> None:
    net = make_net((10,), dropout=0.5)
    X, y = random_classification()
    with pytest.raises(ValueError, match="rng"):
        net.loss(X, y)
    with pytest.raises(ValueError, match="params.W2"):
        FullyConnectedNet(15, 5, (10,), params={"W1": np.zeros((15, 10)), "b1": np.zeros(10)})


def test_params_are_named_views_of_one_flat_array_weights_first() -> None:
    net = FullyConnectedNet(15, 5, (10, 7), rng=np.random.default_rng(0))
    assert list(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert net.flat.size == 15 * 10 + 10 * 7 + 7 * 5 + 10 + 7 + 5
    for name, param in net.params.items():
        assert np.shares_memory(param, net.flat), name
    net.flat[:] = 0.5
    assert net.params["b3"][0] == 0.5
    assert net.num_weights == 15 * 10 + 10 * 7 + 7 * 5
    np.testing.assert_array_equal(net.flatten(net.params), net.flat)
    _, grads = net.loss(*random_classification(input_dim=15))
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in net.params.items()}
