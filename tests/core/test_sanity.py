from __future__ import annotations

import pytest

from core.config import TrainConfig
from core.data import Dataset
from core.sanity import check_chance_loss, check_overfit_tiny_subset, run_sanity_checks


@pytest.mark.parametrize("loss", ["softmax", "svm"])
@pytest.mark.parametrize("hidden", [(100,), (50, 50, 50)])
@pytest.mark.parametrize("learning_rate", [0.1, 1e-6])  # the overfit check does not depend on it
def test_sanity_checks_pass_on_digits(
    digits: Dataset, loss: str, hidden: tuple[int, ...], learning_rate: float
) -> None:
    config = TrainConfig(loss=loss, hidden_sizes=hidden, learning_rate=learning_rate)
    checks = run_sanity_checks(digits, config)
    assert [c.name for c in checks] == [
        "initial loss at chance",
        "loss rises with reg",
        "overfit 20 examples",
    ]
    assert all(c.passed for c in checks), checks


def test_chance_loss_reports_the_expected_value(digits: Dataset) -> None:
    svm = check_chance_loss(digits, TrainConfig(loss="svm"))
    assert svm.expected.startswith("10 - 1 = 9.000000")
    assert abs(float(svm.measured) - 9.0) < 0.01


def test_overfitting_fails_when_the_model_cannot_fit(digits: Dataset) -> None:
    result = check_overfit_tiny_subset(digits, TrainConfig(hidden_sizes=(1,)))  # 1 unit, 10 classes
    assert not result.passed
    assert "train acc" in result.measured
