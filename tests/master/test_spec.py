"""Sweep specs: the issue's example is valid; every bad input names its field."""

from __future__ import annotations

from typing import Any

import pytest

from master.spec import SpecError, SweepSpec, parse_sweep_spec
from tests.master.factories import example_spec


def problems(spec: Any, max_trials: int = 10_000) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_sweep_spec(spec, max_trials=max_trials)
    return caught.value.problems


def test_the_example_sweep_is_valid() -> None:
    spec = parse_sweep_spec(example_spec())
    assert spec.total_trials == 98
    assert spec.space["learning_rate"].dist == "loguniform"
    assert spec.base_hyperparameters()["update"] == "momentum"  # space overrides it per trial


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda s: s["space"]["learning_rate"].update(low=0),
            "space.learning_rate.low: must be > 0 for a log-scale range, got 0",
        ),
        (
            lambda s: s["space"]["reg"].update(low=10, high=1),
            "space.reg.high: must be > low, got low=10 >= high=1",
        ),
        (lambda s: s["space"]["reg"].update(low=1, high=1), "space.reg.high: must be > low"),
        (lambda s: s["fixed"].update(lr=0.1), "fixed.lr: unknown hyperparameter"),
        (
            lambda s: s["space"].update(lr={"dist": "uniform", "low": 0, "high": 1}),
            "space.lr: unknown hyperparameter",
        ),
        (lambda s: s["model"].update(num_epochs=3), "model.num_epochs: unknown hyperparameter"),
        (lambda s: s.update(stages=[]), "stages: give at least one stage, or a budget"),
        (lambda s: s["fixed"].update(momentum=2), "fixed.momentum: must be in [0, 1), got 2"),
        (lambda s: s["model"].update(hidden_sizes=[]), "model.hidden_sizes: must be a non-empty"),
        (
            lambda s: s["space"]["dropout"].update(high=1.5),
            "space.dropout.high: must be in [0, 1), got 1.5",
        ),
        (
            lambda s: s["space"]["update"].update(values=["sgd", "lbfgs"]),
            "space.update.values.1: must be one of",
        ),
        (lambda s: s["space"]["update"].update(values=[]), "space.update.values: List should"),
        (
            lambda s: s["space"]["learning_rate"].update(dist="gauss"),
            "space.learning_rate: Input tag 'gauss'",
        ),
        (lambda s: s.update(dataset="mnist"), "dataset: must be 'digits', 'npz:PATH'"),
        (
            lambda s: s["stages"][1].update(keep_top=100),
            "stages.1.keep_top: 100 is more than the 60 trials of stage 0",
        ),
        (lambda s: s["stages"][0].update(keep_top=3), "stages.0.keep_top: the first stage"),
        (lambda s: s["stages"][0].update(promote=3), "stages.0.promote: the first stage"),
        (
            lambda s: s["stages"][1].update(promote=31),
            "stages.1.promote: 31 is more than the stage's 30 trials",
        ),
        (
            lambda s: s["stages"][2].update(trials=40, promote=31),
            "stages.2.promote: 31 is more than the 30 trials of stage 1",
        ),
        (
            lambda s: s["stages"][1].update(promote=3, epochs=1),
            "stages.1.epochs: 1 must be more than the 1 of stage 0 to train its trials on",
        ),
        (
            lambda s: (s["stages"][0].update(epochs=0.5), s["stages"][1].update(promote=3)),
            "stages.1.promote: stage 0 trains 0.5 epochs, but trials can be trained on only",
        ),
        (
            lambda s: s.update(budget={"epochs": 100, "max_epochs": 20}),
            "budget: give either stages or a budget, not both",
        ),
        (
            lambda s: s.update(stages=[], budget={"epochs": 100, "max_epochs": 200}),
            "budget.max_epochs: 200 is more than the budget of 100 epochs",
        ),
        (
            lambda s: s.update(stages=[], budget={"epochs": -5, "max_epochs": 2}),
            "budget.epochs: Input should be greater than 0",
        ),
        (
            lambda s: s.update(
                stages=[], budget={"epochs": 50, "max_epochs": 10, "min_epochs": 11}
            ),
            "budget.min_epochs: 11 is more than max_epochs 10",
        ),
        (lambda s: s.update(sampler="grid"), "sampler: Input should be 'random' or 'sobol'"),
        (lambda s: s["stages"][0].update(trials=0), "stages.0.trials: Input should be greater"),
        (lambda s: s["stages"][0].update(epochs=0), "stages.0.epochs: Input should be greater"),
        (lambda s: s.update(explode_factor=0.5), "explode_factor: Input should be greater than 1"),
        (lambda s: s.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (
            lambda s: s["space"].update(batch_size={"dist": "int", "low": 1.5, "high": 10}),
            "space.batch_size.low: Input should be a valid integer",
        ),
        (
            lambda s: s["space"].update(batch_size={"dist": "int", "low": 0, "high": 10}),
            "space.batch_size.low: must be an integer > 0, got 0",
        ),
    ],
)
def test_bad_specs_name_the_field(edit: Any, expected: str) -> None:
    spec = example_spec()
    edit(spec)
    found = problems(spec)
    assert any(p.startswith(expected) for p in found), found


def test_a_stage_after_a_rung_of_two_may_keep_and_promote_from_both() -> None:
    rung_of_two = [
        {"trials": 10, "epochs": 2},
        {"trials": 10, "epochs": 2, "keep_top": 2},
        {"trials": 15, "epochs": 6, "keep_top": 20, "promote": 15},
    ]
    assert parse_sweep_spec(example_spec(stages=rung_of_two)).stages[2].promote == 15
    rung_of_two[2].update(trials=25, keep_top=21, promote=21)
    assert problems(example_spec(stages=rung_of_two)) == [
        "stages.2.keep_top: 21 is more than the 20 trials of stages 0-1",
        "stages.2.promote: 21 is more than the 20 trials of stages 0-1",
    ]


def test_a_bad_base_is_reported_once_not_for_every_range() -> None:
    spec = example_spec()
    spec["fixed"]["momentum"] = 2
    assert problems(spec) == ["fixed.momentum: must be in [0, 1), got 2"]


def test_the_maximum_of_trials_is_configurable() -> None:
    assert problems(example_spec(), max_trials=50) == [
        "stages: 98 trials in all, more than the maximum of 50"
    ]
    assert parse_sweep_spec(example_spec(), max_trials=98).total_trials == 98


def test_not_an_object_at_all() -> None:
    assert problems([1, 2]) == ["body: Input should be a valid dictionary or instance of SweepSpec"]


def test_a_budget_lays_out_stages_that_spend_it_and_reach_max_epochs() -> None:
    spec = example_spec()
    del spec["stages"]
    spec["budget"] = {"epochs": 800, "max_epochs": 80}
    parsed = parse_sweep_spec(spec)
    stages = parsed.stages
    assert [s.epochs for s in stages] == [3, 3, 3, 9, 27, 80]
    assert not any(s.promote for s in stages[:3]) and all(s.promote for s in stages[3:])
    planned, previous = 0.0, 0.0
    for stage in stages:
        planned += stage.promote * (stage.epochs - previous)
        planned += (stage.trials - stage.promote) * stage.epochs
        previous = stage.epochs
    assert 0.95 * 800 <= planned <= 800
    # Stored and read back, the laid-out stages are the sweep's, budget and all.
    stored = SweepSpec.stored(parsed.model_dump(mode="json"))
    assert stored.stages == stages and stored.budget == parsed.budget
