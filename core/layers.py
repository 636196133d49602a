"""Layers as pure forward/backward pairs, in the style of CS231n's layers.py.

Every layer keeps one contract:
    <layer>_forward(x, ...) -> (out, cache)
    <layer>_backward(dout, cache) -> gradients with respect to the forward inputs
Losses return (loss, dscores). Shapes: N examples, D input features, M outputs, C classes.
Arrays keep the dtype they arrive in; nothing here allocates more than one output per call
where an in-place update of a temporary of its own will do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Cache = Any


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """x: (N, D), w: (D, M), b: (M,) -> out: (N, M)."""
    out = x @ w
    out += b
    return out, (x, w)


def affine_backward(
    dout: np.ndarray,
    cache: Cache,
    need_dx: bool = True,
    dw_out: np.ndarray | None = None,
    db_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dout: (N, M) -> dx: (N, D) or None when need_dx is False, dw: (D, M), db: (M,).

    The first layer of a net passes need_dx=False: nothing consumes the gradient of the data,
    and skipping it saves a third of that layer's matrix work. dw_out and db_out, when given,
    receive dw and db (a model writes straight into its gradient array).
    """
    x, w = cache
    dx = dout @ w.T if need_dx else None
    dw = np.matmul(x.T, dout, out=dw_out)
    db = np.sum(dout, axis=0, out=db_out)
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """out = max(0, x), elementwise; the cache is the output itself (its sign is the mask)."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout where the unit was active, 0 elsewhere."""
    # A multiply by the mask is branch-free: np.where is ~6x slower on a random mask.
    return dout * (cache > 0)


def affine_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """relu(x @ w + b), computed in one buffer: the affine output is rectified in place."""
    out, affine_cache = affine_forward(x, w, b)
    np.maximum(out, 0, out=out)
    return out, (affine_cache, out)


def affine_relu_backward(
    dout: np.ndarray,
    cache: Cache,
    need_dx: bool = True,
    dw_out: np.ndarray | None = None,
    db_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Backward of affine_relu_forward (dout is not modified); outputs as in affine_backward."""
    affine_cache, out = cache
    return affine_backward(relu_backward(dout, out), affine_cache, need_dx, dw_out, db_out)


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: drop each unit with probability p, scale the survivors by 1 / (1 - p).

    Scaling at training time leaves test-time scores untouched (no dropout at test time).
    The mask comes from the caller's generator, so a fixed seed gives a fixed mask.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: must be in [0, 1), got {p}")
    mask = rng.random(x.shape, dtype=x.dtype if x.dtype == np.float32 else np.float64) >= p
    scaled_mask = mask.astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * scaled_mask, scaled_mask


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout * mask / (1 - p)."""
    return dout * cache


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores). scores: (N, C), y: (N,) ints in [0, C)."""
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.log(sums[:, 0]).sum() - shifted[rows, y].sum()) / n
    dscores = exp
    dscores /= sums
    dscores[rows, y] -= 1
    dscores /= n
    return loss, dscores


def svm_margins(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weston-Watkins margins max(0, s_j - s_y + 1), with 0 at the correct class."""
    rows = np.arange(scores.shape[0])
    margins = scores - scores[rows, y][:, None] + 1
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0
    return margins


def svm_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean multiclass SVM (Weston-Watkins) hinge loss with margin 1."""
    n = scores.shape[0]
    margins = svm_margins(scores, y)
    loss = float(margins.sum()) / n
    positive = (margins > 0).astype(scores.dtype)
    positive[np.arange(n), y] = -positive.sum(axis=1)
    positive /= n
    return loss, positive
