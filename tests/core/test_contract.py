"""core.contract: a trainer's declared hyperparameters, checked as TrainConfig checks the
built-in net's, and the declaration as workers advertise it."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError
from core.contract import (
    Declaration,
    Hyperparameter,
    TrainerError,
    generator_state,
    set_generator_state,
)
from tests.trainers import ScriptedTrainer, example_trainer


@pytest.mark.parametrize(
    ("declared", "value", "message"),
    [
        (Hyperparameter(100, low=1), 1.5, "width: must be int, got 1.5"),
        (Hyperparameter(100, low=1), True, "width: must be int, got True"),
        (Hyperparameter(100, low=1), 0, "width: must be >= 1, got 0"),
        (Hyperparameter(0.5, high=1.0), 2, "width: must be <= 1, got 2.0"),
        (Hyperparameter(0.5), float("nan"), "width: must be a finite number"),
        (Hyperparameter("adam", choices=("sgd", "adam")), "lbfgs", "must be one of sgd, adam"),
        (Hyperparameter((64, 64), low=1), [64, 0], "width: must be >= 1"),
        (Hyperparameter((64, 64)), [], "width: must be a non-empty list of integers"),
    ],
)
def test_a_bad_value_is_refused_naming_the_hyperparameter(
    declared: Hyperparameter, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        declared.check("width", value)


def test_values_are_taken_as_their_declared_type() -> None:
    assert Hyperparameter(0.1).check("lr", 1) == 1.0
    assert isinstance(Hyperparameter(0.1).check("lr", 1), float)
    assert Hyperparameter((8,)).check("sizes", [16, 32]) == (16, 32)


def test_resolve_fills_in_defaults_and_names_an_unknown_hyperparameter_with_the_known() -> None:
    declaration = Declaration.of("twolayer", example_trainer())
    resolved = declaration.resolve({"hidden_size": 32})
    assert resolved["hidden_size"] == 32 and resolved["update"] == "adam"
    assert set(resolved) == set(declaration.hyperparameters)
    with pytest.raises(ConfigError, match=r"hidden_sizes: unknown hyperparameter of trainer"):
        declaration.resolve({"hidden_sizes": [32]})
    with pytest.raises(ConfigError, match=r"known: batch_size, hidden_size, learning_rate"):
        declaration.resolve({"hidden_sizes": [32]})


def test_a_declaration_travels_as_json_unchanged() -> None:
    declaration = Declaration.of("twolayer", example_trainer())
    assert Declaration.from_json(declaration.to_json()) == declaration
    sizes = Declaration("net", "2", {"sizes": Hyperparameter((8, 8), low=1, help="widths")})
    assert Declaration.from_json(sizes.to_json()) == sizes


def test_a_trainer_may_not_declare_what_the_sweep_sets() -> None:
    class SetsItsOwnEpochs(ScriptedTrainer):
        hyperparameters = {"num_epochs": Hyperparameter(10)}

    with pytest.raises(TrainerError, match="declares num_epochs, which the sweep sets"):
        Declaration.of("greedy", SetsItsOwnEpochs)


def test_a_declaration_of_plain_values_or_a_bad_default_is_refused() -> None:
    class Plain(ScriptedTrainer):
        hyperparameters = {"lr": 0.1}  # type: ignore[dict-item]

    class BadDefault(ScriptedTrainer):
        hyperparameters = {"lr": Hyperparameter(-1.0, low=0.0)}

    with pytest.raises(TrainerError, match="must map names to core.contract.Hyperparameter"):
        Declaration.of("plain", Plain)
    with pytest.raises(TrainerError, match="trainer bad: its default lr: must be >= 0"):
        Declaration.of("bad", BadDefault)


def test_a_generator_state_saved_as_an_array_goes_on_where_it_was() -> None:
    rng = np.random.default_rng(7)
    rng.random(5)
    saved = generator_state(rng)
    expected = rng.random(4)
    other = np.random.default_rng(0)
    set_generator_state(other, saved)
    np.testing.assert_array_equal(other.random(4), expected)
