"""core.run and core.run_checkpoint: the loop around a user's trainer kills, resumes and
continues its runs as core.trainer does the built-in net's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import CheckpointError, load_checkpoint, read_summary, write_checkpoint
from core.contract import Declaration, TrainerError
from core.data import Dataset, load_dataset
from core.run import RunState, continue_run, new_run, problem_of, run
from core.run_checkpoint import build_trainer, load_run_checkpoint, run_checkpoint_arrays
from core.state import TrainStatus
from core.trainer import ContinuationError
from tests.trainers import (
    NOT_FINITE,
    FailingSetupTrainer,
    ForgetfulTrainer,
    PickledStateTrainer,
    ScriptedTrainer,
    TextCostTrainer,
    WrongShapeTrainer,
    example_trainer,
    explodes_at_iteration_1,
    needs_torch,
)

HYPERPARAMETERS = {"learning_rate": 3e-3, "hidden_size": 32, "reg": 1e-4}
# The contract suite: every example trainer resumes and continues exactly (one suite over
# every implementation, as Optuna's tests run over every sampler).
EXAMPLES = pytest.mark.parametrize(
    ("example", "values"),
    [
        ("twolayer", HYPERPARAMETERS),
        pytest.param("digits-cnn", {"learning_rate": 3e-3, "channels": 4}, marks=needs_torch),
    ],
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def start(
    cls: Any, data: Dataset, values: dict[str, Any], epochs: float = 4
) -> tuple[Any, RunState]:
    name = cls.__name__.lower()
    hyperparameters = Declaration.of(name, cls).resolve(values)
    trainer = build_trainer(cls, name, hyperparameters, problem_of(data), 5)
    state = new_run(
        name, "1", hyperparameters, trainer, len(data.X_train),
        seed=5, num_epochs=epochs, explode_factor=3.0,
    )  # fmt: skip
    return trainer, state


def save_and_load(path: Path, trainer: Any, state: RunState, data: Dataset) -> tuple[Any, RunState]:
    arrays = run_checkpoint_arrays(trainer, state, problem_of(data), {}, data.preprocessing)
    write_checkpoint(path, arrays, durable=False)
    loaded = load_run_checkpoint(path, {state.trainer: type(trainer)})
    return loaded.trainer, loaded.state


@EXAMPLES
def test_a_run_resumed_mid_epoch_from_its_checkpoint_ends_as_the_uninterrupted_one(
    digits: Dataset, tmp_path: Path, example: str, values: dict[str, Any]
) -> None:
    cls = example_trainer(example)
    trainer, straight = start(cls, digits, values)
    straight = run(trainer, digits, straight)
    polls = iter(range(10**6))
    interrupted, state = start(cls, digits, values)
    state = run(interrupted, digits, state, should_stop=lambda: next(polls) == 25)
    assert state.status is TrainStatus.STOPPED
    assert state.iteration % state.iterations_per_epoch, "stopped at an epoch's end"
    resumed, state = save_and_load(tmp_path / "mid.npz", interrupted, state, digits)
    state.status = TrainStatus.RUNNING  # as the worker resumes a shut-down trial
    state = run(resumed, digits, state)
    assert state.status is TrainStatus.FINISHED
    assert state.history.loss == straight.history.loss
    assert state.history.val_acc == straight.history.val_acc
    for key, array in trainer.state().items():
        np.testing.assert_array_equal(resumed.state()[key], array, err_msg=key)


@EXAMPLES
def test_a_promoted_run_goes_on_from_its_checkpoint_as_if_trained_that_long(
    digits: Dataset, tmp_path: Path, example: str, values: dict[str, Any]
) -> None:
    cls = example_trainer(example)
    trainer, longer = start(cls, digits, values, epochs=5)
    longer = run(trainer, digits, longer)
    parent, state = start(cls, digits, values, epochs=2)
    state = run(parent, digits, state)
    child, state = save_and_load(tmp_path / "parent.npz", parent, state, digits)
    state = run(child, digits, continue_run(state, "1", state.hyperparameters, 5, 5))
    assert state.history.epoch == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert state.history.val_acc == longer.history.val_acc
    assert state.history.loss == longer.history.loss


def test_a_run_goes_on_only_with_its_own_hyperparameters_seed_and_trainer_version(
    digits: Dataset,
) -> None:
    cls = example_trainer()
    trainer, state = start(cls, digits, HYPERPARAMETERS, epochs=1)
    state = run(trainer, digits, state)
    other = {**state.hyperparameters, "reg": 0.5}
    with pytest.raises(ContinuationError, match="other hyperparameters"):
        continue_run(state, "1", other, 5, 3)
    with pytest.raises(ContinuationError, match="other hyperparameters"):
        continue_run(state, "1", state.hyperparameters, 6, 3)
    with pytest.raises(ContinuationError, match="of version 1 of trainer .*, this is version 2"):
        continue_run(state, "2", state.hyperparameters, 5, 3)
    assert continue_run(state, "1", state.hyperparameters, 5, 3).total_iterations == 33


def test_a_cost_over_3x_the_first_explodes_the_run_at_iteration_1(digits: Dataset) -> None:
    trainer, state = start(ScriptedTrainer, digits, {"costs": explodes_at_iteration_1()})
    state = run(trainer, digits, state)
    assert state.status is TrainStatus.EXPLODED
    assert state.explosion is not None and state.explosion.iteration == 1
    assert state.explosion.ratio > 3 and state.history.epoch == []


def test_a_cost_that_is_not_finite_explodes_the_run(digits: Dataset) -> None:
    trainer, state = start(ScriptedTrainer, digits, {"costs": NOT_FINITE})
    state = run(trainer, digits, state)
    assert state.status is TrainStatus.EXPLODED
    assert state.explosion is not None and math.isnan(state.explosion.cost)


def test_a_cost_that_is_no_number_fails_naming_the_trainer(digits: Dataset) -> None:
    trainer, state = start(TextCostTrainer, digits, {})
    with pytest.raises(
        TrainerError, match="trainer textcosttrainer: train_step returned str 'low'"
    ):
        run(trainer, digits, state)


def test_probabilities_of_the_wrong_shape_fail_naming_the_trainer(digits: Dataset) -> None:
    trainer, state = start(WrongShapeTrainer, digits, {})
    with pytest.raises(TrainerError, match=r"probabilities returned shape \(\d+, 11\) for"):
        run(trainer, digits, state)


def test_a_setup_that_raises_fails_naming_the_trainer(digits: Dataset) -> None:
    with pytest.raises(TrainerError, match="trainer failingsetuptrainer: setup raised "
                       "RuntimeError: no GPU found"):  # fmt: skip
        start(FailingSetupTrainer, digits, {})


def test_a_state_that_does_not_round_trip_fails_loading_naming_the_trainer(
    digits: Dataset, tmp_path: Path
) -> None:
    trainer, state = start(ForgetfulTrainer, digits, {}, epochs=1)
    state = run(trainer, digits, state)
    with pytest.raises(TrainerError, match="trainer forgetfultrainer: load_state raised KeyError"):
        save_and_load(tmp_path / "forgetful.npz", trainer, state, digits)


def test_a_state_of_objects_is_refused_not_pickled(digits: Dataset) -> None:
    trainer, state = start(PickledStateTrainer, digits, {}, epochs=1)
    with pytest.raises(TrainerError, match=r"state\(\)\['model'\] has dtype object"):
        run_checkpoint_arrays(trainer, state, problem_of(digits))


def test_a_checkpoint_names_its_trainer_and_loads_only_where_it_is_installed(
    digits: Dataset, tmp_path: Path
) -> None:
    cls = example_trainer()
    trainer, state = start(cls, digits, HYPERPARAMETERS, epochs=1)
    state = run(trainer, digits, state)
    path = tmp_path / "val0.9000_trial000001_ep001.npz"
    arrays = run_checkpoint_arrays(trainer, state, problem_of(digits), {"trial": {}}, None)
    write_checkpoint(path, arrays, durable=False)
    summary = read_summary(path)
    assert summary["trainer"] == {"name": "twolayertrainer", "version": "1"}
    assert summary["state"]["history"]["val_acc"] == state.history.val_acc
    with pytest.raises(CheckpointError, match="trainer 'twolayertrainer', which is not installed"):
        load_run_checkpoint(path, {})
    with pytest.raises(CheckpointError, match="written by trainer 'twolayertrainer', not the"):
        load_checkpoint(path)


def test_the_learning_rate_reported_is_the_one_the_epoch_trained_with(digits: Dataset) -> None:
    cls = example_trainer()
    trainer, state = start(cls, digits, {**HYPERPARAMETERS, "lr_decay": 0.5}, epochs=2)
    state = run(trainer, digits, state)
    assert state.history.lr == [3e-3, 1.5e-3]
    assert all(math.isnan(a) for a in state.history.average_val_acc)  # none kept: NaN


@EXAMPLES
def test_an_example_learns_digits_and_gives_probabilities(
    digits: Dataset, example: str, values: dict[str, Any]
) -> None:
    values = {**values, "learning_rate": 1e-2}
    trainer, state = start(example_trainer(example), digits, values, epochs=6)
    state = run(trainer, digits, state)
    assert state.status is TrainStatus.FINISHED and state.history.val_acc[-1] > 0.85
    probabilities = trainer.probabilities(digits.X_val)
    assert probabilities.shape == (len(digits.X_val), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_update_ratios_reported_by_some_epochs_keep_one_value_per_epoch(digits: Dataset) -> None:
    class SometimesReports(ScriptedTrainer):
        def update_ratios(self) -> dict[str, float]:
            # W1 for the first epochs, then only W2: NaN where a series has no value.
            return {"W1": 1e-3} if self.steps < 50 else {"W2": 2e-3}

    trainer, state = start(SometimesReports, digits, {}, epochs=3)
    state = run(trainer, digits, state)
    ratios = state.history.update_ratio  # 23 steps an epoch: W2 from the third on
    assert ratios["W1"][:2] == [1e-3, 1e-3] and math.isnan(ratios["W1"][2])
    assert all(math.isnan(v) for v in ratios["W2"][:2]) and ratios["W2"][2] == 2e-3
    assert all(len(series) == 3 for series in ratios.values())


def test_first_layer_weights_of_the_wrong_shape_are_an_error_naming_the_trainer(
    digits: Dataset,
) -> None:
    class FlatWeights(ScriptedTrainer):
        def first_layer_weights(self) -> np.ndarray:
            return np.zeros(64)

    trainer, state = start(FlatWeights, digits, {}, epochs=1)
    with pytest.raises(TrainerError, match=r"first_layer_weights returned float64 \(64,\), not"):
        run_checkpoint_arrays(trainer, state, problem_of(digits))


def test_hidden_activations_of_the_wrong_shape_are_an_error_naming_the_trainer(
    digits: Dataset,
) -> None:
    class OneRowShort(ScriptedTrainer):
        def hidden_activations(self, X: np.ndarray) -> list[np.ndarray]:
            return [np.ones((len(X) - 1, 8))]

    trainer, state = start(OneRowShort, digits, {}, epochs=1)
    with pytest.raises(TrainerError, match=r"hidden_activations returned layer 1 as float64 "):
        run(trainer, digits, state)
