"""Datasets: a training, a validation and (where the source has one) a test split.

A dataset is named by a spec string, the same everywhere (CLI, sweep specs, worker jobs):
    digits        the 8x8 handwritten digits bundled with scikit-learn (no network needed),
                  split with a fixed seed into 1197 train / 300 val / 300 test
    npz:PATH      a .npz file holding X_train, y_train, X_val, y_val, and optionally
                  X_test, y_test (both or neither)
    cifar10:DIR   the CIFAR-10 "python version" batches: data_batch_1..5, the last `num_val`
                  training images held out for validation, and test_batch (if present) as
                  the test split
The test split is for the final evaluation of a finished sweep's models only: nothing in
training, selection or planning reads it.

Preprocessing (core.preprocessing): image datasets have their pixel intensities scaled to
[0, 1] (digits / 16, CIFAR-10 / 255), so that He-initialized nets start near chance
instead of with saturated scores; npz arrays are used as given. Then, by default, the mean
image is computed on the training split only and subtracted from every split (or each
feature is standardized, or nothing is done: `preprocessing`). Inputs that still look
unscaled are named in `Dataset.warnings`. Every problem with the input
raises DatasetError naming the file and what is wrong.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.preprocessing import KINDS, Preprocessing, scale_warnings

DIGITS_NUM_VAL = 300
DIGITS_NUM_TEST = 300  # always the same images, whatever num_val
DIGITS_SPLIT_SEED = 0
DIGITS_MAX_INTENSITY = 16.0
CIFAR10_MAX_INTENSITY = 255.0
CIFAR10_NUM_VAL = 1000
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_IMAGE_SHAPE = (3, 32, 32)  # each row is the red, then green, then blue 32x32 plane
NPZ_ARRAYS = ("X_train", "y_train", "X_val", "y_val")
NPZ_TEST_ARRAYS = ("X_test", "y_test")


class DatasetError(ValueError):
    """The dataset spec or its files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Dataset:
    name: str
    X_train: np.ndarray  # (N_train, D), mean-subtracted
    y_train: np.ndarray  # (N_train,) int64 in [0, num_classes)
    X_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    mean_image: np.ndarray  # (D,) float64, already subtracted from every split
    # Shape one row unflattens to (e.g. (8, 8) or (3, 32, 32)), for showing weights as images.
    image_shape: tuple[int, ...] | None = None
    # The held-out test split (None where the source has none): final evaluation only.
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    divide_by: float = 1.0  # raw values were divided by this before the mean was taken
    feature_std: np.ndarray | None = None  # (D,), the splits were divided by (standardize)
    preprocessing_kind: str = "mean"
    warnings: tuple[str, ...] = ()  # in words: inputs that look unscaled

    @property
    def input_dim(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def preprocessing(self) -> Preprocessing:
        """What turns this dataset's raw inputs into the model's (kept with checkpoints)."""
        return Preprocessing(
            self.mean_image,
            self.divide_by,
            self.image_shape or (),
            self.feature_std,
            self.preprocessing_kind,
        )

    @property
    def has_test(self) -> bool:
        return self.X_test is not None


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """(kind, location) of a spec string, e.g. ("npz", "data.npz"), without reading any file."""
    kind, _, location = spec.partition(":")
    if (kind == "digits" and not location) or (kind in ("npz", "cifar10") and location):
        return kind, location
    raise DatasetError(f"dataset {spec!r}: unknown spec; use 'digits', 'npz:PATH' or 'cifar10:DIR'")


def dataset_folders(setting: str, data_dir: Path) -> list[Path]:
    """The folders HPSEARCH_DATASET_DIRS names (os.pathsep between them), else
    <data_dir>/datasets: one rule for the master and the workers."""
    named = [Path(part) for part in setting.split(os.pathsep) if part.strip()]
    return named or [data_dir / "datasets"]


def confine(spec: str, roots: Sequence[Path]) -> str:
    """The spec with its file or folder resolved under one of the dataset folders `roots`
    (a relative path from the first), or DatasetError. Symbolic links and `..` are resolved
    first, and the answer for a path outside is the same whether or not it exists: a spec
    must not tell anyone what else is on the machine."""
    kind, location = parse_dataset_spec(spec)
    if kind == "digits":
        return spec
    path = Path(location)
    if roots:
        resolved = (path if path.is_absolute() else roots[0] / path).resolve()
        for root in roots:
            if resolved.is_relative_to(root.resolve()):
                return f"{kind}:{resolved}"
    raise DatasetError(
        f"dataset {spec!r}: not in a dataset folder; datasets are read only from the folders "
        f"HPSEARCH_DATASET_DIRS names (a relative path: from the first of them)"
    )


def load_dataset(
    spec: str,
    *,
    dtype: str = "float32",
    num_val: int | None = None,
    preprocessing: str = "mean",
) -> Dataset:
    """Load the dataset a spec string names; see the module docstring for the specs."""
    if dtype not in ("float32", "float64"):
        raise DatasetError(f"dtype: must be float32 or float64, got {dtype!r}")
    if preprocessing not in KINDS:
        raise DatasetError(
            f"preprocessing: must be one of {', '.join(KINDS)}, got {preprocessing!r}"
        )
    kind, location = parse_dataset_spec(spec)
    if kind == "digits":
        raw = _load_digits(num_val if num_val is not None else DIGITS_NUM_VAL)
    elif kind == "npz":
        if num_val is not None:
            raise DatasetError(f"{spec}: num_val does not apply, the file holds its own X_val")
        raw = _load_npz(Path(location))
    else:
        raw = _load_cifar10(Path(location), num_val if num_val is not None else CIFAR10_NUM_VAL)
    return _preprocess(spec, raw, np.dtype(dtype), preprocessing)


@dataclass
class _Raw:
    source: str  # the file or folder, for messages
    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    image_shape: tuple[int, ...] | None
    num_classes: int | None = None
    divide_by: float = 1.0
    X_test: Any = None
    y_test: Any = None


def _load_digits(num_val: int) -> _Raw:
    from sklearn.datasets import load_digits  # lazily: only this dataset needs scikit-learn

    bunch = load_digits()
    X, y = bunch.data, bunch.target
    _check_split("digits", len(X) - DIGITS_NUM_TEST, num_val)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(X))
    test, rest = order[:DIGITS_NUM_TEST], order[DIGITS_NUM_TEST:]
    train, val = rest[:-num_val], rest[-num_val:]
    return _Raw(
        "digits",
        X[train],
        y[train],
        X[val],
        y[val],
        (8, 8),
        num_classes=10,
        divide_by=DIGITS_MAX_INTENSITY,
        X_test=X[test],
        y_test=y[test],
    )


