"""/api/health and the answers when a dependency is down."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.master.conftest import ApiFactory
from tests.servers import free_port


def test_health_reports_every_component(api: TestClient) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis"]["ok"] and body["database"]["ok"] and body["checkpoint_dir"]["ok"]


def test_unreachable_redis_is_503_not_a_traceback(make_api: ApiFactory) -> None:
    api = make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    health = api.get("/api/health")
    assert health.status_code == 503
    assert health.json()["redis"]["ok"] is False
    assert health.json()["database"]["ok"] is True
    workers = api.get("/api/workers")
    assert workers.status_code == 503
    assert "Redis is unavailable" in workers.json()["detail"]
