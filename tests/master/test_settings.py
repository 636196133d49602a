"""Timing settings are checked against each other when a service starts, with messages that
name the variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from master.settings import Settings
from worker.settings import WorkerSettings


def test_the_defaults_are_in_order() -> None:
    settings = Settings()
    assert settings.reconcile_seconds < 5 < settings.scheduler_lease_seconds
    assert WorkerSettings().heartbeat_ttl_seconds == 30


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"reconcile_seconds": 5.0}, "HPSEARCH_RECONCILE_SECONDS (5) must be below"),
        (
            {"reconcile_seconds": 2.0, "scheduler_lease_seconds": 4.0},
            "HPSEARCH_SCHEDULER_LEASE_SECONDS (4) must be over twice",
        ),
    ],
)
def test_timings_out_of_order_are_refused_naming_them(values: dict[str, float], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings(**values)  # type: ignore[arg-type]


def test_a_worker_heartbeat_shorter_than_a_few_renewals_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HPSEARCH_HEARTBEAT_TTL_SECONDS", "2")
    with pytest.raises(ValidationError, match="HPSEARCH_HEARTBEAT_TTL_SECONDS"):
        WorkerSettings()
