"""Babysitting in words: what a run's own numbers say, read the way the slides read curves.

    "loss not going down: learning rate too low"; "loss exploding: learning rate too high";
    "big gap between train and validation accuracy: overfitting, increase regularization";
    "no gap: increase model capacity"; and the notes' checks that the initial loss is the
    chance loss and that few units are dead.

`diagnose_run(numbers)` returns the findings, most pressing first; every threshold is a
constant below, in one place. A finding is a hint from the numbers, not a proof: each says
what it saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The notes' rule of thumb for the update:weight ratio, and how far off counts as "well".
RATIO_HEALTHY = 1e-3
RATIO_TOO_HIGH = 1e-2  # 10x over
RATIO_TOO_LOW = 1e-4  # 10x under
# "Loss barely moved": the last epoch's mean cost is at least this share of the first's.
BARELY_MOVED = 0.95
# Train minus validation accuracy, at the best epoch.
OVERFIT_GAP = 0.10
NO_GAP = 0.02
UNDERFIT_TRAIN_ACC = 0.90  # with no gap, a train accuracy below this suggests more capacity
DEAD_SHARE = 0.5  # more of a layer's units than this never fired
# The first cost against the chance loss ln(C) of a softmax: outside [low, high] x ln(C).
INITIAL_LOSS_LOW, INITIAL_LOSS_HIGH = 0.5, 3.0
SMALL_REG = 1e-3  # above it the regularization term may lift the first cost by itself

LR_TOO_HIGH = "learning_rate_too_high"
LR_TOO_LOW = "learning_rate_too_low"
OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
DEAD_UNITS = "dead_units"
INITIAL_LOSS = "initial_loss"
KINDS = (LR_TOO_HIGH, LR_TOO_LOW, INITIAL_LOSS, DEAD_UNITS, OVERFITTING, UNDERFITTING)


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    text: str  # what was seen and what to try, in words


@dataclass(frozen=True)
class RunNumbers:
    """What a diagnosis reads; every part may be missing (a run that just started)."""

    status: str = "finished"  # finished, exploded, ...
    explosion: dict[str, float | None] | None = None  # iteration, cost, initial_cost, ratio
    losses: list[float | None] = field(default_factory=list)  # per iteration
    epoch_costs: list[float | None] = field(default_factory=list)  # mean cost per epoch
    train_acc: float | None = None  # at the best epoch
    val_acc: float | None = None  # the best
    update_ratios: dict[str, list[float | None]] = field(default_factory=dict)  # per epoch
    dead_units: dict[str, float] = field(default_factory=dict)  # per layer, latest epoch
    num_classes: int | None = None
    loss: str = "softmax"
    reg: float = 0.0


def _finite(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def typical_ratio(update_ratios: dict[str, list[float | None]]) -> float | None:
    """The median update:weight ratio of the weight matrices over the run."""
    values = [
        v for name, series in update_ratios.items() if name.startswith("W") for v in _finite(series)
    ]
    return _median(values)


def diagnose_run(run: RunNumbers) -> list[Finding]:
    findings: list[Finding] = []
    ratio = typical_ratio(run.update_ratios)
    non_finite = any(v is None or not math.isfinite(v) for v in run.losses)
    if run.status == "exploded" or non_finite:
        seen = "the cost became NaN or infinite"
        if run.explosion and run.explosion.get("iteration") is not None:
            times = run.explosion.get("ratio")
            seen = f"the cost exploded at iteration {run.explosion['iteration']:g}" + (
                f" ({times:.3g}x the first cost)" if times is not None else " (to inf)"
            )
        findings.append(
            Finding(LR_TOO_HIGH, f"learning rate probably too high: {seen}; try a lower one")
        )
    elif ratio is not None and ratio > RATIO_TOO_HIGH:
        findings.append(
            Finding(
                LR_TOO_HIGH,
                f"learning rate probably too high: the update:weight ratio is {ratio:.2g}, "
                f"well over the healthy {RATIO_HEALTHY:g}",
            )
        )
    costs = _finite(run.epoch_costs)
    if LR_TOO_HIGH not in {f.kind for f in findings} and len(costs) >= 2:
        first, last = costs[0], costs[-1]
        low_ratio = ratio is not None and ratio < RATIO_TOO_LOW
        if first > 0 and last >= BARELY_MOVED * first and (low_ratio or ratio is None):
            said = (
                f", update:weight ratio {ratio:.2g}, well under {RATIO_HEALTHY:g}" if ratio else ""
            )
            findings.append(
                Finding(
                    LR_TOO_LOW,
                    f"learning rate probably too low: the cost barely moved ({first:.4g} in "
                    f"the first epoch, {last:.4g} in the last{said}); try a higher one",
                )
            )
    first_losses = _finite(run.losses[:1])
    if run.loss == "softmax" and run.num_classes and first_losses and run.reg <= SMALL_REG:
        chance = math.log(run.num_classes)
        start = first_losses[0]
        if not INITIAL_LOSS_LOW * chance <= start <= INITIAL_LOSS_HIGH * chance:
            findings.append(
                Finding(
                    INITIAL_LOSS,
                    f"the initial loss {start:.4g} is far from chance, ln({run.num_classes}) = "
                    f"{chance:.4g}: unscaled inputs or a weight scale too large",
                )
            )
    for layer, share in sorted(run.dead_units.items()):
        if share > DEAD_SHARE:
            findings.append(
                Finding(
                    DEAD_UNITS,
                    f"{layer}: {share:.0%} of its ReLUs never fired on the probe (dead units: "
                    f"often a learning rate too high)",
                )
            )
    if run.train_acc is not None and run.val_acc is not None and run.status == "finished":
        gap = run.train_acc - run.val_acc
        if gap > OVERFIT_GAP:
            findings.append(
                Finding(
                    OVERFITTING,
                    f"overfitting: train accuracy {run.train_acc:.3f} against validation "
                    f"{run.val_acc:.3f} (a gap of {gap:.3f}): more regularization (reg, "
                    f"dropout) or more data",
                )
            )
        elif gap < NO_GAP and run.train_acc < UNDERFIT_TRAIN_ACC:
            findings.append(
                Finding(
                    UNDERFITTING,
                    f"no gap between train ({run.train_acc:.3f}) and validation "
                    f"({run.val_acc:.3f}) accuracy at a low level: more capacity (wider or "
                    f"more layers) or less regularization",
                )
            )
    return findings
