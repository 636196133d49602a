"""Gradient checks, following the notes: centered differences in float64 on a few
datapoints, relative error, and kinks told apart from wrong gradients.

    relative_error(a, n) = |a - n| / max(|a| + |n|, TINY)   (0 when both are 0)

Verdict bands from the notes: > 1e-2 wrong, 1e-2..1e-4 uncomfortable, 1e-4..1e-7 okay
(fine with kinks, too high without), < 1e-7 good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from core.model import FullyConnectedNet

T = TypeVar("T")
TINY = 1e-12
REG_STEP = 1e-3
GOOD, OKAY, UNCOMFORTABLE, WRONG = "good", "okay", "uncomfortable", "wrong"


def relative_error(analytic: float, numerical: float) -> float:
    diff = abs(analytic - numerical)
    if diff == 0:
        return 0.0  # both zero (or equal): pass, whatever their size
    return diff / max(abs(analytic) + abs(numerical), TINY)


def verdict(error: float) -> str:
    if error > 1e-2:
        return WRONG
    if error > 1e-4:
        return UNCOMFORTABLE
    if error >= 1e-7:
        return OKAY
    return GOOD


def _on_both_sides(
    f: Callable[[], T], x: np.ndarray, index: tuple[int, ...], h: float
) -> tuple[T, T]:
    """f() with x[index] moved by +h, then by -h; x is restored even if f raises."""
    old = x[index]
    try:
        x[index] = old + h
        plus = f()
        x[index] = old - h
        minus = f()
    finally:
        x[index] = old
    return plus, minus


def centered_difference(
    f: Callable[[], float], x: np.ndarray, index: tuple[int, ...], h: float
) -> float:
    """(f(x+h) - f(x-h)) / 2h at one coordinate of x, which f reads."""
    plus, minus = _on_both_sides(f, x, index, h)
    return (plus - minus) / (2 * h)


def array_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """The numerical gradient of f at every coordinate of x (for small arrays: layer tests)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        grad[index] = centered_difference(f, x, index, h)
    return grad


@dataclass(frozen=True)
class ParamCheck:
    """The check of one parameter array in one phase ("data" loss or "reg" term)."""

    phase: str
    name: str
    checked: int  # coordinates compared
    kinks: int  # coordinates whose finite difference crossed a kink: reported, not judged
    max_error: float  # over the coordinates that crossed no kink
    worst_index: tuple[int, ...] | None

    @property
    def verdict(self) -> str:
        return verdict(self.max_error)


@dataclass(frozen=True)
class GradCheckReport:
    checks: tuple[ParamCheck, ...]
    h: float
    num_examples: int

    @property
    def max_error(self) -> float:
        return max((c.max_error for c in self.checks), default=0.0)

    def passed(self, threshold: float = 1e-7) -> bool:
        return all(c.max_error < threshold for c in self.checks)


def check_model_gradients(
    model: FullyConnectedNet,
    X: np.ndarray,
    y: np.ndarray,
    *,
    h: float = 1e-5,
    coords_per_param: int = 10,
    seed: int = 0,
) -> GradCheckReport:
    """Check every parameter array of `model` (biases included) on the examples X, y.

    Runs in a float64 copy: the model itself is untouched. The data loss is checked first with
    reg = 0, then the regularization term on its own (at the model's reg, or 0.1 when it is 0,
    so that its gradient code is exercised). Dropout masks are held fixed by re-seeding their
    generator for every evaluation.
    """
    X = np.asarray(X, dtype=np.float64)
    checks: list[ParamCheck] = []
    pick = np.random.default_rng(seed)
    data_model = model.astype("float64", reg=0.0)
    reg_model = model.astype("float64", reg=model.reg or 0.1)

    def data_loss() -> float:
        return data_model.loss(X, y, np.random.default_rng(seed))[0]

    def kinks() -> list[np.ndarray]:
        return data_model.kink_pattern(X, y, np.random.default_rng(seed))

    analytic = data_model.loss(X, y, np.random.default_rng(seed))[1]
    for name, param in data_model.params.items():
        checks.append(
            _check_array(
                "data", name, param, analytic[name], data_loss, kinks, h, coords_per_param, pick
            )
        )

    with_reg = reg_model.loss(X, y, np.random.default_rng(seed))[1]
    no_reg = reg_model.astype("float64", reg=0.0).loss(X, y, np.random.default_rng(seed))[1]
    # The term is quadratic in every coordinate, so a centered difference has no truncation
    # error: a larger step only shrinks the rounding error of the (large) summed term.
    reg_h = max(h, REG_STEP)
    for name, param in reg_model.params.items():
        reg_grad = with_reg[name] - no_reg[name]
        checks.append(
            _check_array(
                "reg",
                name,
                param,
                reg_grad,
                reg_model.reg_loss,
                None,
                reg_h,
                coords_per_param,
                pick,
            )
        )
    return GradCheckReport(tuple(checks), h, len(X))


