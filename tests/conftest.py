"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# One BLAS thread in every test process and every process the tests start, as `hpsearch up`
# runs workers. Set before numpy loads (pytest-xdist's test processes and the servers the
# tests start inherit it; master.up's BLAS_THREAD_VARIABLES is not imported for it, so that
# nothing can load numpy first):
# - the thread count changes how float sums are split, and a worker's parameters equal the
#   same training in a test process bit for bit only at the same count (importing a benchmark
#   used to set it for the workers alone);
# - OpenBLAS's threads spin while they wait: two in a test process beside the system tests'
#   training workers made a CPU-bound test take 46 s instead of its 3 s alone;
# - two workers of two threads each on two cores ran the soak's long trials 6x slower.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

# A run started in the background of a script (a CI runner's `cmd &`) inherits SIGINT
# ignored, and so would every process it starts: `hpsearch up` would not hear the Ctrl-C the
# tests send it as a terminal does. Python's own handler here gives the children the
# default again (an ignored signal survives exec, a handled one does not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core.data import Dataset, load_dataset  # noqa: E402
from master.db import Database, with_driver  # noqa: E402
from master.migrate import drop_everything  # noqa: E402
from tests.servers import redis_server  # noqa: E402

# pytest-xdist runs the tests in two processes (pyproject.toml's addopts); every system test
# runs in the same one, one after another: each starts workers that train on both cores,
# and two at once would starve each other's leases. A system test with a group of its own
# (xdist_group) keeps it: one that trains on a single core with margins of many seconds can
# run beside the others, and the serial group sets CI's pace.
SYSTEM_GROUP = "system"
# System tests that kill nothing and let no lease lapse (sweeps run to their end, stopped or
# cancelled) tolerate a neighbour on the cores: they run beside the serial group, which took
# 455 s against the other process's 311 s and so set CI's pace.
SWEEPS_GROUP = "system-sweeps"
# The real-timeouts trial test (tests/system/test_long_trials.py): one worker on one core.
REAL_TIMEOUTS_GROUP = "system-real-timeouts"


def pytest_configure(config: pytest.Config) -> None:
    """Each test process of pytest-xdist empties and fills PostgreSQL databases as it goes:
    it gets one of its own, beside the one HPSEARCH_TEST_DATABASE_URL names."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get("HPSEARCH_TEST_DATABASE_URL")
    if worker and url:
        os.environ["HPSEARCH_TEST_DATABASE_URL"] = own_database(url, worker)


def own_database(url: str, suffix: str) -> str:
    """The URL of a database named after the one `url` names plus `suffix`, on the same
    server, created if it is missing."""
    given = make_url(with_driver(url))
    name = f"{given.database}_{suffix}"
    engine = create_engine(given, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if found is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith("tests/system/") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(SYSTEM_GROUP))


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
