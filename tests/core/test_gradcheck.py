from __future__ import annotations

import numpy as np
import pytest

from core.gradcheck import centered_difference, relative_error, verdict


def test_relative_error_formula_and_the_both_zero_case() -> None:
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1e-30, 1e-30) == 0.0
    assert relative_error(1.0, 1.02) == pytest.approx(0.02 / 2.02)
    assert relative_error(0.0, 1e-3) == 1.0


@pytest.mark.parametrize(
    ("error", "band"),
    [
        (0.5, "wrong"),
        (2e-2, "wrong"),
        (1e-3, "uncomfortable"),
        (1e-5, "okay"),
        (1e-7, "okay"),
        (5e-8, "good"),
        (0.0, "good"),
    ],
)
def test_verdict_bands_follow_the_notes(error: float, band: str) -> None:
    assert verdict(error) == band


def test_centered_difference_restores_the_input() -> None:
    x = np.array([1.0, 2.0, 3.0])
    numerical = centered_difference(lambda: float(np.sum(x**3)), x, (1,), 1e-5)
    assert numerical == pytest.approx(12.0, rel=1e-8)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