def _load_npz(path: Path) -> _Raw:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in NPZ_ARRAYS if name not in archive.files]
            if missing:
                raise DatasetError(
                    f"{path}: missing array(s) {', '.join(missing)}; the file has "
                    f"{', '.join(archive.files) or 'no arrays'}"
                )
            arrays = {name: archive[name] for name in NPZ_ARRAYS}
            test = [name for name in NPZ_TEST_ARRAYS if name in archive.files]
            if len(test) == 1:
                raise DatasetError(
                    f"{path}: has {test[0]} but not "
                    f"{next(n for n in NPZ_TEST_ARRAYS if n not in test)}; a test split "
                    f"needs both (or neither)"
                )
            arrays.update({name: archive[name] for name in test})
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:  # not a zip, truncated, or an object array
        raise DatasetError(f"{path}: not a readable .npz of plain arrays ({exc})") from exc
    image_shape = tuple(arrays["X_train"].shape[1:]) if arrays["X_train"].ndim > 2 else None
    return _Raw(str(path), **arrays, image_shape=image_shape)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a dataset file must not run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2: a pure transform
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(
            f"{path}: no such file (a CIFAR-10 folder holds {', '.join(CIFAR10_BATCHES)})"
        )
    try:
        with path.open("rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (no b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: data has shape {data.shape}, expected (N, 3072)")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _load_cifar10(folder: Path, num_val: int) -> _Raw:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    batches = [read_cifar_batch(folder / name) for name in CIFAR10_BATCHES]
    X = np.concatenate([data for data, _ in batches])
    y = np.concatenate([labels for _, labels in batches])
    _check_split(str(folder), len(X), num_val)
    X_test = y_test = None
    if (folder / CIFAR10_TEST_BATCH).exists():
        X_test, y_test = read_cifar_batch(folder / CIFAR10_TEST_BATCH)
    return _Raw(
        str(folder),
        X[:-num_val],
        y[:-num_val],
        X[-num_val:],
        y[-num_val:],
        CIFAR10_IMAGE_SHAPE,
        num_classes=10,
        divide_by=CIFAR10_MAX_INTENSITY,
        X_test=X_test,
        y_test=y_test,
    )


