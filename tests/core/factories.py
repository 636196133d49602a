"""Small, fast inputs for core tests: random data and datasets built in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core import checkpoint as ckpt
from core.data import Dataset


def random_classification(
    num_examples: int = 3, input_dim: int = 15, num_classes: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """N(0, 1) inputs and uniform labels, in float64: the notes' setting for gradient checks."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_examples, input_dim)), rng.integers(
        0, num_classes, num_examples
    )


def tiny_dataset(
    num_train: int = 60,
    num_val: int = 20,
    input_dim: int = 8,
    num_classes: int = 3,
    seed: int = 0,
    dtype: str = "float64",
) -> Dataset:
    """Linearly separable-ish blobs, already mean-subtracted, for fast trainer tests."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((num_classes, input_dim))
    y = rng.integers(0, num_classes, num_train + num_val)
    X = centers[y] + rng.standard_normal((len(y), input_dim))
    mean = X[:num_train].mean(axis=0)
    X = (X - mean).astype(dtype)
    return Dataset(
        "tiny", X[:num_train], y[:num_train], X[num_train:], y[num_train:], num_classes, mean
    )


def history_in_json(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """A checkpoint's archive entries and JSON changed in place to keep the per-epoch history
    in the JSON, as formats 1 to 3 did (format 4 keeps it in one array)."""
    layout = meta["state"].pop("history_layout")
    history = meta["state"]["history"]
    ckpt.unpack_history(arrays.pop(ckpt.EPOCHS_KEY), layout, history)


def as_format_2(path: Path, extra: dict[str, Any] | None = None) -> Path:
    """A copy of a checkpoint as format 2 wrote it (no preprocessing, the per-epoch history
    in the JSON), beside it as old.npz."""
    return as_older_format(path, 2, extra)


def as_older_format(path: Path, number: int, extra: dict[str, Any] | None = None) -> Path:
    """A copy of a checkpoint as format 3 (the per-epoch history in the JSON) or 2 (nor the
    preprocessing either) wrote it, beside it as old.npz."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(arrays.pop(ckpt.META_KEY).tobytes())
    history_in_json(arrays, meta)
    meta["format"] = number
    if number < 3:
        del meta["preprocessing"]
        del arrays[ckpt.MEAN_KEY]
    if extra is not None:
        meta["extra"] = extra
    arrays[ckpt.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    old = path.with_name("old.npz")
    np.savez(old, **arrays)
    return old
