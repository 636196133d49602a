"""The master app on a real Redis and a real database, through FastAPI's test client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from master.app import create_app
from master.db import Database
from master.settings import Settings

ApiFactory = Callable[..., TestClient]


@pytest.fixture
def make_api(
    redis: Redis, redis_url: str, database_url: str, tmp_path: Path
) -> Iterator[ApiFactory]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(
            redis_url=overrides.pop("redis_url", redis_url),
            database_url=database_url,
            data_dir=tmp_path / "data",
            **overrides,
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: ApiFactory) -> TestClient:
    return make_api()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The test database with its tables, for tests below the API."""
    database = Database(database_url)
    database.create_tables()
    yield database
    database.dispose()
