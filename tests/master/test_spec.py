"""Sweep specs: the issue's example is valid; every bad input names its field."""

from __future__ import annotations

from typing import Any

import pytest

from master.spec import SpecError, parse_sweep_spec
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
        (lambda s: s.update(stages=[]), "stages: List should have at least 1 item"),
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
