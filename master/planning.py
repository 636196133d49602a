"""Planning the next stage of a sweep from the results of the last one: coarse to fine.

For every numeric hyperparameter of the space, in the scale it is searched in (log10 for
log ranges), the next range spans the values of the `keep_top` best finished trials, padded
by MARGIN of that span plus FLOOR of the current range's width, and clipped to the current
range. Choices keep the values the top trials used.

Best on the border (the notes: "careful with best values on border"): when the best trial
lies in the outer BORDER share of the current range, on a side where that range reaches the
user's own bound (or beyond it, after an earlier widening), the next range is instead centred
on the best value, so that half of it lies beyond the border; the stage records a warning in
plain words. Widening never leaves the values the trainer can train with (TrainConfig, or a
user trainer's declaration, decides).

Exploded, failed and stopped trials never count as top trials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.config import ConfigError, TrainConfig
from master.models import TrialStatus
from master.space import Choice, NumericRange, Space, format_number

# Raises core.config.ConfigError for hyperparameters the sweep's trainer cannot train with.
Check = Callable[[dict[str, Any]], object]
MARGIN = 0.25  # padding around the top trials' span, as a share of that span
FLOOR = 0.05  # and a share of the current width, so that equal values still leave a range
BORDER = 0.10  # the outer share of a range that counts as "on the border"
MIN_WIDTH = 0.20  # a re-centred range is at least this share of the current width
VALIDITY_TRIES = 30  # halvings of a widening step before giving up on that side


@dataclass(frozen=True)
class TrialResult:
    hyperparameters: dict[str, Any]
    status: TrialStatus  # only finished trials can be top trials
    val_acc: float | None
    epochs: float = 0.0


@dataclass(frozen=True)
class StagePlan:
    space: Space
    top: list[TrialResult]
    warnings: list[str] = field(default_factory=list)


def default_keep_top(previous_trials: int) -> int:
    """When a stage does not say: the best fifth of the previous stage, at least one trial."""
    return max(1, previous_trials // 5)


def top_trials(results: Sequence[TrialResult], keep_top: int) -> list[TrialResult]:
    """The best finished trials: highest validation accuracy, ties to more epochs trained."""
    finished = [r for r in results if r.status == TrialStatus.FINISHED and r.val_acc is not None]
    return sorted(finished, key=lambda r: (-(r.val_acc or 0.0), -r.epochs))[:keep_top]


def plan_next_stage(
    current: Mapping[str, NumericRange | Choice],
    user: Mapping[str, NumericRange | Choice],
    results: Sequence[TrialResult],
    keep_top: int,
    base: Mapping[str, Any],
    stage_index: int,
    check: Check = TrainConfig.from_dict,
) -> StagePlan:
    """The space of stage `stage_index + 1`, from the `results` of stage `stage_index`;
    `check` raises ConfigError for hyperparameters the sweep's trainer cannot train with."""
    top = top_trials(results, keep_top)
    if not top:
        unchanged = (
            f"no trial of stage {stage_index} finished, so stage {stage_index + 1} "
            "samples the same ranges"
        )
        return StagePlan(dict(current), [], [unchanged])
    space: Space = {}
    warnings: list[str] = []
    for name, dist in current.items():
        if isinstance(dist, Choice):
            seen = {repr(r.hyperparameters[name]) for r in top}
            space[name] = Choice(values=[v for v in dist.values if repr(v) in seen])
            continue
        user_dist = user[name]
        assert not isinstance(user_dist, Choice)
        space[name], warning = _plan_range(name, dist, user_dist, top, base, check)
        if warning:
            warnings.append(warning)
    return StagePlan(space, top, warnings)


def space_hull(spaces: Sequence[Mapping[str, NumericRange | Choice]]) -> Space:
    """The smallest space that holds every one of `spaces` (the same hyperparameters in
    each): per range the lowest low and the highest high, per choice every value used."""
    hull: Space = {}
    for name, first in spaces[0].items():
        dists = [space[name] for space in spaces]
        if isinstance(first, Choice):
            values = [v for d in dists if isinstance(d, Choice) for v in d.values]
            hull[name] = Choice(values=list({repr(v): v for v in values}.values()))
        else:
            ranges = [d for d in dists if not isinstance(d, Choice)]
            hull[name] = first.with_bounds(min(d.low for d in ranges), max(d.high for d in ranges))
    return hull


