"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from core.data import Dataset, load_dataset
from master.db import Database
from master.migrate import drop_everything
from tests.servers import redis_server


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits64() -> Dataset:
    return load_dataset("digits", dtype="float64")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server of the tests' own (not the machine's), for the whole session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client of the tests' Redis, emptied before each test."""
    client = Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


def database_urls() -> list[Any]:
    """SQLite always; PostgreSQL too where HPSEARCH_TEST_DATABASE_URL is set (CI sets it)."""
    urls: list[Any] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("HPSEARCH_TEST_DATABASE_URL"):
        urls.append(pytest.param("postgresql", id="postgresql"))
    return urls


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or the PostgreSQL test database with its
    hpsearch tables dropped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hpsearch.db'}"
        return
    url = os.environ["HPSEARCH_TEST_DATABASE_URL"]
    database = Database(url)
    drop_everything(database.engine)
    database.dispose()
    yield url
