"""Every setting of the master, workers and dashboard: environment variables, read once.

Defaults make `hpsearch up` work with nothing set: a data directory under the current one
holds the SQLite database and the checkpoints. The names are the ones DESIGN.md gives
(REDIS_URL, DATABASE_URL, CHECKPOINT_DIR, HPSEARCH_API_TOKEN); the rest carry HPSEARCH_.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("hpsearch-data")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    # Empty means SQLite under the data directory.
    database_url: str = Field(default="", validation_alias=_env("DATABASE_URL"))
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validation_alias=_env("HPSEARCH_DATA_DIR"))
    # Empty means <data_dir>/checkpoints.
    checkpoint_dir_setting: str = Field(default="", validation_alias=_env("CHECKPOINT_DIR"))
    api_token: str = Field(default="", validation_alias=_env("HPSEARCH_API_TOKEN"))
    queue: str = Field(default="hpsearch", validation_alias=_env("HPSEARCH_QUEUE"))
    max_trials: int = Field(default=10_000, ge=1, validation_alias=_env("HPSEARCH_MAX_TRIALS"))
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, validation_alias=_env("HPSEARCH_MAX_BODY_BYTES")
    )
    # Seconds between the scheduler's passes over RQ (re-queue, clean-up, dead workers).
    reconcile_seconds: float = Field(
        default=2.0, gt=0, validation_alias=_env("HPSEARCH_RECONCILE_SECONDS")
    )

    @cached_property
    def checkpoint_dir(self) -> Path:
        if self.checkpoint_dir_setting:
            return Path(self.checkpoint_dir_setting)
        return self.data_dir / "checkpoints"

    @cached_property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hpsearch.db').resolve()}"
