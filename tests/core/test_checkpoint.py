"""Checkpoint names sort by accuracy; files round-trip exactly and are written atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import checkpoint as ckpt
from core.checkpoint import (
    CheckpointError,
    checkpoint_name,
    load_checkpoint,
    parse_checkpoint_name,
    read_summary,
    save_checkpoint,
)
from core.config import TrainConfig
from core.data import Dataset
from core.model import FullyConnectedNet
from core.state import TrainState
from core.trainer import build_model, train
from tests.core.factories import as_format_2, as_older_format, history_in_json


def small_run(digits: Dataset, num_epochs: int) -> tuple[FullyConnectedNet, TrainState]:
    """A one-hidden-layer net trained on digits for `num_epochs`, and its state."""
    config = TrainConfig(num_epochs=num_epochs, hidden_sizes=(20,))
    model = build_model(config, digits)
    return model, train(model, digits, config)


def test_name_format_and_parse_round_trip() -> None:
    assert checkpoint_name(0.954, 42, 5) == "val0.9540_trial000042_ep005.npz"
    assert checkpoint_name(1.0, 3, 0.5) == "val1.0000_trial000003_ep000.50.npz"
    parsed = parse_checkpoint_name("/some/dir/val0.5310_trial1234567_ep120.npz")
    assert parsed == ckpt.CheckpointName(0.531, 1234567, 120.0)
    assert parse_checkpoint_name(checkpoint_name(0.25, 7, 12.75)).epoch == 12.75


def test_names_sort_by_validation_accuracy() -> None:
    rng = np.random.default_rng(0)
    runs = [
        (float(acc), int(trial), int(epoch))
        for acc, trial, epoch in zip(
            rng.random(200), rng.integers(0, 10**6, 200), rng.integers(0, 500, 200), strict=True
        )
    ]
    runs += [(1.0, 5, 1), (0.0, 999999, 999), (0.0999, 1, 1), (0.1, 1, 1)]
    names = [checkpoint_name(*run) for run in runs]
    by_name = [parse_checkpoint_name(n).val_acc for n in sorted(names, reverse=True)]
    assert by_name == sorted(by_name, reverse=True)
    assert by_name[0] == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        "model.npz",
        "val0.95_trial000001_ep001.npz",
        "val0.9500_trial1_ep001.npz",
        "val0.9500_trial000001_ep001.npy",
        ".val0.9500_trial000001_ep001.npz.x1.tmp",
    ],
)
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint name"):
        parse_checkpoint_name(bad)


def test_name_rejects_impossible_values() -> None:
    with pytest.raises(CheckpointError, match="val_acc"):
        checkpoint_name(1.5, 1, 1)


def adam_run(digits: Dataset, epochs: int) -> tuple[TrainConfig, FullyConnectedNet, TrainState]:
    """A small Adam run of `epochs` on digits: its config, model and state."""
    config = TrainConfig(
        num_epochs=epochs, update="adam", learning_rate=3e-3, hidden_sizes=(30, 20)
    )
    model = build_model(config, digits)
    return config, model, train(model, digits, config)


def test_round_trip_predicts_identically_and_keeps_everything(
    digits: Dataset, tmp_path: Path
) -> None:
    config, model, state = adam_run(digits, epochs=2)
    path = save_checkpoint(tmp_path / "a" / "ck.npz", model, state, {"trial_id": 7})
    loaded = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.model.predict(digits.X_val), model.predict(digits.X_val))
    np.testing.assert_array_equal(loaded.model.scores(digits.X_val), model.scores(digits.X_val))
    assert loaded.model.params["W1"].dtype == np.float32
    assert loaded.state.config == config
    assert loaded.state.history == state.history
    assert loaded.state.status is state.status
    assert loaded.state.rng_state == state.rng_state
    assert loaded.state.optim_config["t"] == state.optim_config["t"] == state.iteration
    np.testing.assert_array_equal(loaded.state.optim_config["m"], state.optim_config["m"])
    assert loaded.state.best_flat is not None and state.best_flat is not None
    np.testing.assert_array_equal(loaded.state.best_flat, state.best_flat)
    assert loaded.state.average_flat is not None and state.average_flat is not None
    np.testing.assert_array_equal(loaded.state.average_flat, state.average_flat)
    assert loaded.extra == {"trial_id": 7}


def test_the_best_copy_is_stored_only_where_it_differs_from_the_parameters(
    digits: Dataset, tmp_path: Path
) -> None:
    _, model, state = adam_run(digits, epochs=3)
    for earlier in (False, True):
        # The best epoch is this one (its copy is the parameters), or an earlier one.
        state.best_flat = model.flat + np.float32(0.5) if earlier else model.flat.copy()
        path = save_checkpoint(tmp_path / f"ck{earlier}.npz", model, state)
        with zipfile.ZipFile(path) as archive:
            assert ("best.npy" in archive.namelist()) is earlier
        loaded = load_checkpoint(path)
        assert loaded.state.best_flat is not None
        np.testing.assert_array_equal(loaded.state.best_flat, state.best_flat)


def test_a_crash_while_writing_leaves_no_file(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(num_epochs=1)
    model = build_model(config, digits)
    state = train(model, digits, config)
    final = tmp_path / checkpoint_name(0.5, 1, 1)
    save_checkpoint(final, model, state)
    good = final.read_bytes()

    def half_written(file, arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "write_npz", half_written)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(final, model, state)
    assert final.read_bytes() == good  # the previous complete file is untouched
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / checkpoint_name(0.6, 1, 2), model, state)
    assert sorted(os.listdir(tmp_path)) == [final.name]  # no partial or temporary files


def test_loading_bad_files_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="garbage.npz: not a readable checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, W1=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an hpsearch checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.npz"
    with zipfile.ZipFile(truncated, "w") as zf:
        zf.writestr("meta.json.npy", b"\x93NUMPY broken")
    with pytest.raises(CheckpointError, match="truncated.npz"):
        load_checkpoint(truncated)


def test_every_kind_of_damage_is_a_checkpoint_error_naming_the_file(
    digits: Dataset, tmp_path: Path
) -> None:
    good = save_checkpoint(tmp_path / "good.npz", *small_run(digits, 1))
    data = good.read_bytes()
    damaged = {"empty": b"", "only its first byte": data[:1]}
    damaged |= {f"cut at {n}/8": data[: len(data) * n // 8] for n in range(1, 8)}
    for offset in np.linspace(0, len(data) - 1, 40).astype(int):  # one bit flipped
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        damaged[f"bit flipped at byte {offset}"] = bytes(flipped)
    refused = 0
    for what, content in damaged.items():
        path = tmp_path / "bad.npz"
        path.write_bytes(content)
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as exc:
            assert "bad.npz" in str(exc), what
            refused += 1
            continue
        # A flip in bytes nothing reads (zip padding, a header field) may leave it usable.
        assert loaded.state.history == load_checkpoint(good).state.history, what
    assert refused >= len(damaged) - 10  # nearly every flip is caught (by zip's CRC)


def test_a_format_1_checkpoint_with_its_costs_in_the_json_still_loads(
    digits: Dataset, tmp_path: Path
) -> None:
    model, state = small_run(digits, 2)
    path = save_checkpoint(tmp_path / "new.npz", model, state)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert arrays[ckpt.LOSS_KEY].tolist() == state.history.loss
    # The same checkpoint as format 1 wrote it: the costs in the JSON, no array.
    meta = json.loads(arrays.pop(ckpt.META_KEY).tobytes())
    history_in_json(arrays, meta)
    meta["format"] = 1
    meta["state"]["history"]["loss"] = arrays.pop(ckpt.LOSS_KEY).tolist()
    arrays[ckpt.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    loaded = load_checkpoint(old)
    assert loaded.state.history == state.history
    np.testing.assert_array_equal(loaded.model.flat, model.flat)
    meta["format"] = 5
    arrays[ckpt.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(old, **arrays)
    with pytest.raises(CheckpointError, match="format 5 is not one this version reads"):
        load_checkpoint(old)


def test_the_preprocessing_round_trips_and_format_3_and_2_files_load(
    digits: Dataset, tmp_path: Path
) -> None:
    model, state = small_run(digits, 1)
    path = save_checkpoint(tmp_path / "new.npz", model, state, preprocessing=digits.preprocessing)
    loaded = load_checkpoint(path)
    assert loaded.format == 4 and loaded.preprocessing is not None
    assert loaded.preprocessing.divide_by == 16.0 and loaded.preprocessing.input_shape == (8, 8)
    np.testing.assert_array_equal(loaded.preprocessing.mean, digits.mean_image)
    old = as_older_format(path, 3)  # the per-epoch history in the JSON
    loaded = load_checkpoint(old)
    assert loaded.format == 3 and loaded.preprocessing is not None
    assert loaded.state.history == state.history
    assert read_summary(old)["state"]["history"] == state.history.to_dict()
    old = as_format_2(path)  # nor a preprocessing entry or a mean array
    loaded = load_checkpoint(old)
    assert loaded.format == 2 and loaded.preprocessing is None
    assert loaded.state.history == state.history
    np.testing.assert_array_equal(loaded.model.flat, model.flat)


def test_the_history_is_an_array_so_the_json_does_not_grow_with_the_epochs(
    digits: Dataset, tmp_path: Path
) -> None:
    sizes = {}
    for epochs in (2, 8):
        model, state = small_run(digits, epochs)
        path = save_checkpoint(tmp_path / f"ep{epochs}.npz", model, state)
        with np.load(path) as archive:
            sizes[epochs] = archive[ckpt.META_KEY].size
        assert load_checkpoint(path).state.history == state.history
        assert read_summary(path)["state"]["history"] == state.history.to_dict()
    assert abs(sizes[8] - sizes[2]) < 16  # a digit or two of the layout's shapes


def test_a_ragged_history_series_or_one_with_a_none_is_kept_in_the_json(
    digits: Dataset, tmp_path: Path
) -> None:
    model, state = small_run(digits, 2)
    state.history.activations["h1"] = [[0.5, 0.5], [1.0]]  # rows of two lengths
    state.history.grad_norm["W1"] = [None, 2.0]  # type: ignore[list-item]  # NaN in an array
    path = save_checkpoint(tmp_path / "ragged.npz", model, state)
    meta = read_summary(path)
    assert meta["state"]["history"]["activations"]["h1"] == [[0.5, 0.5], [1.0]]
    assert meta["state"]["history"]["grad_norm"]["W1"] == [None, 2.0]
    assert load_checkpoint(path).state.history == state.history
