"""A fully connected net: {affine - relu - [dropout]} x L - affine - softmax or SVM loss.

Parameters live in one dict of arrays, `W1, b1, ..., W{L+1}, b{L+1}`, so that optimizers,
checkpoints and gradient checks all walk the same names. The objective is

    data_loss + reg * sum(W**2)   over the weight matrices only (biases are not regularized),

whose gradient adds 2 * reg * W to each dW. The model keeps no RNG of its own: dropout masks
come from the generator the caller passes, so training is reproducible from one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core import layers
from core.config import TrainConfig

Params = dict[str, np.ndarray]

# Scores for this many rows at a time when only predicting, to bound memory on big sets.
PREDICT_CHUNK = 2048


class FullyConnectedNet:
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (100,),
        *,
        loss: str = "softmax",
        reg: float = 0.0,
        dropout: float = 0.0,
        weight_scale: float | str = "he",
        dtype: str | np.dtype = "float32",
        rng: np.random.Generator | None = None,
        params: Params | None = None,
    ) -> None:
        """Draw weights from `rng` (required unless `params` is given); biases start at 0."""
        if loss not in ("softmax", "svm"):
            raise ValueError(f"loss: must be softmax or svm, got {loss!r}")
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.loss_name = loss
        self.reg = float(reg)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.num_layers = len(self.hidden_sizes) + 1
        if params is not None:
            self.params = {name: np.asarray(p, dtype=self.dtype) for name, p in params.items()}
            self._check_param_shapes()
            return
        if rng is None:
            raise ValueError("rng: a numpy Generator is needed to initialize the weights")
        dims = (self.input_dim, *self.hidden_sizes, self.num_classes)
        self.params = {}
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True), start=1):
            std = math.sqrt(2.0 / fan_in) if weight_scale == "he" else float(weight_scale)
            self.params[f"W{i}"] = (std * rng.standard_normal((fan_in, fan_out))).astype(self.dtype)
            self.params[f"b{i}"] = np.zeros(fan_out, dtype=self.dtype)

    @classmethod
    def from_config(
        cls, config: TrainConfig, input_dim: int, num_classes: int, rng: np.random.Generator
    ) -> FullyConnectedNet:
        return cls(
            input_dim,
            num_classes,
            config.hidden_sizes,
            loss=config.loss,
            reg=config.reg,
            dropout=config.dropout,
            weight_scale=config.weight_scale,
            dtype=config.dtype,
            rng=rng,
        )

    def _check_param_shapes(self) -> None:
        dims = (self.input_dim, *self.hidden_sizes, self.num_classes)
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True), start=1):
            for name, shape in ((f"W{i}", (fan_in, fan_out)), (f"b{i}", (fan_out,))):
                got = self.params.get(name)
                if got is None or got.shape != shape:
                    found = None if got is None else got.shape
                    raise ValueError(f"params.{name}: expected shape {shape}, got {found}")

    def _forward(
        self,
        X: np.ndarray,
        rng: np.random.Generator | None,
        train: bool,
        params: Params | None = None,
    ) -> tuple[np.ndarray, list[tuple[object, object]]]:
        p = self.params if params is None else params
        caches: list[tuple[object, object]] = []
        h = X
        use_dropout = train and self.dropout > 0
        if use_dropout and rng is None:
            raise ValueError("rng: dropout > 0 needs a numpy Generator for its masks")
        for i in range(1, self.num_layers):
            h, cache = layers.affine_relu_forward(h, p[f"W{i}"], p[f"b{i}"])
            drop_cache = None
            if use_dropout:
                assert rng is not None
                h, drop_cache = layers.dropout_forward(h, self.dropout, rng)
            caches.append((cache, drop_cache))
        last = self.num_layers
        scores, cache = layers.affine_forward(h, p[f"W{last}"], p[f"b{last}"])
        caches.append((cache, None))
        return scores, caches

    def scores(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Test-time class scores (no dropout), (N, D) -> (N, C); `params` overrides the model's
        own (e.g. the running average) without touching them."""
        if X.shape[0] <= PREDICT_CHUNK:
            return self._forward(X, None, False, params)[0]
        chunks = [
            self._forward(X[s : s + PREDICT_CHUNK], None, False, params)[0]
            for s in range(0, X.shape[0], PREDICT_CHUNK)
        ]
        return np.concatenate(chunks)

    def predict(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        return np.argmax(self.scores(X, params), axis=1)

    def accuracy(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> float:
        return float(np.mean(self.predict(X, params) == y))

    def data_loss(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        if self.loss_name == "softmax":
            return layers.softmax_loss(scores, y)
        return layers.svm_loss(scores, y)

    def reg_loss(self) -> float:
        if self.reg == 0:
            return 0.0
        total = 0.0
        for i in range(1, self.num_layers + 1):
            w = self.params[f"W{i}"].ravel()
            total += float(np.dot(w, w))
        return self.reg * total

    def loss(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[float, Params]:
        """Training-mode loss and gradients of every parameter. X: (N, D), y: (N,)."""
        scores, caches = self._forward(X, rng, train=True)
        data_loss, dout = self.data_loss(scores, y)
        grads: Params = {}
        last = self.num_layers
        affine_cache, _ = caches[-1]
        need_dx = last > 1
        dh, grads[f"W{last}"], grads[f"b{last}"] = layers.affine_backward(
            dout, affine_cache, need_dx
        )
        for i in range(last - 1, 0, -1):
            relu_cache, drop_cache = caches[i - 1]
            assert dh is not None
            if drop_cache is not None:
                dh = layers.dropout_backward(dh, drop_cache)
            dh, grads[f"W{i}"], grads[f"b{i}"] = layers.affine_relu_backward(
                dh, relu_cache, need_dx=i > 1
            )
        if self.reg:
            two_reg = self.dtype.type(2 * self.reg)
            for i in range(1, last + 1):
                grads[f"W{i}"] += two_reg * self.params[f"W{i}"]
        return data_loss + self.reg_loss(), grads

    def kink_pattern(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> list[np.ndarray]:
        """Which side of every kink the training-mode forward pass falls on.

        One boolean array per ReLU (unit active or not) and, for the SVM loss, one for the
        margins (violated or not). Two evaluations with different patterns straddle a kink,
        so a finite difference between them is not a fair test of the analytic gradient.
        """
        scores, caches = self._forward(X, rng, train=True)
        pattern = [relu_cache[1] > 0 for relu_cache, _ in caches[:-1]]  # type: ignore[index]
        if self.loss_name == "svm":
            pattern.append(layers.svm_margins(scores, y) > 0)
        return pattern

    def copy_params(self) -> Params:
        return {name: p.copy() for name, p in self.params.items()}
