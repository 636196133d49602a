"""The sweep page's plots, as Plotly figures (plain dicts of data and layout) that the
page hands to Plotly.react. Building them here keeps the page's script generic and the
figures testable (the trial page's are in dashboard.trial_figures).

Validation accuracy against each log-scale hyperparameter; learning_rate x reg coloured by
validation accuracy, with each stage's range as a rectangle; parallel coordinates; and
each evaluated ensemble's validation and test accuracy against its number of members k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from master.models import Stage

Figure = dict[str, Any]


class TrialPoint(Protocol):
    """What a sweep figure needs of a trial (a Trial, or a row of just these columns)."""

    id: int
    stage_index: int
    hyperparameters: dict[str, Any]
    best_val_acc: float | None
    status: str


LOG_DISTS = ("loguniform", "logint")
NUMERIC_DISTS = ("loguniform", "uniform", "int", "logint")
PREFERRED_PAIR = ("learning_rate", "reg")
NO_ACCURACY_COLOUR = "#9e9e9e"


def layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {
            "text": title,
            "x": 0.01,
            "y": 0.98,
            "yref": "container",
            "yanchor": "top",
            "font": {"size": 14},
        },
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 340,
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def log_parameters(space: dict[str, Any]) -> list[str]:
    return [name for name, dist in space.items() if dist.get("dist") in LOG_DISTS]


def _hover(trial: TrialPoint, names: Sequence[str]) -> str:
    values = ", ".join(f"{n}={_short(trial.hyperparameters.get(n))}" for n in names)
    accuracy = "-" if trial.best_val_acc is None else f"{trial.best_val_acc:.4f}"
    return f"trial {trial.id} (stage {trial.stage_index}): val {accuracy}<br>{values}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def sweep_figures(
    space: dict[str, Any], stages: Sequence[Stage], trials: Sequence[TrialPoint]
) -> dict[str, Figure]:
    """Every figure of a sweep page, by element id. `space` is the sweep's own (the user's)."""
    names = list(space)
    scored = [t for t in trials if t.best_val_acc is not None]
    figures: dict[str, Figure] = {}
    for name in log_parameters(space):
        figures[f"plot-val-{name}"] = _accuracy_against(name, names, stages, scored)
    pair = pair_of(space)
    if pair:
        figures["plot-pair"] = _pair_scatter(pair, names, stages, trials)
    figures["plot-parallel"] = _parallel(space, scored)
    if not scored:
        note_empty(figures, "no trial has a validation accuracy yet")
    return figures


def note_empty(figures: dict[str, Figure], text: str) -> None:
    """Say why a plot is blank, in the middle of it."""
    for figure in figures.values():
        figure["layout"]["annotations"] = [
            {"text": text, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
        ]


def _accuracy_against(
    name: str, names: list[str], stages: Sequence[Stage], scored: Sequence[TrialPoint]
) -> Figure:
    data = []
    for stage in stages:
        points = [t for t in scored if t.stage_index == stage.index and name in t.hyperparameters]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"stage {stage.index}",
                "x": [t.hyperparameters[name] for t in points],
                "y": [t.best_val_acc for t in points],
                "customdata": [t.id for t in points],
                "hovertext": [_hover(t, names) for t in points],
                "hoverinfo": "text",
                "marker": {"size": 7, "opacity": 0.8},
            }
        )
    return {
        "data": data,
        "layout": layout(
            f"validation accuracy vs {name}",
            xaxis={"type": "log", "title": {"text": f"{name} (log scale)"}},
            yaxis={"title": {"text": "best validation accuracy"}},
        ),
    }


def pair_of(space: dict[str, Any]) -> tuple[str, str] | None:
    """The two log-scale hyperparameters to plot against each other: learning_rate x reg
    when both are searched on a log scale, else the first two."""
    if all(space.get(n, {}).get("dist") in LOG_DISTS for n in PREFERRED_PAIR):
        return PREFERRED_PAIR
    logs = log_parameters(space)
    return (logs[0], logs[1]) if len(logs) >= 2 else None


def _pair_scatter(
    pair: tuple[str, str], names: list[str], stages: Sequence[Stage], trials: Sequence[TrialPoint]
) -> Figure:
    x_name, y_name = pair
    placed = [t for t in trials if x_name in t.hyperparameters and y_name in t.hyperparameters]
    scored = [t for t in placed if t.best_val_acc is not None]
    unscored = [t for t in placed if t.best_val_acc is None and t.status != "queued"]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "trials (colour: validation accuracy)",
            "x": [t.hyperparameters[x_name] for t in scored],
            "y": [t.hyperparameters[y_name] for t in scored],
            "customdata": [t.id for t in scored],
            "hovertext": [_hover(t, names) for t in scored],
            "hoverinfo": "text",
            "marker": {
                "size": 8,
                "color": [t.best_val_acc for t in scored],
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": 1,
                "colorbar": {"title": {"text": "val acc"}},
            },
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "no validation accuracy (exploded or failed before an epoch ended)",
            "x": [t.hyperparameters[x_name] for t in unscored],
            "y": [t.hyperparameters[y_name] for t in unscored],
            "customdata": [t.id for t in unscored],
            "hovertext": [f"trial {t.id}: {t.status}" for t in unscored],
            "hoverinfo": "text",
            "marker": {"size": 7, "symbol": "x", "color": NO_ACCURACY_COLOUR},
        },
    ]
    for stage in stages:
        box = _rectangle(stage.space or {}, x_name, y_name)
        if box:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"stage {stage.index} range",
                    "x": box[0],
                    "y": box[1],
                    "hoverinfo": "name",
                    "line": {"width": 2, "dash": "dot" if stage.index else "solid"},
                }
            )
    return {
        "data": data,
        "layout": layout(
            f"{x_name} x {y_name}, coloured by validation accuracy; rectangles: each stage's range",
            height=440,
            xaxis={"type": "log", "title": {"text": x_name}},
            yaxis={"type": "log", "title": {"text": y_name}},
        ),
    }


def _rectangle(
    space: dict[str, Any], x_name: str, y_name: str
) -> tuple[list[float], list[float]] | None:
    x, y = space.get(x_name), space.get(y_name)
    if not x or not y or "low" not in x or "low" not in y:
        return None
    xs = [x["low"], x["high"], x["high"], x["low"], x["low"]]
    ys = [y["low"], y["low"], y["high"], y["high"], y["low"]]
    return xs, ys


def _parallel(space: dict[str, Any], scored: Sequence[TrialPoint]) -> Figure:
    dimensions = []
    for name, dist in space.items():
        values = [t.hyperparameters.get(name) for t in scored]
        kind = dist.get("dist")
        if kind in NUMERIC_DISTS:
            log = kind in LOG_DISTS
            dimensions.append(
                {
                    "label": f"log10 {name}" if log else name,
                    "values": [_log10(v) if log else v for v in values],
                }
            )
        elif kind == "choice":
            choices = [str(c) for c in dist.get("values", [])]
            dimensions.append(
                {
                    "label": name,
                    "values": [
                        choices.index(str(v)) if str(v) in choices else None for v in values
                    ],
                    "tickvals": list(range(len(choices))),
                    "ticktext": choices,
                }
            )
    dimensions.append({"label": "stage", "values": [t.stage_index for t in scored]})
    accuracies = [t.best_val_acc for t in scored]
    dimensions.append({"label": "val acc", "values": accuracies, "range": [0, 1]})
    return {
        "data": [
            {
                "type": "parcoords",
                "line": {
                    "color": accuracies,
                    "colorscale": "Viridis",
                    "cmin": 0,
                    "cmax": 1,
                    "showscale": True,
                },
                "dimensions": dimensions,
            }
        ],
        "layout": layout(
            "parallel coordinates (drag along an axis to filter)",
            height=400,
            margin={"l": 70, "r": 70, "t": 70, "b": 30},
        ),
    }


def _log10(value: Any) -> float | None:
    if isinstance(value, int | float) and value > 0:
        return math.log10(value)
    return None


def ensembles_figure(ensembles: Sequence[Any]) -> Figure:
    """Accuracy against k, validation solid and test dotted, one pair per ensemble (rows of
    master.models.Ensemble); k is chosen on the validation line."""
    data: list[dict[str, Any]] = []
    for ensemble in ensembles:
        curve = ensemble.curve or []
        ks = [point["k"] for point in curve]
        label = f"#{ensemble.id} {ensemble.kind}"
        data.append(
            {"type": "scatter", "mode": "lines+markers", "name": f"{label} val",
             "x": ks, "y": [point["val_acc"] for point in curve]}
        )  # fmt: skip
        tests = [point.get("test_acc") for point in curve]
        if any(t is not None for t in tests):
            data.append(
                {"type": "scatter", "mode": "lines+markers", "name": f"{label} test",
                 "x": ks, "y": tests, "line": {"dash": "dot"}}
            )  # fmt: skip
    return {
        "data": data,
        "layout": layout(
            "ensembles: accuracy vs members k (test: held out, never selected on)",
            xaxis={"title": {"text": "k (the best k members, probabilities averaged)"}, "dtick": 1},
            yaxis={"title": {"text": "accuracy"}},
        ),
    }
