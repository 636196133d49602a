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


BN_EPS = 1e-5
BN_MOMENTUM = 0.9


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Batch normalization (Ioffe and Szegedy, 2015), CS231n's contract. x: (N, D).

    bn_param: "mode" ("train" or "test"), optional "eps" and "momentum", and "running_mean" /
    "running_var" ((D,) arrays, zeros and ones if absent; stored back into bn_param). In
    train mode each feature is normalized with the batch's mean and variance, and the
    running ones move towards them: running = momentum * running + (1 - momentum) * batch.
    In test mode the running statistics normalize instead ("at test time BatchNorm functions
    differently"): the output of an example then depends on it alone.
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", BN_EPS)
    momentum = bn_param.get("momentum", BN_MOMENTUM)
    d = x.shape[1]
    running_mean = bn_param.setdefault("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.setdefault("running_var", np.ones(d, dtype=x.dtype))
    if mode == "train":
        mean = x.mean(axis=0)
        centred = x - mean
        var = np.mean(centred * centred, axis=0)
        running_mean *= momentum
        running_mean += (1 - momentum) * mean
        running_var *= momentum
        running_var += (1 - momentum) * var
    elif mode == "test":
        centred = x - running_mean
        var = running_var
    else:
        raise ValueError(f"bn_param.mode: must be 'train' or 'test', got {mode!r}")
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    out = x_hat * gamma
    out += beta
    return out, (x_hat, gamma, inv_std, mode)


def batchnorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, D) -> dx, dgamma, dbeta. In train mode the batch's mean and variance are
    functions of x, which the simplified form below accounts for; in test mode the running
    statistics are constants."""
    x_hat, gamma, inv_std, mode = cache
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    if mode == "test":
        return dx_hat * inv_std, dgamma, dbeta
    n = dout.shape[0]
    dx = n * dx_hat - dx_hat.sum(axis=0) - x_hat * np.sum(dx_hat * x_hat, axis=0)
    dx *= inv_std / n
    return dx, dgamma, dbeta


def affine_bn_relu_forward(
    x: np.ndarray,
    w: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    bn_param: dict[str, Any],
) -> tuple[np.ndarray, Cache]:
    """relu(batchnorm(x @ w)): the slides' placement, after the affine layer and before the
    nonlinearity. The affine layer has no bias: the batch mean would remove it (its gradient
    is zero), and beta shifts instead."""
    a = x @ w
    out, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    np.maximum(out, 0, out=out)
    return out, ((x, w), bn_cache, out)


def affine_bn_relu_backward(
    dout: np.ndarray,
    cache: Cache,
    need_dx: bool = True,
    dw_out: np.ndarray | None = None,
    dgamma_out: np.ndarray | None = None,
    dbeta_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of affine_bn_relu_forward: dx (or None), dw, dgamma, dbeta; the *_out
    arrays, when given, receive them."""
    (x, w), bn_cache, out = cache
    da, dgamma, dbeta = batchnorm_backward(relu_backward(dout, out), bn_cache)
    if dgamma_out is not None:
        dgamma_out[...] = dgamma
        dgamma = dgamma_out
    if dbeta_out is not None:
        dbeta_out[...] = dbeta
        dbeta = dbeta_out
    dx = da @ w.T if need_dx else None
    dw = np.matmul(x.T, da, out=dw_out)
    return dx, dw, dgamma, dbeta


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
