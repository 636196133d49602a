"""Babysitting in words, on crafted runs: each of the slides' readings, and none on a
healthy run."""

from __future__ import annotations

import math

from core.babysitting import (
    DEAD_UNITS,
    INITIAL_LOSS,
    LR_TOO_HIGH,
    LR_TOO_LOW,
    OVERFITTING,
    UNDERFITTING,
    RunNumbers,
    diagnose_run,
)

HEALTHY = RunNumbers(
    losses=[2.31, 1.2],
    epoch_costs=[1.5, 0.6, 0.3],
    train_acc=0.97,
    val_acc=0.95,
    update_ratios={"W1": [1e-3, 8e-4, 9e-4], "b1": [1e-2, 1e-2, 1e-2]},
    num_classes=10,
)


def kinds(run: RunNumbers) -> list[str]:
    return [f.kind for f in diagnose_run(run)]


def change(**fields: object) -> RunNumbers:
    return RunNumbers(**{**vars(HEALTHY), **fields})


def test_a_healthy_run_has_nothing_to_say() -> None:
    assert diagnose_run(HEALTHY) == []


def test_an_exploded_run_says_the_learning_rate_is_probably_too_high() -> None:
    run = change(status="exploded", explosion={"iteration": 17, "cost": 40.0, "ratio": 17.4})
    (finding,) = diagnose_run(run)
    assert finding.kind == LR_TOO_HIGH
    assert "exploded at iteration 17 (17.4x the first cost)" in finding.text
    assert kinds(change(losses=[2.3, math.nan])) == [LR_TOO_HIGH]  # NaN without the kill
    assert kinds(change(update_ratios={"W1": [0.05, 0.04]})) == [LR_TOO_HIGH]


def test_a_cost_that_barely_moves_with_tiny_updates_says_too_low() -> None:
    run = change(
        epoch_costs=[2.302, 2.300, 2.299],
        update_ratios={"W1": [2e-5, 3e-5]},
        train_acc=0.2,
        val_acc=0.19,
    )
    found = diagnose_run(run)
    assert found[0].kind == LR_TOO_LOW
    assert "barely moved (2.302 in the first epoch, 2.299 in the last" in found[0].text
    assert "well under 0.001" in found[0].text
    # The same flat cost with healthy ratios is not blamed on the learning rate.
    assert LR_TOO_LOW not in kinds(change(epoch_costs=[2.3, 2.3], train_acc=0.2, val_acc=0.19))


def test_gaps_say_overfitting_or_more_capacity() -> None:
    over = diagnose_run(change(train_acc=0.99, val_acc=0.80))
    assert [f.kind for f in over] == [OVERFITTING]
    assert "a gap of 0.190" in over[0].text and "more regularization" in over[0].text
    under = diagnose_run(change(train_acc=0.61, val_acc=0.60))
    assert [f.kind for f in under] == [UNDERFITTING] and "more capacity" in under[0].text
    assert kinds(change(train_acc=0.99, val_acc=0.985)) == []  # no gap, but high: fine


def test_dead_units_and_an_initial_loss_far_from_chance() -> None:
    assert kinds(change(dead_units={"layer1": 0.2, "layer2": 0.8})) == [DEAD_UNITS]
    found = diagnose_run(change(losses=[45.0]))
    assert [f.kind for f in found] == [INITIAL_LOSS]
    assert "initial loss 45 is far from chance, ln(10) = 2.303" in found[0].text
    # A strong reg lifts the first cost by itself: not judged then; nor an SVM's.
    assert kinds(change(losses=[45.0], reg=0.5)) == []
    assert kinds(change(losses=[45.0], loss="svm")) == []
