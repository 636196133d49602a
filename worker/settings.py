"""A worker's settings: all it needs is Redis and the checkpoint volume (DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.data import dataset_folders
from core.messages import LEASE_RENEW_SECONDS


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL")
    )
    checkpoint_dir: Path = Field(
        default=Path("hpsearch-data/checkpoints"), validation_alias=AliasChoices("CHECKPOINT_DIR")
    )
    queue: str = Field(default="hpsearch", validation_alias=AliasChoices("HPSEARCH_QUEUE"))
    data_dir: Path = Field(
        default=Path("hpsearch-data"), validation_alias=AliasChoices("HPSEARCH_DATA_DIR")
    )
    # The folders datasets may be read from (master.settings.dataset_dirs: the same rule).
    dataset_dirs_setting: str = Field(
        default="", validation_alias=AliasChoices("HPSEARCH_DATASET_DIRS")
    )
    # RQ's expiry of this worker's heartbeat and of its running job's registry entry; the
    # lease thread renews both every LEASE_RENEW_SECONDS, so it must leave room for a few
    # missed renewals. Tests shrink it to outlive it quickly.
    heartbeat_ttl_seconds: int = Field(
        default=30,
        ge=3 * LEASE_RENEW_SECONDS,
        validation_alias=AliasChoices("HPSEARCH_HEARTBEAT_TTL_SECONDS"),
    )

    @property
    def dataset_dirs(self) -> list[Path]:
        return dataset_folders(self.dataset_dirs_setting, self.data_dir)