def _check_split(source: str, total: int, num_val: int) -> None:
    if num_val < 1 or num_val >= total:
        raise DatasetError(
            f"{source}: a validation split of {num_val} needs 1 <= num_val < {total} "
            f"(the number of examples)"
        )


def _labels(source: str, name: str, y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{source}: {name} has shape {y.shape}, expected one label per row")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DatasetError(f"{source}: {name} holds non-integer labels")
    elif y.dtype.kind not in "iu":
        raise DatasetError(f"{source}: {name} has dtype {y.dtype}, expected integer labels")
    return y.astype(np.int64)


def _features(source: str, name: str, X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "iuf":
        raise DatasetError(f"{source}: {name} has dtype {X.dtype}, expected numbers")
    if X.ndim < 2 or X.shape[0] == 0:
        raise DatasetError(f"{source}: {name} has shape {X.shape}, expected (N, D) with N > 0")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{source}: {name} holds NaN or inf (first in row {row})")
    return X


def _preprocess(spec: str, raw: _Raw, dtype: np.dtype, kind: str = "mean") -> Dataset:
    src = raw.source
    splits = ["train", "val"] + (["test"] if raw.X_test is not None else [])
    X = {split: _features(src, f"X_{split}", getattr(raw, f"X_{split}")) for split in splits}
    y = {split: _labels(src, f"y_{split}", getattr(raw, f"y_{split}")) for split in splits}
    for split in splits:
        if len(X[split]) != len(y[split]):
            raise DatasetError(
                f"{src}: X_{split} has {len(X[split])} rows but y_{split} has {len(y[split])}"
            )
        if X[split].shape[1] != X["train"].shape[1]:
            raise DatasetError(
                f"{src}: X_train has {X['train'].shape[1]} features per row but X_{split} "
                f"has {X[split].shape[1]}"
            )
    num_classes = raw.num_classes or int(y["train"].max()) + 1
    if num_classes < 2:
        raise DatasetError(f"{src}: y_train has a single class; classification needs two or more")
    for split in splits:
        out = (y[split] < 0) | (y[split] >= num_classes)
        if out.any():
            raise DatasetError(
                f"{src}: y_{split} has label {int(y[split][out][0])} out of range "
                f"[0, {num_classes})"
            )
    # One code path for the splits and for a model's raw inputs later (predict).
    preprocessing = Preprocessing.fit(X["train"], kind, raw.divide_by, raw.image_shape or ())
    ready = {split: preprocessing.apply(X[split], dtype) for split in splits}
    return Dataset(
        name=spec,
        X_train=ready["train"],
        y_train=y["train"],
        X_val=ready["val"],
        y_val=y["val"],
        num_classes=num_classes,
        mean_image=preprocessing.mean,
        image_shape=raw.image_shape,
        X_test=ready.get("test"),
        y_test=y.get("test"),
        divide_by=raw.divide_by,
        feature_std=preprocessing.std,
        preprocessing_kind=kind,
        warnings=tuple(scale_warnings(ready["train"], src, preprocessing)),
    )
