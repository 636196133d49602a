"""The trial page's plots, as Plotly figures: loss per iteration, train and validation
accuracy per epoch, update:weight ratio per parameter with the notes' 1e-3 reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboard.figures import Figure, layout, note_empty
from dashboard.health import REFERENCE
from master.models import TrialEpoch


def trial_figures(epochs: Sequence[TrialEpoch]) -> dict[str, Figure]:
    """Loss per iteration, accuracies per epoch, update:weight ratios per epoch."""
    loss = [cost for epoch in epochs for cost in epoch.loss]
    epoch_numbers = [e.epoch for e in epochs]
    ratios: dict[str, list[float | None]] = {}
    for k, epoch in enumerate(epochs):
        for name, value in (epoch.update_ratio or {}).items():
            ratios.setdefault(name, [None] * len(epochs))[k] = value
    ratio_traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": name, "x": epoch_numbers, "y": values}
        for name, values in sorted(ratios.items())
    ]
    if epoch_numbers:
        ratio_traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{REFERENCE:.0e} (the notes' rule of thumb)",
                "x": [0, max(epoch_numbers)],
                "y": [REFERENCE, REFERENCE],
                "line": {"dash": "dash", "color": "#444", "width": 1},
                "hoverinfo": "name",
            }
        )
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
    if not epochs:
        note_empty(figures, "no epoch has ended yet")
    return figures
