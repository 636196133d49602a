"""Schemathesis fuzzes every operation of the OpenAPI schema: no input gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from redis import Redis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from master.app import create_app
from master.settings import Settings
from tests.master.factories import example_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_app(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenApiSchema]:
    Redis.from_url(redis_url).flushall()
    root = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(
        redis_url=redis_url, database_url=f"sqlite:///{root / 'db.sqlite'}", data_dir=root
    )
    app = create_app(settings_)
    with TestClient(app) as client:  # runs the lifespan: database, Redis, scheduler
        # Something to find: a sweep with trials, so ids 1.. exist as well as missing ones.
        assert client.post("/api/sweeps", json=example_spec()).status_code == 201
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("fuzzed_app")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_gets_a_server_error(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text)
    content_type = response.headers.get("content-type") or [""]
    assert content_type[0].startswith("application/json"), (case.path, response.status_code)
