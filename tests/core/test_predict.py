"""A checkpoint predicts on raw inputs exactly as its model did on the preprocessed splits;
ensembles average probabilities; old checkpoints say how to recover what they lack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import CheckpointError, save_checkpoint
from core.config import TrainConfig
from core.data import Dataset, load_dataset
from core.model import FullyConnectedNet
from core.predict import Ensemble, load_ensemble, load_model, read_inputs, softmax
from core.preprocessing import InputError
from core.state import TrainState
from core.trainer import build_model, train
from tests.core.factories import as_format_2
from tests.core.test_data import write_cifar


def trained(
    data: Dataset, seed: int = 0, epochs: float = 2
) -> tuple[FullyConnectedNet, TrainState]:
    config = TrainConfig(num_epochs=epochs, hidden_sizes=(30,), seed=seed, learning_rate=3e-3)
    model = build_model(config, data)
    return model, train(model, data, config)


def saved(path: Path, data: Dataset, seed: int = 0) -> tuple[Path, FullyConnectedNet]:
    model, state = trained(data, seed)
    save_checkpoint(path, model, state, preprocessing=data.preprocessing)
    return path, model


def raw_digits(X: np.ndarray, data: Dataset) -> np.ndarray:
    """The raw 0-16 pixel values a preprocessed digits split came from (they are integers)."""
    return np.round((X.astype(np.float64) + data.mean_image) * 16)


@pytest.fixture(scope="module")
def digits32() -> Dataset:
    return load_dataset("digits")  # float32, as trials train


def test_predict_on_raw_digits_equals_the_models_own_predictions(
    digits32: Dataset, tmp_path: Path
) -> None:
    path, model = saved(tmp_path / "m.npz", digits32)
    loaded = load_model(path)
    assert digits32.X_test is not None
    for X in (digits32.X_val, digits32.X_test):
        raw = raw_digits(X, digits32)
        np.testing.assert_array_equal(loaded.inputs(raw), X)  # the same preprocessing, bit for bit
        np.testing.assert_array_equal(loaded.predict(raw), model.predict(X))
        np.testing.assert_array_equal(loaded.probabilities(raw), softmax(model.scores(X)))
    # Images as (N, 8, 8) are taken as well as flat rows.
    raw = raw_digits(digits32.X_val, digits32)
    np.testing.assert_array_equal(
        loaded.predict(raw.reshape(-1, 8, 8)), model.predict(digits32.X_val)
    )
    assert loaded.probabilities(raw).shape == (300, 10)


def test_predict_on_a_raw_cifar10_test_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar", per_batch=20)
    data = load_dataset(f"cifar10:{tmp_path / 'cifar'}", num_val=10)
    path, model = saved(tmp_path / "m.npz", data)
    raw = read_inputs(tmp_path / "cifar")  # the folder: its test_batch, uint8 pixels
    assert raw.dtype == np.uint8 and raw.shape == (20, 3072)
    assert data.X_test is not None
    np.testing.assert_array_equal(load_model(path).predict(raw), model.predict(data.X_test))
    one_batch = read_inputs(tmp_path / "cifar" / "data_batch_1")
    assert one_batch.shape == (20, 3072)


def test_an_ensemble_averages_its_members_probabilities(digits32: Dataset, tmp_path: Path) -> None:
    paths = [saved(tmp_path / f"m{seed}.npz", digits32, seed)[0] for seed in range(3)]
    ensemble = load_ensemble(paths)
    raw = raw_digits(digits32.X_val, digits32)
    members = [load_model(p).probabilities(raw) for p in paths]
    np.testing.assert_allclose(ensemble.probabilities(raw), np.mean(members, axis=0))
    np.testing.assert_array_equal(ensemble.predict(raw), np.argmax(np.mean(members, axis=0), 1))
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble(())


def test_the_running_average_predicts_with_weights_average(
    digits32: Dataset, tmp_path: Path
) -> None:
    model, state = trained(digits32)
    path = save_checkpoint(tmp_path / "m.npz", model, state, preprocessing=digits32.preprocessing)
    assert state.average_flat is not None
    average = load_model(path, weights="average")
    raw = raw_digits(digits32.X_val, digits32)
    expected = model.predict(digits32.X_val, model.views(state.average_flat))
    np.testing.assert_array_equal(average.predict(raw), expected)
    with pytest.raises(ValueError, match="weights: must be one of epoch, average"):
        load_model(path, weights="best")
    state.average_flat = None
    save_checkpoint(path, model, state, preprocessing=digits32.preprocessing)
    with pytest.raises(CheckpointError, match="holds no running average"):
        load_model(path, weights="average")


def test_an_old_checkpoint_names_what_it_lacks_and_recovers_from_its_dataset(
    digits32: Dataset, tmp_path: Path
) -> None:
    path, model = saved(tmp_path / "m.npz", digits32)
    old = as_format_2(path, extra={"trial": {"dataset": "digits"}})
    with pytest.raises(
        CheckpointError,
        match=r"old.npz: a format 2 checkpoint does not hold the "
        r"preprocessing .* \(it records 'digits'\)",
    ):
        load_model(old)
    recovered = load_model(old, dataset="digits")
    raw = raw_digits(digits32.X_val, digits32)
    np.testing.assert_array_equal(recovered.predict(raw), model.predict(digits32.X_val))
    with pytest.raises(CheckpointError, match="cannot recover its preprocessing: .*no such file"):
        load_model(old, dataset=f"npz:{tmp_path / 'gone.npz'}")


def test_inputs_a_model_cannot_take_are_named(digits32: Dataset, tmp_path: Path) -> None:
    path, _ = saved(tmp_path / "m.npz", digits32)
    model = load_model(path)
    with pytest.raises(
        InputError, match=r"inputs have shape \(4, 63\), expected \(N, 8, 8\) or \(N, 64\)"
    ):
        model.predict(np.zeros((4, 63)))
    with pytest.raises(InputError, match="inputs have shape"):
        model.predict(np.zeros(64))
    with pytest.raises(InputError, match="dtype <U1"):
        model.predict(np.array([["a"] * 64]))


def test_read_inputs_finds_the_array_or_says_which_it_needs(tmp_path: Path) -> None:
    X = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(read_inputs(tmp_path / "x.npy"), X)
    np.savez(tmp_path / "one.npz", images=X)
    np.testing.assert_array_equal(read_inputs(tmp_path / "one.npz"), X)
    np.savez(tmp_path / "split.npz", X_test=X, y_test=np.arange(3))
    np.testing.assert_array_equal(read_inputs(tmp_path / "split.npz"), X)
    np.savez(tmp_path / "two.npz", a=X, b=X)
    with pytest.raises(InputError, match="which array are the inputs.*the file has a, b"):
        read_inputs(tmp_path / "two.npz")
    with pytest.raises(InputError, match="missing.npz: no such file"):
        read_inputs(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(InputError, match="junk.npz: not a readable array file"):
        read_inputs(tmp_path / "junk.npz")
    (tmp_path / "junk.bin").write_text("junk")
    with pytest.raises(InputError, match="junk.bin: not inputs hpsearch reads"):
        read_inputs(tmp_path / "junk.bin")
