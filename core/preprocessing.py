"""What turns raw inputs of a dataset's format into what its models were trained on.

The notes' preprocessing, in the order the data loaders apply it: flatten each example,
scale pixel intensities (digits / 16, CIFAR-10 / 255, npz as given), then one of the kinds
the notes name, each computed on the training split only:
    mean         subtract the mean of each feature (the default; "the recommended
                 preprocessing is to center the data")
    standardize  also divide each feature by its standard deviation (a constant feature,
                 such as a digits border pixel, is divided by 1)
    none         use the values as they are
It is kept with every checkpoint (core.checkpoint), so that a model predicts on raw inputs
with nothing else; the loaders use this same code, so predictions on raw inputs equal the
model's own on the preprocessed splits, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("mean", "standardize", "none")
# Preprocessed inputs larger than this look unscaled: well-scaled ones are of order 1.
UNSCALED_MAGNITUDE = 20.0


class InputError(ValueError):
    """Inputs that a model cannot take; the message says what they are and what it expects."""


@dataclass(frozen=True)
class Preprocessing:
    mean: np.ndarray  # (D,) float64: the training split's mean after scaling (zeros: none)
    divide_by: float = 1.0  # raw values are divided by this (the maximum pixel intensity)
    input_shape: tuple[int, ...] = ()  # one raw example's shape, e.g. (8, 8); () is (D,)
    std: np.ndarray | None = None  # (D,) float64, for standardize
    kind: str = "mean"

    @classmethod
    def fit(
        cls,
        X_train: np.ndarray,
        kind: str = "mean",
        divide_by: float = 1.0,
        input_shape: tuple[int, ...] = (),
    ) -> Preprocessing:
        """The preprocessing of `kind` for raw training rows (N, D), float64."""
        if kind not in KINDS:
            raise ValueError(f"preprocessing: must be one of {', '.join(KINDS)}, got {kind!r}")
        scaled = X_train / divide_by if divide_by != 1.0 else X_train
        if kind == "none":
            return cls(np.zeros(scaled.shape[1]), divide_by, input_shape, None, kind)
        mean = scaled.mean(axis=0)
        std = None
        if kind == "standardize":
            std = scaled.std(axis=0)
            std[std == 0] = 1.0  # a constant feature stays 0 after centring
        return cls(mean, divide_by, input_shape, std, kind)

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, X: np.ndarray, dtype: str | np.dtype = "float64") -> np.ndarray:
        """Raw examples (N, *input_shape) or flattened (N, D) -> the model's inputs (N, D)."""
        X = np.asarray(X)
        shape = self.input_shape or (self.input_dim,)
        if X.dtype.kind not in "iuf":
            raise InputError(f"inputs have dtype {X.dtype}, expected numbers")
        if X.ndim < 2 or math.prod(X.shape[1:]) != self.input_dim:
            raise InputError(
                f"inputs have shape {X.shape}, expected (N, {', '.join(map(str, shape))}) "
                f"or (N, {self.input_dim})"
            )
        X = X.reshape(X.shape[0], -1).astype(np.float64)
        if self.divide_by != 1.0:
            X = X / self.divide_by
        X = X - self.mean
        if self.std is not None:
            X /= self.std
        return np.ascontiguousarray(X, dtype=dtype)

    def describe(self) -> str:
        scaled = f"divided by {self.divide_by:g}, " if self.divide_by != 1.0 else ""
        what = {
            "mean": "the training mean subtracted",
            "standardize": "standardized per feature (training mean and std)",
            "none": "used as they are",
        }[self.kind]
        return f"inputs {scaled}{what}"

    def to_meta(self) -> dict[str, object]:
        """The scalars, for a checkpoint's JSON (the mean and std go in as arrays)."""
        return {
            "divide_by": self.divide_by,
            "input_shape": list(self.input_shape),
            "kind": self.kind,
        }

    @classmethod
    def from_meta(
        cls, meta: dict[str, object], mean: np.ndarray, std: np.ndarray | None = None
    ) -> Preprocessing:
        shape = meta.get("input_shape") or []
        divide_by = meta.get("divide_by", 1.0)
        kind = meta.get("kind", "mean")
        if (
            not isinstance(shape, list)
            or not isinstance(divide_by, int | float)
            or kind not in KINDS
            or (kind == "standardize") != (std is not None)
        ):
            raise TypeError(f"preprocessing {meta!r}: expected input_shape, divide_by, kind")
        as_float = None if std is None else np.asarray(std, dtype=np.float64)
        return cls(
            np.asarray(mean, dtype=np.float64), float(divide_by), tuple(shape), as_float, str(kind)
        )


def scale_warnings(X: np.ndarray, source: str, preprocessing: Preprocessing) -> list[str]:
    """In words, when preprocessed training inputs (N, D) look unscaled: the cost of a
    He-initialized net then explodes at once, and a gradient check is unreliable."""
    largest = float(np.abs(X).max()) if X.size else 0.0
    if largest <= UNSCALED_MAGNITUDE:
        return []
    return [
        f"{source}: the inputs look unscaled: after preprocessing ({preprocessing.describe()}) "
        f"they reach {largest:.4g} (std {float(X.std()):.3g}), where well-scaled inputs are "
        f"of order 1; initial scores are then huge and the cost may explode at once. Scale "
        f"them (e.g. divide pixels by 255 before saving the .npz) or use preprocessing: "
        f"standardize"
    ]
