from __future__ import annotations

import math

import pytest

from core.config import TrainConfig
from core.schedules import lr_at


def test_step_decay_changes_only_at_every_lr_step_epochs() -> None:
    config = TrainConfig(learning_rate=1.0, lr_schedule="step", lr_decay=0.5, lr_step=2)
    assert [lr_at(t, config) for t in (0, 1.9, 2, 3.5, 4)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_step_decay_with_a_fractional_step_does_not_lag() -> None:
    config = TrainConfig(learning_rate=1.0, lr_schedule="step", lr_decay=0.5, lr_step=0.1)
    assert lr_at(0.3, config) == pytest.approx(0.125)


def test_exponential_and_inverse_time_decay() -> None:
    exp = TrainConfig(learning_rate=0.1, lr_schedule="exp", lr_k=0.5)
    inv = TrainConfig(learning_rate=0.1, lr_schedule="inv", lr_k=0.5)
    assert lr_at(3.0, exp) == pytest.approx(0.1 * math.exp(-1.5))
    assert lr_at(3.0, inv) == pytest.approx(0.1 / 2.5)
    assert lr_at(0.0, exp) == lr_at(0.0, inv) == 0.1
