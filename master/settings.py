"""The master's and dashboard's settings, and the CLI clients': environment variables, read
once, on the base every process shares (worker.settings.SharedSettings).

Defaults make `hpsearch up` work with nothing set: a data directory under the current one
holds the SQLite database and the checkpoints. The names are the ones DESIGN.md gives
(REDIS_URL, DATABASE_URL, CHECKPOINT_DIR, HPSEARCH_API_TOKEN); the rest carry HPSEARCH_.
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator

from core.messages import LEASE_SECONDS
from worker.settings import SharedSettings, env

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientSettings(SharedSettings):
    """What `hpsearch submit`, `ensemble` and `predict --ensemble` read: where the master's
    API is (the token and the checkpoint volume come from the base)."""

    url: str = Field(default=DEFAULT_URL, validation_alias=env("HPSEARCH_URL"))

    def api(self, given: str | None = None) -> str:
        """The API's base URL: `given` (a --url option) if any, else HPSEARCH_URL."""
        return (given or self.url).rstrip("/")


class Settings(SharedSettings):
    # Empty means SQLite under the data directory.
    database_url: str = Field(default="", validation_alias=env("DATABASE_URL"))
    # Where the dashboard sends a user's stop and cancel (the master's API).
    master_url: str = Field(default=DEFAULT_URL, validation_alias=env("HPSEARCH_MASTER_URL"))
    max_trials: int = Field(default=10_000, ge=1, validation_alias=env("HPSEARCH_MAX_TRIALS"))
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, validation_alias=env("HPSEARCH_MAX_BODY_BYTES")
    )
    # Seconds between the scheduler's passes over RQ (re-queue, clean-up, dead workers).
    reconcile_seconds: float = Field(
        default=2.0, gt=0, validation_alias=env("HPSEARCH_RECONCILE_SECONDS")
    )
    # The active scheduler's lease (master.leadership), renewed on every pass (at least
    # twice a second): a standby master takes over this long after the active one died.
    scheduler_lease_seconds: float = Field(
        default=10.0, ge=2.0, validation_alias=env("HPSEARCH_SCHEDULER_LEASE_SECONDS")
    )
    # How long Redis keeps a finished RQ job's record.
    result_ttl_seconds: int = Field(
        default=600, ge=1, validation_alias=env("HPSEARCH_RESULT_TTL_SECONDS")
    )

    @model_validator(mode="after")
    def _timings_in_order(self) -> Settings:
        if self.reconcile_seconds >= LEASE_SECONDS:
            raise ValueError(
                f"HPSEARCH_RECONCILE_SECONDS ({self.reconcile_seconds:g}) must be below the "
                f"workers' job lease ({LEASE_SECONDS} s), or dead workers go unnoticed for "
                "longer than a lease"
            )
        if self.scheduler_lease_seconds <= 2 * self.reconcile_seconds:
            raise ValueError(
                f"HPSEARCH_SCHEDULER_LEASE_SECONDS ({self.scheduler_lease_seconds:g}) must be "
                f"over twice HPSEARCH_RECONCILE_SECONDS ({self.reconcile_seconds:g}), or a "
                "busy pass loses the lease to a standby"
            )
        return self

    @cached_property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hpsearch.db').resolve()}"


def redact_url(url: str) -> str:
    """A URL fit to show: its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}{port}"))
