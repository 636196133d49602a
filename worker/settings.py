"""Settings, read once from environment variables: the base every process of hpsearch
shares, and a worker's own.

SharedSettings holds what every service and client must agree on: Redis, the checkpoint
volume, the dataset folders, the queue and the API token. The master's, the dashboard's
and the CLI clients' settings (master.settings) extend it, so a variable means the same
thing, and defaults the same way, in every process: a worker and a master started apart
with only HPSEARCH_DATA_DIR set use the same checkpoint folder. It lives here because a
worker needs nothing of the master (DESIGN.md), while the master may import this module.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.data import dataset_folders
from core.messages import LEASE_RENEW_SECONDS

DEFAULT_DATA_DIR = Path("hpsearch-data")


def env(name: str) -> AliasChoices:
    """A setting read from the variable `name` (or its lower-case spelling)."""
    return AliasChoices(name, name.lower())


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=env("REDIS_URL"))
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validation_alias=env("HPSEARCH_DATA_DIR"))
    # Empty means <data_dir>/checkpoints.
    checkpoint_dir_setting: str = Field(default="", validation_alias=env("CHECKPOINT_DIR"))
    # Folders datasets may be read from, separated by ":"; empty means <data_dir>/datasets.
    dataset_dirs_setting: str = Field(default="", validation_alias=env("HPSEARCH_DATASET_DIRS"))
    queue: str = Field(default="hpsearch", validation_alias=env("HPSEARCH_QUEUE"))
    # User trainers that are not packaged, "name=module:attr,..." (core.registry): read by
    # the processes that train or load their models (workers, predict).
    trainers_setting: str = Field(default="", validation_alias=env("HPSEARCH_TRAINERS"))
    # When set, the API and dashboard ask for it, and clients send it.
    api_token: str = Field(default="", validation_alias=env("HPSEARCH_API_TOKEN"))

    @cached_property
    def checkpoint_dir(self) -> Path:
        if self.checkpoint_dir_setting:
            return Path(self.checkpoint_dir_setting)
        return self.data_dir / "checkpoints"

    @property
    def dataset_dirs(self) -> list[Path]:
        return dataset_folders(self.dataset_dirs_setting, self.data_dir)


class WorkerSettings(SharedSettings):
    # RQ's expiry of this worker's heartbeat and of its running job's registry entry; the
    # lease thread renews both every LEASE_RENEW_SECONDS, so it must leave room for a few
    # missed renewals. Tests shrink it to outlive it quickly.
    heartbeat_ttl_seconds: int = Field(
        default=30,
        ge=3 * LEASE_RENEW_SECONDS,
        validation_alias=env("HPSEARCH_HEARTBEAT_TTL_SECONDS"),
    )
