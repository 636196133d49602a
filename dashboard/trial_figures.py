"""The trial page's plots, as Plotly figures: loss per iteration, train and validation
accuracy per epoch, update:weight ratio per parameter with the notes' 1e-3 reference, and
the per-layer distributions (core.distributions): each hidden layer's ReLU outputs over
epochs as a heatmap, the share of dead units, and each weight matrix's gradient norm. A plot
of what the trial's trainer does not report says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.babysitting import DEAD_SHARE
from core.distributions import ACTIVATION_BINS
from dashboard.figures import Figure, layout, note_empty
from dashboard.health import REFERENCE
from master.diagnoses import per_epoch
from master.models import TrialEpoch

# Where a trial's trainer measures nothing of a plot's kind (a user trainer need not).
NOT_REPORTED = "not reported by this trial's trainer"


def trial_figures(epochs: Sequence[TrialEpoch]) -> dict[str, Figure]:
    """Loss per iteration, accuracies per epoch, update:weight ratios per epoch."""
    loss = [cost for epoch in epochs for cost in epoch.loss]
    epoch_numbers = [e.epoch for e in epochs]
    ratios = per_epoch(epochs, lambda epoch: epoch.update_ratio)
    ratio_traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": name, "x": epoch_numbers, "y": values}
        for name, values in ratios.items()
    ]
    if epoch_numbers and ratios:
        name = f"{REFERENCE:.0e} (the notes' rule of thumb)"
        ratio_traces.append(reference_line(name, max(epoch_numbers), REFERENCE))
    figures: dict[str, Figure] = {
        "plot-loss": {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "cost",
                    "x": list(range(1, len(loss) + 1)),
                    "y": loss,
                    "line": {"width": 1},
                }
            ],
            "layout": layout(
                "loss per iteration",
                xaxis={"title": {"text": "iteration"}},
                yaxis={"title": {"text": "cost"}, "type": "linear"},
                showlegend=False,
            ),
        },
        "plot-accuracy": {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": name,
                    "x": epoch_numbers,
                    "y": [getattr(e, field) for e in epochs],
                }
                for name, field in (("train", "train_acc"), ("validation", "val_acc"))
            ],
            "layout": layout(
                "train and validation accuracy (a wide gap: overfitting)",
                xaxis={"title": {"text": "epoch"}},
                yaxis={"title": {"text": "accuracy"}, "range": [0, 1]},
            ),
        },
        "plot-ratios": {
            "data": ratio_traces,
            "layout": layout(
                "update:weight ratio per parameter (about 1e-3 is healthy)",
                xaxis={"title": {"text": "epoch"}},
                yaxis={"title": {"text": "|update| / |weight|"}, "type": "log"},
            ),
        },
    }
    if epochs and not ratios:  # a user trainer may not measure them
        note_empty({"plot-ratios": figures["plot-ratios"]}, NOT_REPORTED)
    figures.update(distribution_figures(epochs))
    if not epochs:
        note_empty(figures, "no epoch has ended yet")
    return figures


def reference_line(name: str, x_max: float, y: float) -> dict[str, Any]:
    """A thin dashed horizontal line at `y`, from epoch 0 to `x_max`."""
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": [0, x_max],
        "y": [y, y],
        "line": {"dash": "dash", "color": "#444", "width": 1},
        "hoverinfo": "name",
    }


def _series(epochs: Sequence[TrialEpoch], key: str) -> dict[str, list[Any]]:
    """One list per layer (or weight matrix) of the epochs' `key` statistics, None where an
    epoch has none (one recorded before distributions were)."""
    return per_epoch(epochs, lambda epoch: (epoch.distributions or {}).get(key))


def _not_reported(title: str, y_title: str) -> Figure:
    """A plot of what the trial's trainer does not report (a user's trainer need not)."""
    figure: Figure = {
        "data": [],
        "layout": layout(
            title, xaxis={"title": {"text": "epoch"}}, yaxis={"title": {"text": y_title}}
        ),
    }
    note_empty({"plot": figure}, NOT_REPORTED)
    return figure


def distribution_figures(epochs: Sequence[TrialEpoch]) -> dict[str, Figure]:
    numbers = [e.epoch for e in epochs]
    figures: dict[str, Figure] = {}
    for name, shares in _series(epochs, "activations").items():
        # z[bin][epoch]: a column per epoch, the bins bottom (0) to top (>= 100).
        z = [[None if s is None else s[b] for s in shares] for b in range(len(ACTIVATION_BINS))]
        figures[f"plot-activations-{name}"] = {
            "data": [
                {
                    "type": "heatmap",
                    "x": numbers,
                    "y": list(ACTIVATION_BINS),
                    "z": z,
                    "colorscale": "Viridis",
                    "zmin": 0,
                    "zmax": 1,
                    "colorbar": {"title": {"text": "share"}},
                    "hovertemplate": "epoch %{x}<br>output %{y}: %{z:.1%}<extra></extra>",
                }
            ],
            "layout": layout(
                f"{name}: ReLU outputs over epochs (the bottom row is 0: inactive)",
                xaxis={"title": {"text": "epoch"}},
                yaxis={"title": {"text": "output"}, "type": "category"},
            ),
        }
    dead = _series(epochs, "dead_units")
    if numbers and not dead:
        figures["plot-dead"] = _not_reported("dead units", "share of units")
    if dead:
        traces: list[dict[str, Any]] = [
            {"type": "scatter", "mode": "lines+markers", "name": name, "x": numbers, "y": values}
            for name, values in dead.items()
        ]
        traces.append(reference_line(f"{DEAD_SHARE:.0%}: called out", max(numbers), DEAD_SHARE))
        figures["plot-dead"] = {
            "data": traces,
            "layout": layout(
                "dead units: the share of each layer's ReLUs that never fired on the probe",
                xaxis={"title": {"text": "epoch"}},
                yaxis={"title": {"text": "share of units"}, "range": [0, 1]},
            ),
        }
    norms = _series(epochs, "grad_norm")
    if numbers and not norms:
        figures["plot-gradients"] = _not_reported("gradient norm per weight matrix", "|dW|")
    if norms:
        figures["plot-gradients"] = {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"|d{name}|",
                    "x": numbers,
                    "y": values,
                }
                for name, values in norms.items()
            ],  # fmt: skip
            "layout": layout(
                "gradient norm per weight matrix (a layer whose gradient vanishes learns nothing)",
                xaxis={"title": {"text": "epoch"}},
                yaxis={"title": {"text": "|dW|"}, "type": "log"},
            ),
        }
    return figures
