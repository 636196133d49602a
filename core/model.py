"""A fully connected net: {affine - [batchnorm] - relu - [dropout]} x L - affine - softmax or
SVM loss.

Parameters are named `W1, b1, ..., W{L+1}, b{L+1}` (W: (fan_in, fan_out), b: (fan_out,)).
With batch normalization a hidden layer has `gamma{i}, beta{i}` (one scale and shift per
unit; gamma starts at 1, beta at 0) instead of its bias: the batch mean would remove a bias,
its gradient is zero, and beta shifts in its place. Only the output layer keeps its b.

All of them live as views into ONE flat array, `model.flat`, weights first. The trainer
updates, averages and copies that one array with a single NumPy call each, instead of one
call per parameter: on small nets the per-call cost is most of a step. `model.params` is
the named view of it, and `model.views(flat)` names any other array of the same layout
(gradients, optimizer state, best or averaged parameters).

The objective is

    data_loss + reg * sum(W**2)   over the weight matrices only (biases are not regularized),

whose gradient adds 2 * reg * W to each dW (gamma and beta are not regularized either). The
model keeps no RNG of its own: dropout masks come from the generator the caller passes, so
training is reproducible from one seed.

Batch normalization's running mean and variance are state, not parameters: no update rule
touches them, every training-mode forward pass moves them (core.layers.batchnorm_forward),
and test-mode passes (scores, predict, accuracy) normalize with them. `running_stats()` names
them for checkpoints.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

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
        normalization: str = "none",
    ) -> None:
        """Draw weights from `rng` (required unless `params` is given); biases start at 0."""
        if loss not in ("softmax", "svm"):
            raise ValueError(f"loss: must be softmax or svm, got {loss!r}")
        if normalization not in ("none", "batchnorm"):
            raise ValueError(f"normalization: must be none or batchnorm, got {normalization!r}")
        self.normalization = normalization
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.loss_name = loss
        self.reg = float(reg)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.num_layers = len(self.hidden_sizes) + 1
        dims = (self.input_dim, *self.hidden_sizes, self.num_classes)
        shapes: list[tuple[str, tuple[int, ...]]]
        shapes = [(f"W{i}", (dims[i - 1], dims[i])) for i in range(1, len(dims))]
        last = len(dims) - 1
        if normalization == "batchnorm":
            hidden = range(1, last)
            shapes += [(f"b{last}", (dims[last],))]
            shapes += [(f"gamma{i}", (dims[i],)) for i in hidden]
            shapes += [(f"beta{i}", (dims[i],)) for i in hidden]
        else:
            shapes += [(f"b{i}", (dims[i],)) for i in range(1, len(dims))]
        self.shapes: dict[str, tuple[int, ...]] = dict(shapes)
        sizes = [math.prod(shape) for _, shape in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        # Where each parameter sits in a flat array: views() runs twice per training step.
        self._layout = [
            (name, slice(int(start), int(start) + size), shape)
            for (name, shape), start, size in zip(shapes, self.offsets, sizes, strict=True)
        ]
        self.num_weights = sum(sizes[: len(dims) - 1])  # weights come first: reg is one slice
        self.size = sum(sizes)
        self.flat = np.zeros(self.size, dtype=self.dtype)
        self.params = self.views(self.flat)
        # Per hidden layer: the running statistics batchnorm_forward moves and tests with.
        self.bn_running: list[dict[str, np.ndarray]] = []
        if normalization == "batchnorm":
            self.bn_running = [
                {
                    "running_mean": np.zeros(dims[i], dtype=self.dtype),
                    "running_var": np.ones(dims[i], dtype=self.dtype),
                }
                for i in range(1, len(dims) - 1)
            ]
            if params is None:
                for i in range(1, len(dims) - 1):
                    self.params[f"gamma{i}"][...] = 1
        if params is not None:
            self.load_params(params)
            return
        if rng is None:
            raise ValueError("rng: a numpy Generator is needed to initialize the weights")
        for i in range(1, self.num_layers + 1):
            fan_in = dims[i - 1]
            std = math.sqrt(2.0 / fan_in) if weight_scale == "he" else float(weight_scale)
            self.params[f"W{i}"][...] = std * rng.standard_normal(self.shapes[f"W{i}"])

    def views(self, flat: np.ndarray) -> Params:
        """Name the parts of any array laid out like `self.flat` (no copies)."""
        return {name: flat[where].reshape(shape) for name, where, shape in self._layout}

    def flatten(self, params: Params) -> np.ndarray:
        """A new flat array holding `params` (which must have every name, in its shape)."""
        flat = np.empty(self.size, dtype=self.dtype)
        target = self.views(flat)
        for name, shape in self.shapes.items():
            got = params.get(name)
            if got is None or np.shape(got) != shape:
                found = None if got is None else np.shape(got)
                raise ValueError(f"params.{name}: expected shape {shape}, got {found}")
            target[name][...] = got
        return flat

    def load_params(self, params: Params) -> None:
        """Copy `params` into the model's own arena."""
        self.flat[...] = self.flatten(params)

    def running_stats(self) -> dict[str, np.ndarray]:
        """Batchnorm's running statistics by name (running_mean1, running_var1, ...): the
        model's own arrays, for checkpoints."""
        return {
            f"{key}{i}": array
            for i, stats in enumerate(self.bn_running, start=1)
            for key, array in stats.items()
        }

    def load_running_stats(self, stats: dict[str, np.ndarray]) -> None:
        for name, array in self.running_stats().items():
            if name not in stats or np.shape(stats[name]) != array.shape:
                raise ValueError(f"batchnorm {name}: expected shape {array.shape}")
            array[...] = stats[name]

    def astype(self, dtype: str | np.dtype, reg: float | None = None) -> FullyConnectedNet:
        """A copy in another dtype (same class, so a subclass's own code is kept)."""
        twin = copy.copy(self)
        twin.dtype = np.dtype(dtype)
        twin.flat = self.flat.astype(twin.dtype)
        twin.params = twin.views(twin.flat)
        twin.bn_running = [
            {key: array.astype(twin.dtype) for key, array in stats.items()}
            for stats in self.bn_running
        ]
        if reg is not None:
            twin.reg = float(reg)
        return twin

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
            normalization=config.normalization,
        )

    def _forward(
        self,
        X: np.ndarray,
        rng: np.random.Generator | None,
        train: bool,
        params: Params | None = None,
    ) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
        p = self.params if params is None else params
        caches: list[tuple[Any, Any]] = []
        h = X
        use_dropout = train and self.dropout > 0
        if use_dropout and rng is None:
            raise ValueError("rng: dropout > 0 needs a numpy Generator for its masks")
        mode = "train" if train else "test"
        for i in range(1, self.num_layers):
            if self.bn_running:
                bn_param = {"mode": mode, **self.bn_running[i - 1]}
                h, cache = layers.affine_bn_relu_forward(
                    h, p[f"W{i}"], p[f"gamma{i}"], p[f"beta{i}"], bn_param
                )
            else:
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

    def scores_and_activations(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Test-time scores and every hidden layer's ReLU output, from one forward pass."""
        scores, caches = self._forward(X, None, False)
        return scores, [cache[-1] for cache, _ in caches[:-1]]

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
        weights = self.flat[: self.num_weights]
        return self.reg * float(np.dot(weights, weights))

    def loss(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[float, Params]:
        """Training-mode loss and gradients of every parameter. X: (N, D), y: (N,)."""
        value, flat_grad = self.loss_flat(X, y, rng)
        return value, self.views(flat_grad)

    def loss_flat(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[float, np.ndarray]:
        """As loss(), with the gradient as one new array laid out like `self.flat`."""
        scores, caches = self._forward(X, rng, train=True)
        data_loss, dout = self.data_loss(scores, y)
        flat_grad = np.empty_like(self.flat)
        grads = self.views(flat_grad)
        last = self.num_layers
        dW, db = grads[f"W{last}"], grads[f"b{last}"]
        dh, _, _ = layers.affine_backward(dout, caches[-1][0], last > 1, dW, db)
        for i in range(last - 1, 0, -1):
            relu_cache, drop_cache = caches[i - 1]
            assert dh is not None  # only the first layer skips its input gradient
            if drop_cache is not None:
                dh = layers.dropout_backward(dh, drop_cache)
            dW = grads[f"W{i}"]
            if self.bn_running:
                dgamma, dbeta = grads[f"gamma{i}"], grads[f"beta{i}"]
                dh = layers.affine_bn_relu_backward(dh, relu_cache, i > 1, dW, dgamma, dbeta)[0]
            else:
                dh, _, _ = layers.affine_relu_backward(dh, relu_cache, i > 1, dW, grads[f"b{i}"])
        if self.reg:
            weights = slice(0, self.num_weights)
            flat_grad[weights] += self.dtype.type(2 * self.reg) * self.flat[weights]
        return data_loss + self.reg_loss(), flat_grad

    def kink_pattern(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> list[np.ndarray]:
        """Which side of every kink the training-mode forward pass falls on.

        One boolean array per ReLU (unit active or not) and, for the SVM loss, one for the
        margins (violated or not). Two evaluations with different patterns straddle a kink,
        so a finite difference between them is not a fair test of the analytic gradient.
        """
        scores, caches = self._forward(X, rng, train=True)
        pattern = [relu_cache[-1] > 0 for relu_cache, _ in caches[:-1]]
        if self.loss_name == "svm":
            pattern.append(layers.svm_margins(scores, y) > 0)
        return pattern
