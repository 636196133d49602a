"""The trainer contract: what a model must do for hpsearch to search it.

A trainer is a class, registered by name on the worker (core.registry), never named by
module path in a sweep. The built-in NumPy net is the trainer named `mlp`; it keeps a loop of
its own (core.trainer), which core.run mirrors for every other trainer, because its bit-exact
results draw batch orders and dropout masks from one generator, where a user trainer owns
its RNG. A user's own model is any class that keeps this contract:

    class MyTrainer:
        version = "1"                                  # kept with every checkpoint
        hyperparameters = {                            # what a sweep may set, with defaults
            "learning_rate": Hyperparameter(1e-3, low=0, high=10),
            "hidden_size": Hyperparameter(100, low=1),
            "update": Hyperparameter("adam", choices=("sgd", "adam")),
        }

        def __init__(self, hyperparameters: dict, problem: Problem, seed: int) -> None:
            # hyperparameters: every declared name, the sweep's values or the defaults.
            # Draw the initial weights from `seed`; keep any RNG of your own (dropout).
        batch_size: int                                # training rows per iteration

        def train_step(self, X: (N, D) float32, y: (N,) int64, epoch: float) -> float:
            # one iteration on a minibatch, the update included; return its cost. `epoch`
            # is the fraction of training done (1.5 = half-way through the second epoch):
            # a learning-rate schedule is a function of it.
        def probabilities(self, X: (N, D) float32) -> (N, C) float:
            # class probabilities in test mode (no dropout; batchnorm's running stats)
        def state(self) -> dict[str, np.ndarray]:
            # everything needed to go on exactly: parameters, optimizer state, RNG state
        def load_state(self, arrays: dict[str, np.ndarray]) -> None:
            # the inverse of state(), on a trainer just built with the same arguments

        # Optional, read once per epoch and drawn by the dashboard; absent, "not reported".
        def learning_rate(self, epoch: float) -> float: ...  # the rate train_step used
        def update_ratios(self) -> dict[str, float]: ...  # ||update|| / ||w|| per parameter
        def first_layer_weights(self) -> (D, units): ...  # drawn as images if X rows are
        def hidden_activations(self, X) -> [(N, units), ...]:  # ReLU outputs per hidden layer
            # (test mode), drawn as the built-in net's are: distributions and dead units

The worker runs the loop around it (core.run): it draws every epoch's batch order, calls
train_step once per iteration, ends the run as exploded as soon as a cost is not finite
or above explode_factor x the first cost, measures train and validation accuracy from
probabilities() at every epoch's end, writes checkpoints of state() named by validation
accuracy, resumes a killed run from its newest checkpoint, and trains a promoted run on
from its parent's. X is preprocessed as the dataset's (mean-subtracted, flattened);
`problem.image_shape` says how a row unflattens (e.g. (8, 8), (3, 32, 32)).

Exact resume holds if state() holds everything train_step changes or reads: a run rebuilt
from (hyperparameters, problem, seed) and given load_state(state()) must go on exactly as
the run it came from. `generator_state` and `set_generator_state` carry a NumPy Generator's
state as an array.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from core.config import ConfigError

BUILTIN = "mlp"  # the built-in NumPy net (core.trainer), the default trainer of a sweep
# Set by the sweep and its stages for every trainer, never a trainer's own.
RESERVED = ("num_epochs", "seed", "explode_factor")

Value = bool | int | float | str | tuple[int, ...]


class TrainerError(RuntimeError):
    """A trainer broke the contract or raised; the message names the trainer and what it
    did."""


@dataclass(frozen=True)
class Problem:
    """What a trainer is built for: the shape of the data, not the data."""

    input_dim: int
    num_classes: int
    image_shape: tuple[int, ...] | None = None  # how one row of X unflattens, if an image


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter a trainer declares: its default (whose type is the
    hyperparameter's: bool, int, float, str, or a tuple of ints) and what values it takes
    (bounds inclusive)."""

    default: Value
    low: float | None = None
    high: float | None = None
    choices: tuple[bool | int | float | str, ...] | None = None
    help: str = ""

    @property
    def kind(self) -> str:
        for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str)):
            if isinstance(self.default, kind):
                return name
        return "int_list"

    def check(self, name: str, value: Any) -> Value:
        """`value` as this hyperparameter holds it, or ConfigError("name: why")."""
        kind = self.kind
        if kind == "float" and _is_int(value):
            value = float(value)
        if kind == "int_list" and isinstance(value, list | tuple):
            value = tuple(value)
        ok = {
            "bool": isinstance(value, bool),
            "int": _is_int(value),
            "float": isinstance(value, float) and math.isfinite(value),
            "str": isinstance(value, str),
            "int_list": isinstance(value, tuple) and len(value) > 0 and all(map(_is_int, value)),
        }[kind]
        if not ok:
            expected = {"int_list": "a non-empty list of integers", "float": "a finite number"}
            raise ConfigError(f"{name}: must be {expected.get(kind, kind)}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            shown = ", ".join(map(str, self.choices))
            raise ConfigError(f"{name}: must be one of {shown}, got {value!r}")
        numbers = value if isinstance(value, tuple) else (value,)
        if kind in ("int", "float", "int_list"):
            for number in numbers:
                if self.low is not None and number < self.low:
                    raise ConfigError(f"{name}: must be >= {self.low:g}, got {value!r}")
                if self.high is not None and number > self.high:
                    raise ConfigError(f"{name}: must be <= {self.high:g}, got {value!r}")
        return value

    def to_json(self) -> dict[str, Any]:
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        data: dict[str, Any] = {"kind": self.kind, "default": default, "help": self.help}
        for key in ("low", "high"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hyperparameter:
        default = data["default"]
        if data.get("kind") == "int_list":
            default = tuple(default)
        choices = data.get("choices")
        return cls(
            default,
            data.get("low"),
            data.get("high"),
            None if choices is None else tuple(choices),
            str(data.get("help", "")),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@runtime_checkable
class Trainer(Protocol):
    """A trainer built for one run (see the module docstring)."""

    batch_size: int

    def train_step(self, X: np.ndarray, y: np.ndarray, epoch: float) -> float: ...

    def probabilities(self, X: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, arrays: dict[str, np.ndarray]) -> None: ...


class TrainerClass(Protocol):
    """What is registered under a name: the class (or any callable) that builds a Trainer,
    with its declaration."""

    version: ClassVar[str]
    hyperparameters: ClassVar[dict[str, Hyperparameter]]

    def __call__(self, hyperparameters: dict[str, Any], problem: Problem, seed: int) -> Trainer: ...


@dataclass(frozen=True)
class Declaration:
    """A trainer as workers advertise it and the master validates sweeps against it."""

    name: str
    version: str
    hyperparameters: dict[str, Hyperparameter]

    @classmethod
    def of(cls, name: str, trainer: Any) -> Declaration:
        """The declaration of a registered class; TrainerError if it declares badly."""
        declared = getattr(trainer, "hyperparameters", None)
        if not isinstance(declared, Mapping) or not all(
            isinstance(h, Hyperparameter) for h in declared.values()
        ):
            raise TrainerError(
                f"trainer {name}: its `hyperparameters` must map names to "
                f"core.contract.Hyperparameter"
            )
        reserved = sorted(set(declared) & set(RESERVED))
        if reserved:
            raise TrainerError(
                f"trainer {name}: declares {', '.join(reserved)}, which the sweep sets "
                f"for every trainer"
            )
        for key, hyperparameter in declared.items():
            try:
                hyperparameter.check(key, hyperparameter.default)
            except ConfigError as exc:
                raise TrainerError(f"trainer {name}: its default {exc}") from None
        return cls(name, str(getattr(trainer, "version", "0")), dict(declared))

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared hyperparameter: `values`' (checked), else its default; ConfigError
        naming the first unknown or bad one."""
        unknown = sorted(set(values) - set(self.hyperparameters))
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: unknown hyperparameter of trainer {self.name} "
                f"(known: {', '.join(sorted(self.hyperparameters)) or 'none'})"
            )
        resolved: dict[str, Any] = {}
        for key, hyperparameter in self.hyperparameters.items():
            value = hyperparameter.check(key, values.get(key, hyperparameter.default))
            resolved[key] = list(value) if isinstance(value, tuple) else value
        return resolved

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "hyperparameters": {k: h.to_json() for k, h in self.hyperparameters.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Declaration:
        return cls(
            str(data["name"]),
            str(data["version"]),
            {k: Hyperparameter.from_json(h) for k, h in data["hyperparameters"].items()},
        )


def generator_state(rng: np.random.Generator) -> np.ndarray:
    """A Generator's whole state as a uint8 array, for a trainer's state()."""
    return np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8)


def set_generator_state(rng: np.random.Generator, array: np.ndarray) -> None:
    """The inverse of generator_state: `rng` goes on exactly where the saved one was."""
    rng.bit_generator.state = json.loads(np.asarray(array, dtype=np.uint8).tobytes())
