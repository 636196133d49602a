"""Timing settings are checked against each other when a service starts, with messages that
name the variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from master.settings import ClientSettings, Settings
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


def test_every_process_finds_the_checkpoints_in_the_same_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The worker's default used to be ./hpsearch-data/checkpoints whatever HPSEARCH_DATA_DIR
    # said, while the master and dashboard looked under the data directory.
    monkeypatch.delenv("CHECKPOINT_DIR", raising=False)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path))
    folders = {s().checkpoint_dir for s in (WorkerSettings, Settings, ClientSettings)}
    assert folders == {tmp_path / "checkpoints"}
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "volume"))
    folders = {s().checkpoint_dir for s in (WorkerSettings, Settings, ClientSettings)}
    assert folders == {tmp_path / "volume"}


def test_clients_take_the_url_option_over_hpsearch_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPSEARCH_URL", "http://master:9000/")
    assert ClientSettings().api() == "http://master:9000"
    assert ClientSettings().api("http://other:8000") == "http://other:8000"
