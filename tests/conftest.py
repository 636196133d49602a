"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from core.data import Dataset, load_dataset


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits64() -> Dataset:
    return load_dataset("digits", dtype="float64")
