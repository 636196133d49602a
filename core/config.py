"""TrainConfig: every hyperparameter of one training run, flat and typed.

This is the edge of core/: the CLI, the worker and the master all build a TrainConfig (or a
dict that `TrainConfig.from_dict` accepts), and every invalid value is rejected here with a
message that starts with the field's name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

UPDATE_RULES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
LOSSES = ("softmax", "svm")
NORMALIZATIONS = ("none", "batchnorm")
PREPROCESSINGS = ("mean", "standardize", "none")  # core.preprocessing.KINDS
LR_SCHEDULES = ("step", "exp", "inv")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A hyperparameter has a value core/ cannot train with; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    # Model.
    hidden_sizes: tuple[int, ...] = (100,)
    loss: str = "softmax"
    # "he" draws W ~ N(0, 2 / fan_in); a number is the notes' fixed std, e.g. 1e-4.
    weight_scale: float | str = "he"
    # Probability of dropping a hidden unit (inverted dropout); 0 disables it.
    dropout: float = 0.0
    # "batchnorm": affine - batchnorm - relu - [dropout] in every hidden layer.
    normalization: str = "none"
    # Of the inputs, after pixel scaling (core.preprocessing): "mean" subtracts the training
    # mean, "standardize" also divides by the training std, "none" leaves them.
    preprocessing: str = "mean"

    # Objective: data loss + reg * sum(W**2) over weight matrices (biases are not regularized).
    reg: float = 1e-4

    # Update rule and its constants (each rule reads only its own).
    update: str = "momentum"
    learning_rate: float = 0.1
    momentum: float = 0.9
    decay_rate: float = 0.99  # rmsprop's cache decay
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    # Learning-rate schedule, t in epochs. step: lr * lr_decay ** floor(t / lr_step);
    # exp: lr * exp(-lr_k * t); inv: lr / (1 + lr_k * t).
    lr_schedule: str = "step"
    lr_decay: float = 0.95
    lr_step: float = 1.0
    lr_k: float = 0.0

    batch_size: int = 100
    # Fractional epochs are allowed: a coarse stage may train for half an epoch.
    num_epochs: float = 20.0

    # Stop as "exploded" once the minibatch cost exceeds explode_factor * the first cost
    # (the notes: "if the cost is ever > 3x the original cost, break out early").
    explode_factor: float = 3.0
    # Decay per iteration of the running average of the parameters.
    average_decay: float = 0.99

    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain JSON-able data; unknown names are an error, not silently ignored."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: unknown hyperparameter (known: {', '.join(cls.field_names())})"
            )
        try:
            return cls(**values)
        except TypeError as exc:  # a value of a type the checks cannot even compare
            raise ConfigError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden_sizes"] = list(self.hidden_sizes)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problems(c: TrainConfig) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, name: str, rule: str) -> None:
        if not ok:
            problems.append(f"{name}: {rule}, got {getattr(c, name)!r}")

    positive = ("learning_rate", "num_epochs", "explode_factor", "lr_step", "epsilon")
    for name in positive:
        need(_is_number(getattr(c, name)) and getattr(c, name) > 0, name, "must be a number > 0")
    non_negative = ("reg", "lr_k")
    for name in non_negative:
        need(_is_number(getattr(c, name)) and getattr(c, name) >= 0, name, "must be a number >= 0")
    fractions = ("momentum", "decay_rate", "beta1", "beta2", "average_decay", "dropout")
    for name in fractions:
        need(_is_number(getattr(c, name)) and 0 <= getattr(c, name) < 1, name, "must be in [0, 1)")
    need(_is_number(c.lr_decay) and 0 < c.lr_decay <= 1, "lr_decay", "must be in (0, 1]")
    need(
        isinstance(c.batch_size, int) and not isinstance(c.batch_size, bool) and c.batch_size > 0,
        "batch_size",
        "must be an integer > 0",
    )
    need(
        len(c.hidden_sizes) > 0
        and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in c.hidden_sizes),
        "hidden_sizes",
        "must be a non-empty list of integers > 0",
    )
    need(c.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}")
    need(
        c.preprocessing in PREPROCESSINGS,
        "preprocessing",
        f"must be one of {', '.join(PREPROCESSINGS)}",
    )
    need(
        c.normalization in NORMALIZATIONS,
        "normalization",
        f"must be one of {', '.join(NORMALIZATIONS)}",
    )
    need(c.update in UPDATE_RULES, "update", f"must be one of {', '.join(UPDATE_RULES)}")
    need(c.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
    need(c.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
    need(
        c.weight_scale == "he" or (_is_number(c.weight_scale) and float(c.weight_scale) > 0),
        "weight_scale",
        "must be 'he' or a number > 0",
    )
    need(
        isinstance(c.seed, int) and not isinstance(c.seed, bool) and c.seed >= 0,
        "seed",
        "must be an integer >= 0",
    )
    return problems