def _plan_range(
    name: str,
    dist: NumericRange,
    user: NumericRange,
    top: list[TrialResult],
    base: Mapping[str, Any],
    check: Check,
) -> tuple[NumericRange, str | None]:
    low, high = dist.to_scale(dist.low), dist.to_scale(dist.high)
    width = high - low
    values = [dist.to_scale(r.hyperparameters[name]) for r in top]
    best = values[0]
    pad = MARGIN * (max(values) - min(values)) + FLOOR * width
    new_low, new_high = max(low, min(values) - pad), min(high, max(values) + pad)

    side = _border_side(dist, best)
    if side is None or not _reaches_user_bound(dist, user, side):
        return _bounded(dist, new_low, new_high), None
    half = max(new_high - new_low, MIN_WIDTH * width) / 2
    if side == "top":
        new_low, new_high = best - half, _valid(name, dist, high, best + half, base, check)
    else:
        new_low, new_high = _valid(name, dist, low, best - half, base, check), best + half
    planned = _bounded(dist, new_low, new_high)
    best_value = top[0].hyperparameters[name]
    warning = (
        f"best {name} {format_number(best_value)} is at the {side} of {dist.describe()}: "
        f"the next stage widened it to {planned.describe()}"
    )
    if (side == "top" and planned.high <= dist.high) or (
        side == "bottom" and planned.low >= dist.low
    ):
        warning = (
            f"best {name} {format_number(best_value)} is at the {side} of {dist.describe()}, "
            f"the {'largest' if side == 'top' else 'smallest'} value a trial can use: "
            f"the next stage searches {planned.describe()}"
        )
    return planned, warning


def final_border_warnings(
    current: Mapping[str, NumericRange | Choice],
    user: Mapping[str, NumericRange | Choice],
    best: Mapping[str, Any],
) -> list[str]:
    """Where the best trial of a sweep's last stage sits on a border of that stage's range
    (the notes: "double check that the final learning rate is not at the edge of this
    interval"): no stage follows to widen it, so the sweep says so."""
    warnings = []
    for name, dist in current.items():
        if isinstance(dist, Choice) or name not in best:
            continue
        side = _border_side(dist, dist.to_scale(best[name]))
        if side is None:
            continue
        user_dist = user.get(name)
        yours = isinstance(user_dist, NumericRange) and _reaches_user_bound(dist, user_dist, side)
        where = "the edge of the range you gave" if yours else "the final stage's range"
        warnings.append(
            f"best {name} {format_number(best[name])} is at the {side} of {dist.describe()}, "
            f"{where}: a better value may lie beyond it; search again with the range "
            f"moved past that edge"
        )
    return warnings


def _border_side(dist: NumericRange, value: float) -> Literal["top", "bottom"] | None:
    """Which border of `dist` the value (in the range's scale) lies on: within the outer
    BORDER share of the range's width at either end."""
    low, high = dist.to_scale(dist.low), dist.to_scale(dist.high)
    if value >= high - BORDER * (high - low):
        return "top"
    if value <= low + BORDER * (high - low):
        return "bottom"
    return None


def _reaches_user_bound(dist: NumericRange, user: NumericRange, side: str) -> bool:
    """Whether this side of `dist` is at the user's own bound, or beyond it after widening."""
    if side == "top":
        return dist.to_scale(dist.high) >= user.to_scale(user.high)
    return dist.to_scale(dist.low) <= user.to_scale(user.low)


def _valid(
    name: str,
    dist: NumericRange,
    edge: float,
    target: float,
    base: Mapping[str, Any],
    check: Check,
) -> float:
    """`target` (in scale), or the farthest point toward it from `edge` that the trainer
    accepts."""
    step = target - edge
    for _ in range(VALIDITY_TRIES):
        candidate = edge + step
        value = dist.from_scale(candidate)
        if dist.is_int:
            value = round(value)
        try:
            check({**base, name: value})
            return candidate
        except ConfigError:
            step /= 2
    return edge


def _bounded(dist: NumericRange, low: float, high: float) -> NumericRange:
    planned = dist.with_bounds(dist.from_scale(low), dist.from_scale(high))
    if planned.low >= planned.high:  # integer ranges can collapse when rounded
        planned = planned.model_copy(update={"high": planned.low + 1})
    return planned
