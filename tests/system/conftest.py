"""The whole system as real processes: our own redis-server, `hpsearch master`, and two
`hpsearch worker`s, on SQLite and (where HPSEARCH_TEST_DATABASE_URL is set) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from master.db import Database
from master.models import Base
from tests.servers import Processes, free_port, http, http_answers, redis_server, wait_for

FINAL = {"finished", "exploded", "failed", "stopped"}


class System:
    def __init__(self, url: str, redis: Redis, checkpoints: Path, processes: Processes) -> None:
        self.url = url
        self.redis = redis
        self.checkpoints = checkpoints
        self.processes = processes

    def get(self, path: str, **params: Any) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        code, body = http("GET", f"{self.url}{path}{'?' + query if query else ''}")
        assert code == 200, (path, code, body)
        return body

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return http("POST", self.url + path, body)

    def submit(self, spec: dict[str, Any]) -> int:
        code, body = self.post("/api/sweeps", spec)
        assert code == 201, body
        return int(body["id"])

    def wait_until_done(self, sweep_id: int, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            sweep = self.get(f"/api/sweeps/{sweep_id}")
            return sweep if sweep["status"] != "running" else None

        try:
            result: dict[str, Any] = wait_for(done, timeout, f"sweep {sweep_id} to end", 0.2)
            return result
        except AssertionError:
            print(self.processes.log_tail())
            raise

    def trials(self, sweep_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"/api/sweeps/{sweep_id}/trials", sort="id", limit=1000)["data"])


def _database_params() -> list[Any]:
    params: list[Any] = ["sqlite"]
    if os.environ.get("HPSEARCH_TEST_DATABASE_URL"):
        params.append("postgresql")
    return params


@pytest.fixture(scope="module", params=_database_params())
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    root = tmp_path_factory.mktemp(f"system-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{root / 'hpsearch.db'}"
    else:
        database_url = os.environ["HPSEARCH_TEST_DATABASE_URL"]
        database = Database(database_url)
        Base.metadata.drop_all(database.engine)
        database.dispose()
    with redis_server(root / "redis", appendonly=True) as redis_url:
        checkpoints = root / "checkpoints"
        env = {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "CHECKPOINT_DIR": str(checkpoints),
            "HPSEARCH_DATA_DIR": str(root),
            "HPSEARCH_RECONCILE_SECONDS": "0.5",
        }
        processes = Processes(root / "logs", env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            processes.hpsearch("master", "master", "--port", str(port))
            wait_for(lambda: http_answers(url + "/api/health"), 30, "the master to answer")
            for i in range(2):
                processes.hpsearch(f"worker-{i}", "worker", "--name", f"w{i}-{request.param}")
            redis = Redis.from_url(redis_url)
            system = System(url, redis, checkpoints, processes)
            wait_for(lambda: system.get("/api/workers")["count"] == 2, 30, "two workers")
            yield system
            redis.close()
        finally:
            processes.stop_all()
