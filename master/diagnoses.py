"""Babysitting in words for the API and the dashboard: a trial's findings from its stored
numbers (core.babysitting), and a sweep's summed up across its trials."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.babysitting import (
    NO_GAP,
    OVERFIT_GAP,
    UNDERFIT_TRAIN_ACC,
    Finding,
    RunNumbers,
    diagnose_run,
)
from core.config import TrainConfig
from master.models import Trial, TrialEpoch, TrialStatus

DEFAULTS = TrainConfig()


def per_epoch(
    epochs: Sequence[TrialEpoch], values_of: Callable[[TrialEpoch], dict[str, Any] | None]
) -> dict[str, list[Any]]:
    """One list per name (a parameter, a layer) of what `values_of` gives for each epoch,
    None where an epoch has none; names sorted."""
    found: dict[str, list[Any]] = {}
    for k, epoch in enumerate(epochs):
        for name, value in (values_of(epoch) or {}).items():
            found.setdefault(name, [None] * len(epochs))[k] = value
    return dict(sorted(found.items()))


def trial_findings(trial: Trial) -> list[Finding]:
    """The trial's findings; its epochs must be loaded."""
    epochs = trial.epochs
    ratios = per_epoch(epochs, lambda epoch: epoch.update_ratio)
    dead = {}
    if epochs and epochs[-1].distributions:
        dead = dict(epochs[-1].distributions.get("dead_units") or {})
    hp = trial.hyperparameters
    numbers = RunNumbers(
        status=str(trial.status),
        explosion=trial.explosion,
        losses=[cost for epoch in epochs[:1] for cost in epoch.loss[:1]],
        epoch_costs=[e.cost for e in epochs],
        train_acc=trial.train_acc,
        val_acc=trial.best_val_acc,
        update_ratios=ratios,
        dead_units=dead,
        num_classes=trial.num_classes,
        # A user trainer's hyperparameters may use these names for other things.
        loss=str(hp.get("loss", DEFAULTS.loss)),
        reg=float(hp["reg"]) if _number(hp.get("reg")) else DEFAULTS.reg,
    )
    return diagnose_run(numbers)


def sweep_summary(session: Session, sweep_id: int) -> list[str]:
    """The sweep's findings in a few sentences, from its trials' rows (no epochs read):
    where explosions start in learning rate, and how many overfit or underfit."""
    rows = session.execute(
        select(Trial.status, Trial.hyperparameters, Trial.train_acc, Trial.best_val_acc).where(
            Trial.sweep_id == sweep_id
        )
    ).all()
    lines = []
    exploded = [hp for status, hp, _, _ in rows if status == TrialStatus.EXPLODED]
    rates = [hp.get("learning_rate") for hp in exploded if _number(hp.get("learning_rate"))]
    if exploded and rates:
        lowest = min(rates)
        above = [
            hp
            for _, hp, _, _ in rows
            if _number(hp.get("learning_rate")) and hp["learning_rate"] >= lowest
        ]
        lines.append(
            f"{len(exploded)} of {len(above)} trials with learning_rate at or above "
            f"{lowest:.3g} exploded: the learning rate is probably too high there"
        )
    elif exploded:
        lines.append(f"{len(exploded)} of {len(rows)} trials exploded")
    finished = [
        (hp, train, val)
        for status, hp, train, val in rows
        if status == TrialStatus.FINISHED and train is not None and val is not None
    ]
    over = [(hp, t, v) for hp, t, v in finished if t - v > OVERFIT_GAP]
    if over:
        lines.append(
            f"{len(over)} of {len(finished)} finished trials overfit (train accuracy more than "
            f"{OVERFIT_GAP:g} above validation){_reg_note(over, finished)}"
        )
    under = [(hp, t, v) for hp, t, v in finished if t - v < NO_GAP and t < UNDERFIT_TRAIN_ACC]
    if under:
        lines.append(
            f"{len(under)} of {len(finished)} finished trials show no train/validation gap at a "
            f"train accuracy below {UNDERFIT_TRAIN_ACC:g}: more capacity may help"
        )
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _reg_note(some: list[tuple[Any, ...]], every: list[tuple[Any, ...]]) -> str:
    """Their median reg against the rest's, when reg was searched."""
    chosen = {id(item) for item in some}
    theirs = [item[0].get("reg") for item in some]
    rest = [item[0].get("reg") for item in every if id(item) not in chosen]
    theirs, rest = [r for r in theirs if _number(r)], [r for r in rest if _number(r)]
    if not theirs or not rest:
        return ""
    return (
        f"; their median reg is {statistics.median(theirs):.3g}, against "
        f"{statistics.median(rest):.3g} for the rest"
    )
