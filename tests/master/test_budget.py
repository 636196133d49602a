"""Budget mode's layout: the planned epochs spend the budget, the finalists reach max_epochs."""

from __future__ import annotations

import math

import pytest

from master.budget import REFINE_SHARE, PlannedStage, _split_first, lay_out, rungs, total_cost


def rung_trials(stages: list[PlannedStage], epochs: int) -> int:
    return sum(s.trials for s in stages if s.epochs == epochs)


@pytest.mark.parametrize("reduction", [2.0, 3.0, 4.0])
@pytest.mark.parametrize("max_epochs", [1, 3, 10, 27, 80, 200])
@pytest.mark.parametrize("factor", [4, 5, 10, 37, 125])
def test_a_layout_spends_the_budget_within_5_percent(
    reduction: float, max_epochs: int, factor: int
) -> None:
    budget = factor * max_epochs
    stages = lay_out(budget, max_epochs, None, reduction)
    assert 0.95 * budget <= total_cost(stages) <= budget
    assert stages[-1].epochs == max_epochs and stages[0].promote == 0
    for before, stage in zip(stages, stages[1:], strict=False):
        if stage.epochs == before.epochs:  # a narrowed part of the first rung
            assert stage in stages[1:3] and stage.promote == 0 and stage.keep_top
            continue
        assert stage.epochs > before.epochs and stage.epochs == int(stage.epochs)
        ranked = rung_trials(stages, int(before.epochs))  # every part of the first rung
        assert 1 <= stage.promote <= min(stage.trials, ranked)
        # the best 1/reduction of the rung before
        assert stage.promote <= math.ceil(rung_trials(stages, int(before.epochs)) / reduction)


def test_the_stages_divide_max_epochs_by_the_reduction_down_to_min_epochs() -> None:
    assert rungs(80, None, 3.0) == [3, 9, 27, 80]
    assert rungs(80, 1, 3.0) == [1, 3, 9, 27, 80]
    assert rungs(80, 5, 2.0) == [5, 10, 20, 40, 80]
    assert rungs(10, 10, 3.0) == [10]


def test_the_issue_example_budget() -> None:
    stages = lay_out(800, 80)
    assert [(s.trials, s.epochs, s.promote, s.keep_top) for s in stages] == [
        (27, 3, 0, None), (27, 3, 0, 3), (27, 3, 0, 5), (29, 9, 27, 27), (11, 27, 9, 9),
        (3, 80, 3, 3),
    ]  # fmt: skip
    assert total_cost(stages) == 798


def test_the_first_rung_narrows_twice_around_the_best_tenth_of_what_came_before() -> None:
    wide, narrowed, again, promoting, *_ = lay_out(800, 80, parallel=2)
    assert wide.epochs == narrowed.epochs == again.epochs == 3
    assert (wide.trials, narrowed.trials, again.trials) == (27, 27, 28)
    assert narrowed.keep_top == round(27 / REFINE_SHARE)
    assert again.keep_top == round(54 / REFINE_SHARE)
    assert narrowed.promote == again.promote == 0
    # ranked with the wide part: about the best third of all three (27 of 82)
    assert abs(promoting.promote - (wide.trials + narrowed.trials + again.trials) / 3) <= 1


@pytest.mark.parametrize(("first", "parts"), [(11, 1), (12, 2), (17, 2), (18, 3), (200, 3)])
def test_a_first_rung_has_parts_of_six_trials_at_least(first: int, parts: int) -> None:
    laid = [PlannedStage(trials=first, epochs=1), PlannedStage(2, 3, promote=2, keep_top=2)]
    split = _split_first(laid)
    assert len(split) == parts + 1 and sum(s.trials for s in split[:parts]) == first
    assert all(s.trials >= 6 for s in split[:parts])


def test_a_first_rung_too_small_to_halve_stays_one_stage() -> None:
    stages = lay_out(30, 10)  # 11 x 1 epoch first
    assert stages[0].trials < 12 and stages[1].epochs > stages[0].epochs, stages


def test_the_readme_claim_every_max_epochs_up_to_100() -> None:
    """Within 5% whenever the budget is at least 4x max_epochs and 20 epochs."""
    for max_epochs in range(1, 101):
        for budget in {4 * max_epochs, 4 * max_epochs + 1, 7 * max_epochs + 3, 20, 21}:
            if budget < max(4 * max_epochs, 20):
                continue
            for reduction in (2.0, 3.0, 4.0):
                cost = total_cost(lay_out(budget, max_epochs, None, reduction))
                assert 0.95 * budget <= cost <= budget, (budget, max_epochs, reduction, cost)


@pytest.mark.parametrize("parallel", [2, 3, 4])
def test_the_finalists_and_the_stage_before_them_fill_whole_groups_of_workers(
    parallel: int,
) -> None:
    stages = lay_out(800, 80, parallel=parallel)
    assert [s.epochs for s in stages] == [3, 3, 3, 9, 27, 80]
    for stage in stages[-2:]:
        assert stage.trials % parallel == 0, stages
    assert 0.95 * 800 <= total_cost(stages) <= 800


def test_the_issue_example_budget_on_two_workers() -> None:
    stages = lay_out(800, 80, parallel=2)
    assert [(s.trials, s.epochs, s.promote) for s in stages] == [
        (27, 3, 0), (27, 3, 0), (28, 3, 0), (27, 9, 27), (10, 27, 10), (4, 80, 4),
    ]  # fmt: skip
    assert total_cost(stages) == 800
