"""The sweep at a glance, as the peers' dashboards have it: every trial's validation curve
on one plot (by stage; a promoted trial joined to its parent where it took over), and which
hyperparameters explain the validation accuracy.

Importance is a random forest's (scikit-learn, already a dependency): it is fit on the
searched values in the scale they were searched in (log10 for log ranges, one column per
choice value) against each scored trial's best validation accuracy, and reports each
hyperparameter's share of the impurity decrease, summed over its columns. A forest is
fit once per sweep and number of scored trials: a running sweep's page polls every 2 s.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.figures import Figure, layout
from master.models import Trial, TrialEpoch, ranking

MAX_CURVES = 500  # the best trials, when a sweep has more
MIN_TRIALS_FOR_IMPORTANCE = 8
FOREST_TREES = 100
_cache: OrderedDict[tuple[int, int], list[tuple[str, float]]] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 64


def curves_figure(session: Session, sweep_id: int, stages: int) -> Figure:
    best = session.execute(
        select(Trial.id, Trial.stage_index, Trial.start_epoch)
        .where(Trial.sweep_id == sweep_id, Trial.best_val_acc.is_not(None))
        .order_by(*ranking())
        .limit(MAX_CURVES)
    ).all()
    starts = {trial_id: (stage, start) for trial_id, stage, start in best}
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    if starts:
        rows = session.execute(
            select(TrialEpoch.trial_id, TrialEpoch.epoch, TrialEpoch.val_acc)
            .where(TrialEpoch.trial_id.in_(starts))
            .order_by(TrialEpoch.trial_id, TrialEpoch.epoch)
        )
        for trial_id, epoch, val_acc in rows:
            # A promoted trial's history begins with its parent's epochs: draw its own,
            # from the parent's last point, so that the two curves join there.
            if epoch >= starts[trial_id][1]:
                points[trial_id].append((epoch, val_acc))
    data = []
    for stage in range(stages):
        x: list[float | None] = []
        y: list[float | None] = []
        ids: list[int | None] = []
        for trial_id, (trial_stage, _) in starts.items():
            if trial_stage != stage or not points[trial_id]:
                continue
            for epoch, val_acc in points[trial_id]:
                x.append(epoch)
                y.append(val_acc)
                ids.append(trial_id)
            x.append(None)  # a gap: one polyline per trial in one trace per stage
            y.append(None)
            ids.append(None)
        if x:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"stage {stage}",
                    "x": x,
                    "y": y,
                    "customdata": ids,
                    "hovertemplate": "trial %{customdata}<br>epoch %{x}: %{y:.4f}<extra></extra>",
                    "line": {"width": 1},
                    "opacity": 0.6,
                }
            )
    shown = f" (the best {MAX_CURVES})" if len(best) == MAX_CURVES else ""
    return {
        "data": data,
        "layout": layout(
            f"every trial's validation accuracy{shown}, by stage",
            xaxis={"title": {"text": "epoch"}},
            yaxis={"title": {"text": "validation accuracy"}},
        ),
    }


def _columns(
    space: dict[str, Any], hyperparameters: Sequence[dict[str, Any]]
) -> tuple[np.ndarray, list[str]]:
    """The searched values as a matrix, one column per number (log10 for log ranges) or per
    choice value; and the hyperparameter each column belongs to."""
    columns: list[list[float]] = []
    owners: list[str] = []
    for name, dist in space.items():
        values = [hp.get(name) for hp in hyperparameters]
        if dist.get("dist") == "choice":
            for choice in dist.get("values", []):
                columns.append([1.0 if v == choice else 0.0 for v in values])
                owners.append(name)
            continue
        log = dist.get("dist") in ("loguniform", "logint")
        column = []
        for v in values:
            number = (
                float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
            )
            column.append(math.log10(number) if log and number > 0 else number)
        columns.append(column)
        owners.append(name)
    return np.array(columns, dtype=np.float64).T, owners


def importances(
    space: dict[str, Any], hyperparameters: Sequence[dict[str, Any]], accuracy: Sequence[float]
) -> list[tuple[str, float]]:
    """(name, share) by importance, highest first; [] with too few trials to say."""
    if len(accuracy) < MIN_TRIALS_FOR_IMPORTANCE or not space:
        return []
    from sklearn.ensemble import RandomForestRegressor  # lazily: only this figure needs it

    X, owners = _columns(space, hyperparameters)
    for column in X.T:  # a value a trial lacks (or cannot have): the column's median
        known = np.isfinite(column)
        column[~known] = np.median(column[known]) if known.any() else 0.0
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=0, n_jobs=1)
    forest.fit(X, np.asarray(accuracy, dtype=np.float64))
    shares: dict[str, float] = defaultdict(float)
    for owner, share in zip(owners, forest.feature_importances_, strict=True):
        shares[owner] += float(share)
    return sorted(shares.items(), key=lambda item: -item[1])


def importance_figure(session: Session, sweep_id: int, space: dict[str, Any]) -> Figure:
    rows = session.execute(
        select(Trial.hyperparameters, Trial.best_val_acc).where(
            Trial.sweep_id == sweep_id, Trial.best_val_acc.is_not(None)
        )
    ).all()
    key = (sweep_id, len(rows))
    with _cache_lock:
        found = _cache.get(key)
    if found is None:
        found = importances(space, [hp for hp, _ in rows], [acc for _, acc in rows])
        with _cache_lock:
            _cache[key] = found
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    title = "which hyperparameters explain the validation accuracy (random-forest importance)"
    figure: Figure = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [share for _, share in reversed(found)],
                "y": [name for name, _ in reversed(found)],
                "hovertemplate": "%{y}: %{x:.0%}<extra></extra>",
            }
        ],
        "layout": layout(title, xaxis={"title": {"text": "share of importance"}, "range": [0, 1]}),
    }
    if not found:
        figure["layout"]["annotations"] = [
            {"text": f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} scored trials",
             "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
        ]  # fmt: skip
    return figure
