"""Per-layer distributions: fixed bins, dead units, gradient norms, recorded every epoch
and carried through a checkpoint's history."""

from __future__ import annotations

import numpy as np

from core.config import TrainConfig
from core.data import Dataset
from core.distributions import (
    ACTIVATION_BINS,
    PROBE_ROWS,
    activation_shares,
    dead_share,
    epoch_distributions,
)
from core.trainer import build_model, train


def test_relu_outputs_fall_in_fixed_bins_and_never_firing_units_are_dead() -> None:
    out = np.array([[0.0, 0.0005, 0.05, 2.0], [0.0, 0.0, 50.0, 500.0]], dtype=np.float32)
    shares = activation_shares(out)
    assert len(shares) == len(ACTIVATION_BINS)
    counts = dict(zip(ACTIVATION_BINS, (round(s * 8) for s in shares), strict=True))
    assert counts == {"0": 3, "<0.001": 1, "<0.01": 0, "<0.1": 1, "<0.3": 0, "<1": 0,
                      "<3": 1, "<10": 0, "<100": 1, ">=100": 1}  # fmt: skip
    assert sum(shares) == 1.0
    assert dead_share(out) == 0.25  # the first unit never fired


def test_every_epoch_records_each_layers_distribution_and_gradient_norms(digits: Dataset) -> None:
    config = TrainConfig(num_epochs=3, hidden_sizes=(40, 30))
    state = train(build_model(config, digits), digits, config)
    history = state.history
    assert set(history.activations) == {"layer1", "layer2"} == set(history.dead_units)
    assert all(len(v) == 3 for v in history.activations.values())
    assert all(abs(sum(shares) - 1.0) < 1e-3 for shares in history.activations["layer1"])
    assert set(history.grad_norm) == {"W1", "W2", "W3"}
    assert all(n > 0 for values in history.grad_norm.values() for n in values)
    one = epoch_distributions(history, 2)
    assert one["dead_units"]["layer2"] == history.dead_units["layer2"][2]
    assert one["grad_norm"]["W1"] == history.grad_norm["W1"][2]


def test_a_net_pushed_dead_shows_it(digits: Dataset) -> None:
    # A huge learning rate with plain SGD kills most ReLUs in the first epoch.
    config = TrainConfig(num_epochs=1, hidden_sizes=(50,), update="sgd", learning_rate=30.0,
                         explode_factor=1e9)  # fmt: skip
    state = train(build_model(config, digits), digits, config)
    assert state.history.dead_units["layer1"][0] > 0.5
    assert PROBE_ROWS == 64
