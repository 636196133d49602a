"""Budget mode: laying out a sweep's stages from a budget of training epochs.

Successive halving with lossless promotion, narrowed coarse to fine. The stages train for
min_epochs, min_epochs x reduction, ... up to max_epochs (whole epochs, so that a trial can
be trained on exactly). The trials of the first, shortest rung are drawn in three stages: a
third in the user's ranges, a third in ranges narrowed around the best tenth of those, and
the rest narrowed around the best tenth of both (the notes' coarse to fine, twice, at the
cheapest epochs: random draws over the whole space rarely land in the good region, and
TPE's concentration there was what Optuna had over a single wide stage; the second
narrowing can move past the first's border where the first's best sat on it). Every later
stage trains the best 1/reduction of the rung before on from their checkpoints, which costs
only the epochs they add, and narrows the ranges around them (master.planning) for the few
new trials it samples there. The first rung's stages are ranked together (master.sweeps.rung):
a good trial of the wide part goes on even when a narrowing was misled by early results.
The epochs left over once the widest first rung fits go to new trials of the latest stages
that they pay for, so that the plan spends the budget to within a first-stage trial's epochs.

A stage's cost: new trials train all its epochs, promoted ones the difference to the stage
before. Explosions only make a sweep cheaper than planned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FIRST_STAGE_SHARE = 27  # default min_epochs: max_epochs / 27 (three reductions by 3)
REFINE_SHARE = 10  # each later part of the first rung narrows around the best tenth before it
MIN_PART = 6  # trials in a part of the first rung at the least (fewer: fewer parts)
MAX_PARTS = 3  # wide, narrowed, narrowed again


@dataclass(frozen=True)
class PlannedStage:
    trials: int
    epochs: int
    promote: int = 0
    keep_top: int | None = None

    def cost(self, previous_epochs: int) -> int:
        new = self.trials - self.promote
        return new * self.epochs + self.promote * (self.epochs - previous_epochs)


def rungs(max_epochs: int, min_epochs: int | None, reduction: float) -> list[int]:
    """The epochs of each stage, fewest first: max_epochs divided by reduction again and
    again, rounded to whole epochs, while they stay at or above min_epochs."""
    floor = min_epochs if min_epochs is not None else max(1, round(max_epochs / FIRST_STAGE_SHARE))
    epochs = [max_epochs]
    while True:
        following = round(epochs[-1] / reduction)
        if following < floor or following >= epochs[-1]:
            break
        epochs.append(following)
    if epochs[-1] > floor and min_epochs is not None:
        epochs.append(floor)  # the user asked for this first stage
    return sorted(set(epochs))


def lay_out(
    budget: int,
    max_epochs: int,
    min_epochs: int | None = None,
    reduction: float = 3.0,
    parallel: int = 1,
) -> list[PlannedStage]:
    """Stages whose planned epochs add up to at most `budget`, the finalists at max_epochs.

    The finalists, and the stage before them, are a multiple of `parallel` (the trials that
    run at once) where the budget allows: the last stage has no next one to start early, and
    3 finalists on 2 workers would leave one idle for a whole finalist's training; 9 trials
    before 4 finalists on 2 workers start the finalists one trial apart, and that offset is
    most of the sweep's tail (one worker idle while the other trains the last finalist; in
    42 s budget sweeps a median of 1.6 s over 10 sweeps, against 1.1 s with 10 before them)."""
    epochs = rungs(max_epochs, min_epochs, reduction)
    best = _halving(1, epochs, reduction, 1)  # one trial all along: max_epochs <= budget
    for group in sorted({parallel, 1}, reverse=True):
        # The widest first stage that fits (more of it is what finds the good region); the
        # cost grows with the first stage, so bisect.
        low, high = 1, budget // epochs[0]
        while low < high:
            middle = (low + high + 1) // 2
            if total_cost(_halving(middle, epochs, reduction, group)) <= budget:
                low = middle
            else:
                high = middle - 1
        if low >= 2:
            return _split_first(_spend_rest(_halving(low, epochs, reduction, group), budget, group))
    return _split_first(_spend_rest(best, budget, 1))


def _split_first(stages: list[PlannedStage]) -> list[PlannedStage]:
    """The first stage as up to three of the same epochs and cost: a third of its trials in
    its ranges, a third narrowed around the best tenth of those, the rest narrowed around the
    best tenth of both (master.sweeps plans a stage from its whole rung); the next stage ranks
    all of them together and promotes from any. Only where a stage follows, and each part
    MIN_PART trials at least."""
    first = stages[0]
    parts = min(MAX_PARTS, first.trials // MIN_PART)
    if len(stages) < 2 or parts < 2:
        return stages
    size = first.trials // parts
    split = [PlannedStage(trials=size, epochs=first.epochs)]
    for k in range(1, parts):
        trials = size if k < parts - 1 else first.trials - size * (parts - 1)
        keep_top = max(1, round(size * k / REFINE_SHARE))
        split.append(PlannedStage(trials=trials, epochs=first.epochs, keep_top=keep_top))
    return [*split, *stages[1:]]


def _halving(first: int, epochs: list[int], reduction: float, group: int) -> list[PlannedStage]:
    stages = [PlannedStage(trials=first, epochs=epochs[0])]
    for k, e in enumerate(epochs[1:], start=1):
        kept = max(1, math.ceil(stages[-1].trials / reduction))
        if k >= len(epochs) - 2:  # the last two stages in whole groups, if there are enough
            kept = min(stages[-1].trials, math.ceil(kept / group) * group)
        stages.append(PlannedStage(trials=kept, epochs=e, promote=kept, keep_top=kept))
    return stages


def _spend_rest(stages: list[PlannedStage], budget: int, group: int) -> list[PlannedStage]:
    """Spend what is left on new trials in the narrowed ranges, latest stage first: they are
    trained longest on the best-informed ranges (the finalists only in whole groups)."""
    stages = list(stages)
    for k in range(len(stages) - 1, 0, -1):
        left = budget - total_cost(stages)
        unit = group if k >= len(stages) - 2 else 1
        extra = left // (stages[k].epochs * unit) * unit
        if extra > 0:
            s = stages[k]
            stages[k] = PlannedStage(s.trials + extra, s.epochs, s.promote, s.keep_top)
    left = budget - total_cost(stages)
    if left >= stages[0].epochs:
        s = stages[0]
        stages[0] = PlannedStage(s.trials + left // s.epochs, s.epochs)
    return stages


def total_cost(stages: list[PlannedStage]) -> int:
    """The epochs a layout trains if every trial runs its stage to the end."""
    cost, previous = 0, 0
    for stage in stages:
        cost += stage.cost(previous)
        previous = stage.epochs
    return cost