def _check_array(
    phase: str,
    name: str,
    param: np.ndarray,
    analytic: np.ndarray,
    f: Callable[[], float],
    kinks: Callable[[], list[np.ndarray]] | None,
    h: float,
    coords: int,
    pick: np.random.Generator,
) -> ParamCheck:
    flat_indices = (
        np.arange(param.size)
        if param.size <= coords
        else pick.choice(param.size, size=coords, replace=False)
    )
    worst, worst_index, crossed = 0.0, None, 0
    for flat in flat_indices:
        index = tuple(int(i) for i in np.unravel_index(flat, param.shape))
        if kinks is not None and _crosses_kink(kinks, param, index, h):
            crossed += 1
            continue
        numerical = centered_difference(f, param, index, h)
        error = relative_error(float(analytic[index]), numerical)
        if error >= worst:
            worst, worst_index = error, index
    return ParamCheck(phase, name, len(flat_indices), crossed, worst, worst_index)


def _crosses_kink(
    kinks: Callable[[], list[np.ndarray]], param: np.ndarray, index: tuple[int, ...], h: float
) -> bool:
    above, below = _on_both_sides(kinks, param, index, h)
    return any(not np.array_equal(a, b) for a, b in zip(above, below, strict=True))


# What a failed check means (diagnose): the analytic gradient is wrong, or the check itself
# cannot be trusted here.
GRADIENT_WRONG = "wrong"
UNRELIABLE_SCALE = "unreliable: input scale"
UNRELIABLE_PRECISION = "unreliable: float precision"
STEP_FACTOR = 10.0  # the other steps tried: h * 10 and h / 10


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # GRADIENT_WRONG, UNRELIABLE_SCALE or UNRELIABLE_PRECISION
    text: str  # in words, for the user


def diagnose(
    reports: dict[float, GradCheckReport], input_warnings: list[str] | tuple[str, ...]
) -> Diagnosis | None:
    """Why a check at the first step of `reports` (by step h) failed, or None if it passed.

    A wrong gradient is wrong at every step: its error stays put when h changes. Rounding
    error grows as h shrinks and truncation error as h grows, so an error that swings by
    100x across steps, or vanishes at one of them, is the check's own imprecision. Inputs
    far from unit scale make both worse: then the check says so, not that the code is wrong.
    """
    steps = list(reports)
    first = reports[steps[0]]
    failing = [c for c in first.checks if verdict(c.max_error) in (UNCOMFORTABLE, WRONG)]
    if not failing:
        return None
    names = ", ".join(f"{c.phase} {c.name}" for c in failing)
    if input_warnings:
        return Diagnosis(
            UNRELIABLE_SCALE,
            f"the check of {names} is unreliable, not a sign of a wrong gradient: "
            f"{input_warnings[0]}",
        )
    swings = []
    for check in failing:
        errors = [
            next(c.max_error for c in r.checks if (c.phase, c.name) == (check.phase, check.name))
            for r in reports.values()
        ]
        low, high = min(errors), max(errors)
        swings.append(verdict(low) in (GOOD, OKAY) or high > 100 * max(low, TINY))
    if all(swings):
        tried = ", ".join(f"{h:g}" for h in steps)
        return Diagnosis(
            UNRELIABLE_PRECISION,
            f"the error of {names} changes with the step h ({tried}): float precision, not "
            f"the gradient, limits this check; a wrong gradient is wrong at every step",
        )
    return Diagnosis(
        GRADIENT_WRONG,
        f"the analytic gradient of {names} disagrees with the numerical one at every step "
        f"tried: the gradient code is wrong",
    )
