"""What turns raw inputs of a dataset's format into what its models were trained on.

The notes' preprocessing, in the order the data loaders apply it: flatten each example,
scale pixel intensities (digits / 16, CIFAR-10 / 255, npz as given), subtract the mean of
the training split. It is kept with every checkpoint (core.checkpoint), so that a model
predicts on raw inputs with nothing else; the loaders use this same code, so predictions
on raw inputs equal the model's own on the preprocessed splits, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class InputError(ValueError):
    """Inputs that a model cannot take; the message says what they are and what it expects."""


@dataclass(frozen=True)
class Preprocessing:
    mean: np.ndarray  # (D,) float64: the training split's mean after scaling
    divide_by: float = 1.0  # raw values are divided by this (the maximum pixel intensity)
    input_shape: tuple[int, ...] = ()  # one raw example's shape, e.g. (8, 8); () is (D,)

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
        return np.ascontiguousarray(X - self.mean, dtype=dtype)

    def to_meta(self) -> dict[str, object]:
        """The scalars, for a checkpoint's JSON (the mean goes in as an array)."""
        return {"divide_by": self.divide_by, "input_shape": list(self.input_shape)}

    @classmethod
    def from_meta(cls, meta: dict[str, object], mean: np.ndarray) -> Preprocessing:
        shape = meta.get("input_shape") or []
        divide_by = meta.get("divide_by", 1.0)
        if not isinstance(shape, list) or not isinstance(divide_by, int | float):
            raise TypeError(f"preprocessing {meta!r}: expected input_shape and divide_by")
        return cls(np.asarray(mean, dtype=np.float64), float(divide_by), tuple(shape))
