"""Datasets: splits, preprocessing, the CIFAR-10 batch format, and every bad-input case."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.data import Dataset, DatasetError, load_dataset


def test_digits_split_and_preprocessing() -> None:
    data = load_dataset("digits")
    assert data.X_train.shape == (1197, 64) and data.X_val.shape == (300, 64)
    assert data.X_test is not None and data.y_test is not None
    assert data.X_test.shape == (300, 64) and data.X_test.dtype == np.float32
    assert data.X_train.dtype == np.float32 and data.num_classes == 10
    assert data.image_shape == (8, 8)
    # The mean comes from the training split only: train is centred, val is not exactly.
    assert np.abs(data.X_train.mean(axis=0)).max() < 1e-5
    assert np.abs(data.X_val.mean(axis=0)).max() > 1e-3
    assert load_dataset("digits", dtype="float64").X_val.dtype == np.float64
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.y_val, data.y_val)  # fixed split seed


def test_the_digits_test_split_is_the_same_images_whatever_num_val() -> None:
    from sklearn.datasets import load_digits

    default = load_dataset("digits", dtype="float64")
    wider = load_dataset("digits", dtype="float64", num_val=600)
    assert wider.X_val.shape == (600, 64) and wider.X_train.shape == (897, 64)
    assert default.X_test is not None and wider.X_test is not None

    def pixels(X: np.ndarray, data: Dataset) -> np.ndarray:  # back to raw 0-16 intensities
        return np.round((X + data.mean_image) * 16).astype(int)

    np.testing.assert_array_equal(pixels(wider.X_test, wider), pixels(default.X_test, default))
    np.testing.assert_array_equal(wider.y_test, default.y_test)
    # The three splits are the whole set, each image once.
    splits = [pixels(wider.X_train, wider), pixels(wider.X_val, wider), pixels(wider.X_test, wider)]
    every = np.vstack(splits)
    raw = load_digits().data.astype(int)
    assert len(every) == len(raw)
    key = lambda rows: sorted(map(tuple, rows))  # noqa: E731
    assert key(every) == key(raw)


def test_npz_images_are_flattened(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(
        path,
        X_train=rng.random((30, 4, 4, 3)),
        y_train=np.arange(30) % 3,
        X_val=rng.random((10, 4, 4, 3)),
        y_val=np.arange(10) % 3,
    )
    data = load_dataset(f"npz:{path}")
    assert data.X_train.shape == (30, 48) and data.image_shape == (4, 4, 3)
    assert data.num_classes == 3


def write_cifar(folder: Path, per_batch: int = 40, protocol: int = 2, seed: int = 0) -> None:
    """Batches in exactly the "python version" format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_batches(tmp_path: Path, protocol: int) -> None:
    write_cifar(tmp_path / "cifar", protocol=protocol)
    data = load_dataset(f"cifar10:{tmp_path / 'cifar'}", num_val=50)
    assert data.X_train.shape == (150, 3072) and data.X_val.shape == (50, 3072)
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    # Validation is the last 50 training images; intensities scaled to [0, 1] before centring.
    with open(tmp_path / "cifar" / "data_batch_5", "rb") as f:
        last = pickle.load(f, encoding="bytes")
    np.testing.assert_allclose(
        data.X_val[-1] + data.mean_image, last[b"data"][-1] / 255.0, atol=1e-6
    )
    assert data.y_val[-1] == last[b"labels"][-1]
    # The test split is test_batch, scaled and centred with the training mean.
    with open(tmp_path / "cifar" / "test_batch", "rb") as f:
        test = pickle.load(f, encoding="bytes")
    assert data.X_test is not None and data.X_test.shape == (40, 3072)
    np.testing.assert_allclose(data.X_test + data.mean_image, test[b"data"] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(data.y_test, test[b"labels"])


def test_a_cifar10_folder_without_test_batch_has_no_test_split(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar", per_batch=10)
    os.remove(tmp_path / "cifar" / "test_batch")
    data = load_dataset(f"cifar10:{tmp_path / 'cifar'}", num_val=5)
    assert not data.has_test and data.X_test is None and data.y_test is None


def test_npz_test_arrays_are_optional_and_checked(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X_test, y_test = rng.random((6, 5)), np.arange(6) % 4
    with_test = load_dataset(bad_npz(tmp_path, {"X_test": X_test, "y_test": y_test}))
    assert with_test.X_test is not None
    np.testing.assert_allclose(with_test.X_test + with_test.mean_image, X_test, atol=1e-6)
    np.testing.assert_array_equal(with_test.y_test, y_test)
    without = load_dataset(bad_npz(tmp_path, {}))
    assert not without.has_test
    # Training and validation are the same with or without a test split.
    np.testing.assert_array_equal(with_test.X_train, without.X_train)
    np.testing.assert_array_equal(with_test.X_val, without.X_val)
    cases: list[tuple[dict[str, np.ndarray | None], str]] = [
        ({"X_test": X_test}, "has X_test but not y_test; a test split needs both"),
        ({"y_test": y_test}, "has y_test but not X_test"),
        ({"X_test": X_test, "y_test": y_test[:5]}, "X_test has 6 rows but y_test has 5"),
        ({"X_test": rng.random((6, 4)), "y_test": y_test}, "X_test has 4"),
        ({"X_test": X_test, "y_test": np.full(6, 7)}, r"y_test has label 7 out of range"),
    ]
    for overrides, message in cases:
        with pytest.raises(DatasetError, match=message):
            load_dataset(bad_npz(tmp_path, overrides))


def bad_npz(tmp_path: Path, overrides: dict[str, np.ndarray | None]) -> str:
    """A valid npz dataset with some arrays replaced (or, given None, left out)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray | None] = {
        "X_train": rng.random((20, 5)),
        "y_train": np.arange(20) % 4,
        "X_val": rng.random((8, 5)),
        "y_val": np.arange(8) % 4,
    }
    arrays.update(overrides)
    path = tmp_path / "bad.npz"
    present: dict[str, Any] = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **present)
    return f"npz:{path}"


def test_bad_npz_inputs(tmp_path: Path) -> None:
    nan_x = np.random.default_rng(0).random((20, 5))
    nan_x[3, 1] = np.nan
    inf_x = np.ones((8, 5))
    inf_x[0, 0] = np.inf
    cases: list[tuple[dict[str, np.ndarray | None], str]] = [
        ({"y_val": None}, r"bad.npz: missing array\(s\) y_val"),
        ({"y_train": np.arange(19) % 4}, "X_train has 20 rows but y_train has 19"),
        ({"y_val": np.array([0, 1, 2, 3, 4, 0, 1, 2])}, r"y_val has label 4 out of range \[0, 4\)"),
        ({"y_train": np.r_[-1, np.arange(19) % 4]}, "y_train has label -1 out of range"),
        ({"y_train": np.full(20, 0.5)}, "non-integer labels"),
        ({"X_train": nan_x}, r"X_train holds NaN or inf \(first in row 3\)"),
        ({"X_val": inf_x}, "X_val holds NaN or inf"),
        ({"X_val": np.ones((8, 6))}, "X_train has 5 features per row but X_val has 6"),
        ({"X_train": np.ones((0, 5)), "y_train": np.zeros(0, int)}, "X_train has shape"),
        ({"y_train": np.zeros(20, int)}, "single class"),
    ]
    for overrides, message in cases:
        with pytest.raises(DatasetError, match=message):
            load_dataset(bad_npz(tmp_path, overrides))


def test_bad_specs_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing.npz: no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    not_zip = tmp_path / "not.npz"
    not_zip.write_text("hello")
    with pytest.raises(DatasetError, match="not.npz: not a readable .npz"):
        load_dataset(f"npz:{not_zip}")
    with pytest.raises(DatasetError, match="unknown spec"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="unknown spec"):
        load_dataset("npz:")
    with pytest.raises(DatasetError, match="dtype"):
        load_dataset("digits", dtype="float16")
    with pytest.raises(DatasetError, match="num_val does not apply"):
        load_dataset(f"npz:{not_zip}", num_val=5)


def test_split_larger_than_the_data(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"digits: a validation split of 1497 needs .* < 1497"):
        load_dataset("digits", num_val=1497)  # 1797 images, 300 of them the test split
    write_cifar(tmp_path / "c", per_batch=10)
    with pytest.raises(DatasetError, match="validation split of 1000 needs 1 <= num_val < 50"):
        load_dataset(f"cifar10:{tmp_path / 'c'}")


def test_bad_cifar_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    write_cifar(tmp_path / "c", per_batch=10)
    os.remove(tmp_path / "c" / "data_batch_3")
    with pytest.raises(DatasetError, match="data_batch_3: no such file"):
        load_dataset(f"cifar10:{tmp_path / 'c'}", num_val=5)
    (tmp_path / "c" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{tmp_path / 'c'}", num_val=5)
    with open(tmp_path / "c" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 100), np.uint8), b"labels": [0] * 10}, f)
    with pytest.raises(DatasetError, match=r"data has shape \(10, 100\), expected \(N, 3072\)"):
        load_dataset(f"cifar10:{tmp_path / 'c'}", num_val=5)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/hpsearch-pwned",))


def test_a_malicious_batch_is_refused_not_run(tmp_path: Path) -> None:
    write_cifar(tmp_path / "c", per_batch=10)
    with open(tmp_path / "c" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset(f"cifar10:{tmp_path / 'c'}", num_val=5)
    assert not Path("/tmp/hpsearch-pwned").exists()
