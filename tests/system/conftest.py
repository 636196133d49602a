"""The whole system as real processes: our own redis-server, `hpsearch master`, and two
`hpsearch worker`s, on SQLite and (where HPSEARCH_TEST_DATABASE_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from master.db import Database
from master.migrate import drop_everything
from tests.servers import (
    Processes,
    RedisServer,
    free_port,
    http,
    http_answers,
    wait_for,
)

FINAL = {"finished", "exploded", "failed", "stopped"}


class System:
    """Our own Redis, `hpsearch master` and workers, as processes a test can kill and start."""

    def __init__(self, root: Path, database_url: str, redis_server: RedisServer) -> None:
        self.root = root
        self.database_url = database_url
        self.redis_server = redis_server
        self.checkpoints = root / "checkpoints"
        self.datasets = root / "datasets"  # the one dataset folder (HPSEARCH_DATASET_DIRS)
        self.datasets.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": database_url,
            "CHECKPOINT_DIR": str(self.checkpoints),
            "HPSEARCH_DATASET_DIRS": str(self.datasets),
            "HPSEARCH_DATA_DIR": str(root),
            "HPSEARCH_RECONCILE_SECONDS": "0.5",
        }
        self.processes = Processes(root / "logs", self.env)
        self.redis = Redis.from_url(redis_server.url)
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start_master(self, **env: str) -> None:
        self.master = self.processes.hpsearch("master", "master", "--port", str(self.port), **env)
        wait_for(lambda: http_answers(self.url + "/api/health"), 30, "the master to answer")

    def start_worker(
        self, name: str, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        env = env or {}
        if command is None:
            self.workers[name] = self.processes.hpsearch(name, "worker", "--name", name, **env)
        else:
            self.workers[name] = self.processes.start(name, command, **env)

    def wait_for_workers(self, count: int) -> None:
        wait_for(lambda: self.get("/api/workers")["count"] == count, 30, f"{count} workers")

    def close(self) -> None:
        self.processes.stop_all()
        self.redis.close()

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
            self.dump_master_stacks()
            print(self.processes.log_tail(120))
            raise

    def dump_master_stacks(self) -> None:
        """Have the master print every thread's stack into its log (SIGUSR1)."""
        if self.master is None or self.master.poll() is not None:
            return
        log = self.processes.logs / "master.log"
        self.master.send_signal(signal.SIGUSR1)
        try:
            wait_for(lambda: "Current thread" in log.read_text(errors="replace"), 5, "stacks")
        except AssertionError:
            pass  # the tail shows whatever there is

    def files_on_disk(self) -> list[str]:
        """Every checkpoint file under CHECKPOINT_DIR, relative to it, sorted."""
        return sorted(str(p.relative_to(self.checkpoints)) for p in self.checkpoints.rglob("*.npz"))

    def trials(self, sweep_id: int) -> list[dict[str, Any]]:
        """All of the sweep's trials, by id, a page of 1000 at a time."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.get(
                f"/api/sweeps/{sweep_id}/trials", sort="id", limit=1000, offset=len(found)
            )["data"]
            found += page
            if len(page) < 1000:
                return found


def _database_params() -> list[Any]:
    params: list[Any] = ["sqlite"]
    if os.environ.get("HPSEARCH_TEST_DATABASE_URL"):
        params.append("postgresql")
    return params


def fresh_database_url(kind: str, root: Path) -> str:
    """A SQLite file under `root`, or the test PostgreSQL database emptied."""
    if kind == "sqlite":
        return f"sqlite:///{root / 'hpsearch.db'}"
    url = os.environ["HPSEARCH_TEST_DATABASE_URL"]
    database = Database(url)
    drop_everything(database.engine)
    database.dispose()
    return url


@contextmanager
def running_system(
    root: Path,
    kind: str,
    workers: int = 2,
    database_url: str | None = None,
    worker_env: dict[str, str] | None = None,
) -> Iterator[System]:
    """Redis (append-only, as in compose), the master, and `workers` workers w0, w1, ...
    (with `worker_env` added to their environment). The `kind` of database is emptied
    first; `database_url` may lead to it another way."""
    emptied = fresh_database_url(kind, root)
    redis = RedisServer(root / "redis", appendonly=True)
    redis.start()
    system = System(root, database_url or emptied, redis)
    try:
        system.start_master()
        for i in range(workers):
            system.start_worker(f"w{i}-{kind}", env=worker_env)
        system.wait_for_workers(workers)
        yield system
    finally:
        system.close()
        redis.stop()


@pytest.fixture(scope="module", params=_database_params())
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    root = tmp_path_factory.mktemp(f"system-{request.param}")
    with running_system(root, request.param) as running:
        yield running
