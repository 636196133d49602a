"""First-order update rules, in the style of CS231n's optim.py.

Every rule keeps one contract:

    update(w, dw, config) -> (next_w, config)

- w: the parameter array. It is updated IN PLACE and returned as next_w: a step of a big
  layer then makes no new array (a copy of a 3072x500 float32 weight costs as much as a fifth
  of that layer's matrix product). Callers that need the old value copy it first.
- dw: the gradient of the loss with respect to w; never modified.
- config: a plain dict of the rule's hyperparameters (learning_rate, momentum, ...) and of its
  state (velocity, cache, m, v, t), created on the first call. Arrays in it have w's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Config = dict[str, Any]
UpdateRule = Callable[[np.ndarray, np.ndarray, Config], tuple[np.ndarray, Config]]


def _state(config: Config, name: str, w: np.ndarray) -> np.ndarray:
    if config.get(name) is None:
        config[name] = np.zeros_like(w)
    array: np.ndarray = config[name]
    return array


def sgd(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """Vanilla SGD: w -= learning_rate * dw."""
    lr = w.dtype.type(config["learning_rate"])
    w -= lr * dw
    return w, config


def momentum(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """SGD with momentum: v = mu * v - learning_rate * dw; w += v."""
    mu = w.dtype.type(config["momentum"])
    lr = w.dtype.type(config["learning_rate"])
    v = _state(config, "velocity", w)
    v *= mu
    v -= lr * dw
    w += v
    return w, config


def nesterov(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """Nesterov momentum in the notes' form, where dw is the gradient at w itself:

        v_prev = v;  v = mu * v - learning_rate * dw;  w += -mu * v_prev + (1 + mu) * v

    Substituting v gives w += mu * v - learning_rate * dw, which needs no copy of v_prev.
    """
    mu = w.dtype.type(config["momentum"])
    lr = w.dtype.type(config["learning_rate"])
    v = _state(config, "velocity", w)
    step = lr * dw
    v *= mu
    v -= step
    w -= step
    w += mu * v
    return w, config


def adagrad(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """cache += dw**2; w -= learning_rate * dw / (sqrt(cache) + epsilon)."""
    lr = w.dtype.type(config["learning_rate"])
    eps = w.dtype.type(config["epsilon"])
    cache = _state(config, "cache", w)
    cache += dw * dw
    denom = np.sqrt(cache)
    denom += eps
    w -= lr * dw / denom
    return w, config


def rmsprop(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """cache = decay_rate * cache + (1 - decay_rate) * dw**2; then as adagrad."""
    lr = w.dtype.type(config["learning_rate"])
    eps = w.dtype.type(config["epsilon"])
    decay = w.dtype.type(config["decay_rate"])
    cache = _state(config, "cache", w)
    cache *= decay
    cache += (1 - decay) * (dw * dw)
    denom = np.sqrt(cache)
    denom += eps
    w -= lr * dw / denom
    return w, config


def adam(w: np.ndarray, dw: np.ndarray, config: Config) -> tuple[np.ndarray, Config]:
    """Adam with bias correction; t counts updates from 1.

    m = beta1 * m + (1 - beta1) * dw;  v = beta2 * v + (1 - beta2) * dw**2
    w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)
    """
    lr = config["learning_rate"]
    beta1, beta2, eps = config["beta1"], config["beta2"], config["epsilon"]
    m = _state(config, "m", w)
    v = _state(config, "v", w)
    t = int(config.get("t", 0)) + 1
    config["t"] = t
    m *= w.dtype.type(beta1)
    m += w.dtype.type(1 - beta1) * dw
    v *= w.dtype.type(beta2)
    v += w.dtype.type(1 - beta2) * (dw * dw)
    denom = np.sqrt(v / w.dtype.type(1 - beta2**t))
    denom += w.dtype.type(eps)
    w -= w.dtype.type(lr / (1 - beta1**t)) * m / denom
    return w, config


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}

# The hyperparameters each rule reads from a TrainConfig into its config dict.
RULE_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "sgd": ("learning_rate",),
    "momentum": ("learning_rate", "momentum"),
    "nesterov": ("learning_rate", "momentum"),
    "adagrad": ("learning_rate", "epsilon"),
    "rmsprop": ("learning_rate", "decay_rate", "epsilon"),
    "adam": ("learning_rate", "beta1", "beta2", "epsilon"),
}
