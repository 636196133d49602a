"""Per-layer activation and gradient statistics, the notes' fifth quantity to babysit.

Recorded once per epoch at small cost, from work the trainer does anyway:
- activations: the hidden layers' ReLU outputs of the train-accuracy forward pass (its
  first PROBE_ROWS examples, the same rows every epoch), as shares of fixed bins, so that
  epochs and layers compare; and the share of units that never fired on those rows (dead
  ReLUs: "a large fraction of your network is dead" is the notes' warning sign);
- gradients: the norm of each weight matrix's gradient, averaged over the steps the
  update-ratio sampler already measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.state import History

PROBE_ROWS = 64
# Bins of a ReLU output: exactly 0, then decades and half-decades up to 100, then beyond.
ACTIVATION_EDGES = (0.0, 1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0, 100.0)
ACTIVATION_BINS = ("0", "<0.001", "<0.01", "<0.1", "<0.3", "<1", "<3", "<10", "<100", ">=100")
DECIMALS = 4  # shares are stored rounded: a trial's history stays small


def activation_shares(out: np.ndarray) -> list[float]:
    """Shares of a layer's ReLU outputs (rows, units) in ACTIVATION_BINS."""
    # How many values are at most each edge: bin 0 holds the zeros (ReLU outputs are >= 0),
    # bin i the values in (edge i-1, edge i], the last one the values above the last edge.
    # A whole-array count per edge costs a third less than sorting the values and placing
    # the edges among them (and half as much as counting along an axis); the differences
    # and shares are then taken on Python ints.
    size, edges = out.size, np.asarray(ACTIVATION_EDGES, dtype=out.dtype)  # compared as stored
    at_most = [int(np.count_nonzero(out <= edge)) for edge in edges] + [size]
    counts = [at_most[0]] + [high - low for low, high in zip(at_most, at_most[1:], strict=False)]
    return [round(count / max(1, size), DECIMALS) for count in counts]


def dead_share(out: np.ndarray) -> float:
    """The share of a layer's units that never fired on these rows."""
    fired = (out > 0).any(axis=0)
    return round(1.0 - float(fired.mean()), DECIMALS)


def layer_statistics(hidden: list[np.ndarray]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Activation shares and dead shares by layer name ("layer1", ...)."""
    shares, dead = {}, {}
    for i, out in enumerate(hidden, start=1):
        rows = out[:PROBE_ROWS]
        shares[f"layer{i}"] = activation_shares(rows)
        dead[f"layer{i}"] = dead_share(rows)
    return shares, dead


def epoch_distributions(history: History, k: int) -> dict[str, Any]:
    """The k-th epoch's statistics, as one JSON object (empty for a history without them:
    a run checkpointed before they were recorded)."""

    def at(series: dict[str, list[Any]]) -> dict[str, Any]:
        return {name: values[k] for name, values in series.items() if k < len(values)}

    found = {
        "activations": at(history.activations),
        "dead_units": at(history.dead_units),
        "grad_norm": at(history.grad_norm),
    }
    return {key: value for key, value in found.items() if value}
