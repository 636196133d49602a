"""Stage planning: narrowing around the top trials, and widening when the best is on a border."""

from __future__ import annotations

import math

import pytest

from master.planning import (
    default_keep_top,
    final_border_warnings,
    plan_next_stage,
    space_hull,
    top_trials,
)
from master.space import Choice, IntRange, LogUniform, Space, Uniform
from tests.master.factories import result

LR = LogUniform(low=1e-6, high=10)
SPACE: Space = {
    "learning_rate": LR,
    "dropout": Uniform(low=0.0, high=0.5),
    "update": Choice(values=["momentum", "nesterov", "adam"]),
}


def test_only_finished_trials_are_top_and_ties_go_to_more_epochs() -> None:
    results = [
        result(0.9, "exploded", learning_rate=1.0),
        result(None, "failed", learning_rate=1.0),
        result(0.95, "stopped", learning_rate=1.0),
        result(0.8, epochs=1, learning_rate=1e-3),
        result(0.8, epochs=5, learning_rate=2e-3),
        result(0.7, learning_rate=1e-4),
    ]
    top = top_trials(results, 2)
    assert [t.hyperparameters["learning_rate"] for t in top] == [2e-3, 1e-3]
    assert default_keep_top(60) == 12 and default_keep_top(3) == 1


def test_the_hull_of_a_rung_spans_every_stage_range_and_choice() -> None:
    narrowed: Space = {
        "learning_rate": LogUniform(low=1e-7, high=1e-5),  # widened past the user's 1e-6
        "dropout": Uniform(low=0.1, high=0.2),
        "update": Choice(values=["adam", "momentum"]),
        "batch_size": IntRange(low=40, high=60),
    }
    wide = {**SPACE, "batch_size": IntRange(low=50, high=200)}
    assert space_hull([wide, narrowed]) == {
        "learning_rate": LogUniform(low=1e-7, high=10),
        "dropout": Uniform(low=0.0, high=0.5),
        "update": Choice(values=["momentum", "nesterov", "adam"]),
        "batch_size": IntRange(low=40, high=200),
    }
    assert space_hull([narrowed]) == narrowed


def test_narrows_in_log_space_around_the_top_trials() -> None:
    results = [
        result(0.9 - i / 100, learning_rate=lr, dropout=0.2, update="adam")
        for i, lr in enumerate([1e-3, 3e-3, 1e-2])
    ]
    results += [result(0.1, learning_rate=1e-6, dropout=0.4, update="momentum")]
    plan = plan_next_stage(SPACE, SPACE, results, keep_top=3, base={}, stage_index=0)
    lr = plan.space["learning_rate"]
    assert isinstance(lr, LogUniform)
    # span of the top three is 1 decade [-3, -2]; padded by 0.25 of it + 0.05 of 7 decades
    assert math.log10(lr.low) == pytest.approx(-3 - 0.25 - 0.35)
    assert math.log10(lr.high) == pytest.approx(-2 + 0.25 + 0.35)
    assert plan.space["update"] == Choice(values=["adam"])
    assert plan.warnings == []


@pytest.mark.parametrize(
    ("side", "best", "shown"), [("top", 9.1, "9.1"), ("bottom", 1.3e-6, "1.30e-06")]
)
def test_best_on_a_user_border_widens_outward_and_says_so(
    side: str, best: float, shown: str
) -> None:
    results = [
        result(0.95, learning_rate=best, dropout=0.2, update="adam"),
        result(0.90, learning_rate=1e-2, dropout=0.2, update="adam"),
    ]
    plan = plan_next_stage(SPACE, SPACE, results, keep_top=2, base={}, stage_index=0)
    lr = plan.space["learning_rate"]
    assert isinstance(lr, LogUniform)
    if side == "top":
        assert lr.high > LR.high and lr.low > LR.low
    else:
        assert lr.low < LR.low and lr.high < LR.high
    assert lr.low < best < lr.high
    assert len(plan.warnings) == 1
    assert plan.warnings[0] == (
        f"best learning_rate {shown} is at the {side} of [1.00e-06, 10]: "
        f"the next stage widened it to {lr.describe()}"
    )


def test_a_border_of_a_narrowed_range_does_not_widen_past_it() -> None:
    stage_two: Space = {"learning_rate": LogUniform(low=1e-4, high=1e-2)}  # narrowed by us
    results = [result(0.9, learning_rate=9.5e-3), result(0.8, learning_rate=1e-3)]
    user: Space = {"learning_rate": LR}
    plan = plan_next_stage(stage_two, user, results, 2, {}, 1)
    lr = plan.space["learning_rate"]
    assert isinstance(lr, LogUniform)
    assert lr.high <= 1e-2 and plan.warnings == []


def test_widening_stays_within_what_a_trial_can_use() -> None:
    space: Space = {"dropout": Uniform(low=0.0, high=0.99)}
    results = [result(0.9, dropout=0.97), result(0.8, dropout=0.9)]
    plan = plan_next_stage(space, space, results, 2, {}, 0)
    dropout = plan.space["dropout"]
    assert isinstance(dropout, Uniform)
    assert 0.99 < dropout.high < 1.0  # widened, but dropout must stay below 1
    low_space: Space = {"dropout": Uniform(low=0.0, high=0.5)}
    plan = plan_next_stage(low_space, low_space, [result(0.9, dropout=0.001)], 1, {}, 0)
    assert plan.space["dropout"].low == 0.0  # type: ignore[union-attr]
    assert "the smallest value a trial can use" in plan.warnings[0]


def test_integer_ranges_stay_integer_and_non_empty() -> None:
    space: Space = {"batch_size": IntRange(low=10, high=500)}
    results = [result(0.9, batch_size=100), result(0.85, batch_size=100)]
    planned = plan_next_stage(space, space, results, 2, {}, 0).space["batch_size"]
    assert isinstance(planned, IntRange)
    assert isinstance(planned.low, int) and planned.low < 100 < planned.high


def test_no_finished_trial_keeps_the_ranges_and_warns() -> None:
    results = [result(None, "exploded", learning_rate=1.0)]
    plan = plan_next_stage(SPACE, SPACE, results, 5, {}, 0)
    assert plan.space == SPACE
    assert plan.warnings == ["no trial of stage 0 finished, so stage 1 samples the same ranges"]


def test_the_final_border_check_names_the_range_and_whose_edge_it_is() -> None:
    user: Space = {
        "learning_rate": LogUniform(low=1e-4, high=1e-1),
        "dropout": Uniform(low=0, high=0.5),
    }
    final: Space = {
        "learning_rate": LogUniform(low=1e-3, high=1e-1),
        "dropout": Uniform(low=0.1, high=0.3),
    }
    warnings = final_border_warnings(final, user, {"learning_rate": 0.09, "dropout": 0.11})
    assert warnings == [
        "best learning_rate 0.09 is at the top of [0.001, 0.1], the edge of the range you "
        "gave: a better value may lie beyond it; search again with the range moved past that edge",
        "best dropout 0.11 is at the bottom of [0.1, 0.3], the final stage's range: a better "
        "value may lie beyond it; search again with the range moved past that edge",
    ]
    assert final_border_warnings(final, user, {"learning_rate": 0.01, "dropout": 0.2}) == []
