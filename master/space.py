"""Search-space distributions: what a sweep samples each hyperparameter from.

    loguniform  10 ** U(log10 low, log10 high)   (the notes' way for learning_rate and reg)
    uniform     U(low, high)
    int         a uniform integer in [low, high]
    logint      an integer spread evenly in log space over [low, high]
    choice      one of `values`, uniformly

The log scale belongs to the distribution, not to the sampler: a numeric distribution maps
its values to the scale it is searched in (`to_scale`, `from_scale`), and stage planning
narrows and widens ranges in that scale.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = bool | int | float | str


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float

    is_log: ClassVar[bool] = False
    is_int: ClassVar[bool] = False

    @model_validator(mode="after")
    def _check_bounds(self) -> _Range:
        for bound in ("low", "high"):
            if not math.isfinite(getattr(self, bound)):
                raise ValueError(f"{bound}: must be a finite number")
        if self.is_log and self.low <= 0:
            raise ValueError(f"low: must be > 0 for a log-scale range, got {self.low:g}")
        if self.low >= self.high:
            raise ValueError(f"high: must be > low, got low={self.low:g} >= high={self.high:g}")
        return self

    def to_scale(self, value: float) -> float:
        return math.log10(value) if self.is_log else float(value)

    def from_scale(self, value: float) -> float:
        return 10.0**value if self.is_log else value

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        # The same draws as rng.uniform over the scale: low + (high - low) * U.
        return self.from_unit(rng.random(n))

    def from_unit(self, u: np.ndarray) -> list[Any]:
        """Values for points `u` in [0, 1) (random or a low-discrepancy sampler's), spread
        evenly in the scale the range is searched in."""
        low, high = self.to_scale(self.low), self.to_scale(self.high)
        values = [self.from_scale(low + float(v) * (high - low)) for v in u]
        if self.is_int:
            return [min(max(round(v), int(self.low)), int(self.high)) for v in values]
        return values

    def with_bounds(self, low: float, high: float) -> Self:
        """The same kind of distribution over [low, high] (integer kinds round outward)."""
        if self.is_int:
            low, high = math.floor(low), math.ceil(high)
        return self.model_copy(update={"low": low, "high": high})

    def describe(self) -> str:
        return f"[{format_number(self.low)}, {format_number(self.high)}]"


class LogUniform(_Range):
    dist: Literal["loguniform"] = "loguniform"
    is_log: ClassVar[bool] = True


class Uniform(_Range):
    dist: Literal["uniform"] = "uniform"


class IntRange(_Range):
    dist: Literal["int"] = "int"
    low: int
    high: int
    is_int: ClassVar[bool] = True


class LogIntRange(_Range):
    dist: Literal["logint"] = "logint"
    low: int
    high: int
    is_log: ClassVar[bool] = True
    is_int: ClassVar[bool] = True


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=1)

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [self.values[int(i)] for i in rng.integers(0, len(self.values), size=n)]

    def from_unit(self, u: np.ndarray) -> list[Any]:
        count = len(self.values)
        return [self.values[min(int(v * count), count - 1)] for v in u]

    def describe(self) -> str:
        return "{" + ", ".join(map(str, self.values)) + "}"


NumericRange = LogUniform | Uniform | IntRange | LogIntRange
DIST_TAGS = frozenset(
    kind.model_fields["dist"].default
    for kind in (LogUniform, Uniform, IntRange, LogIntRange, Choice)
)
Space = dict[str, NumericRange | Choice]  # a search space: one distribution per hyperparameter
Distribution = Annotated[
    LogUniform | Uniform | IntRange | LogIntRange | Choice, Field(discriminator="dist")
]


def format_number(value: float) -> str:
    """A bound or value as people read it: 0.05, 9.1, 1.00e-06."""
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
