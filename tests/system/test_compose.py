"""docker-compose.yml, checked without Docker: its structure, then each service's command run
as a local process with the file's environment (service hosts mapped to 127.0.0.1, ports to
free ones, volumes to folders), and a small sweep through it."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from master.db import Database
from master.migrate import drop_everything
from tests.conftest import SWEEPS_GROUP
from tests.master.factories import example_spec
from tests.servers import (
    REPO,
    Processes,
    free_port,
    http,
    http_text,
    redis_server_binary,
    wait_for,
)

pytestmark = pytest.mark.slow
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def compose_schema_errors(document: Any) -> list[str]:
    """What the Compose Specification's JSON schema (check-jsonschema's vendored copy, so no
    network) finds wrong with a compose document, as "path: message"."""
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_compose_file_is_valid_by_the_compose_specification() -> None:
    assert compose_schema_errors(COMPOSE) == []


def test_the_compose_schema_check_finds_a_misspelt_key_and_a_wrong_type() -> None:
    """The check above could pass on anything if the schema did not constrain services."""
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["master"]["helthcheck"] = broken["services"]["master"].pop("healthcheck")
    broken["services"]["worker"]["restart"] = 5
    errors = compose_schema_errors(broken)
    assert any(e.startswith("services.master:") and "'helthcheck'" in e for e in errors), errors
    assert any(e.startswith("services.worker.restart:") for e in errors), errors


def test_the_compose_file_has_every_part() -> None:
    assert {"redis", "postgres", "master", "worker", "dashboard"} <= set(SERVICES)
    assert "--appendonly" in SERVICES["redis"]["command"]
    for name in ("master", "worker"):
        assert "checkpoints:/checkpoints" in SERVICES[name]["volumes"]
        assert SERVICES[name]["build"] == "."
    assert "checkpoints" in COMPOSE["volumes"]
    assert "checkpoints:/checkpoints:ro" in SERVICES["dashboard"]["volumes"]  # read-only
    assert [expand(p, {}) for p in SERVICES["dashboard"]["ports"]] == ["127.0.0.1:8080:8080"]
    for name in ("redis", "postgres", "master", "dashboard"):
        assert SERVICES[name]["healthcheck"]["test"], name
    worker_env = SERVICES["worker"]["environment"]
    # No database credentials; the datasets from the volume only.
    assert set(worker_env) == {"REDIS_URL", "CHECKPOINT_DIR", "HPSEARCH_DATASET_DIRS"}
    assert worker_env["HPSEARCH_DATASET_DIRS"] == "/datasets"
    assert "datasets:/datasets" in SERVICES["master"]["volumes"]
    assert "datasets:/datasets:ro" in SERVICES["worker"]["volumes"]
    assert "datasets" in COMPOSE["volumes"]
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert SERVICES["worker"]["healthcheck"]["test"]
    # It deploys: every service restarts, the ports listen on loopback unless configured,
    # and it has no default secret: without them, compose refuses to start.
    for name, service in SERVICES.items():
        assert service["restart"] == "unless-stopped", name
        for port in service.get("ports", []):
            assert expand(port, {}).startswith("127.0.0.1:"), (name, port)
            assert expand(port, {"HPSEARCH_BIND_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:")
    text = (REPO / "docker-compose.yml").read_text()
    for secret in SECRETS:
        uses = re.findall(rf"\$\{{{secret}[^}}]*\}}", text)
        assert uses and all(f"{secret}:?" in use for use in uses), (secret, uses)
        with pytest.raises(Refused, match=secret):
            expand(uses[0], {})
    assert "HPSEARCH_API_TOKEN" in SERVICES["dashboard"]["environment"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "USER hpsearch" in dockerfile


SECRETS = {"POSTGRES_PASSWORD": "test-db-password", "HPSEARCH_API_TOKEN": "test-token"}


class Refused(ValueError):
    """What `docker compose` does with ${VAR:?message} when VAR is not set."""


def expand(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} substitution, from `variables` (this
    process's environment by default)."""
    given = os.environ if variables is None else variables

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3] or ""
        if given.get(name):
            return given[name]
        if kind == ":?":
            raise Refused(f"{name}: {rest}")
        return rest

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def local_command(command: list[str], ports: dict[str, int]) -> list[str]:
    """The service's command for this machine: hpsearch through this Python, its port a
    free one, listening on loopback."""
    if command[0] == "hpsearch":
        command = [sys.executable, "-m", "master.cli", *command[1:]]
    out = []
    for i, arg in enumerate(command):
        previous = command[i - 1] if i else ""
        if previous == "--host":
            arg = "127.0.0.1"
        elif previous == "--port" and arg in ports:
            arg = str(ports[arg])
        out.append(arg)
    return out


def local_environment(
    service: dict[str, Any], hosts: dict[str, str], volumes: dict[str, Path], database: str
) -> dict[str, str]:
    env = {k: expand(str(v), SECRETS) for k, v in (service.get("environment") or {}).items()}
    for key, value in env.items():
        for host, local in hosts.items():
            value = value.replace(host, local)
        for mount, folder in volumes.items():
            if value == mount:
                value = str(folder)
        env[key] = value
    if "DATABASE_URL" in env:
        # PostgreSQL runs here already (CI) or not at all: its database, or SQLite.
        env["DATABASE_URL"] = database
    return env


def wait_for_healthy(
    service: dict[str, Any], port: str, local_port: int, env: dict[str, str] | None = None
) -> None:
    """Run the service's own healthcheck command, pointed at its local port (with the
    service's environment), until it passes."""
    health = [
        arg.replace(f"127.0.0.1:{port}", f"127.0.0.1:{local_port}")
        for arg in service["healthcheck"]["test"][1:]
    ]
    health[0] = sys.executable if health[0] == "python" else health[0]
    run_env = {**os.environ, **(env or {})}
    wait_for(
        lambda: subprocess.run(health, env=run_env).returncode == 0,
        60,
        f"{service['command'][1]} health",
    )


@pytest.mark.xdist_group(SWEEPS_GROUP)  # kills nothing, lets no lease lapse
def test_the_compose_services_run_a_sweep(tmp_path: Path) -> None:
    test_database = os.environ.get("HPSEARCH_TEST_DATABASE_URL")
    if test_database:
        db = Database(test_database)
        drop_everything(db.engine)
        db.dispose()
    database = test_database or f"sqlite:///{tmp_path / 'hpsearch.db'}"
    redis_port, master_port, dashboard_port = free_port(), free_port(), free_port()
    hosts = {
        "redis:6379": f"127.0.0.1:{redis_port}",
        "postgres:5432": "127.0.0.1:5432",
        "master:8000": f"127.0.0.1:{master_port}",
    }
    volumes = {
        "/checkpoints": tmp_path / "checkpoints",
        "/data": tmp_path / "redis",
        "/datasets": tmp_path / "datasets",
    }
    (tmp_path / "redis").mkdir()
    processes = Processes(tmp_path / "logs", {})
    try:
        redis_command = [
            redis_server_binary() if arg == "redis-server" else str(volumes.get(arg, arg))
            for arg in SERVICES["redis"]["command"]
        ]
        redis_command += ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        processes.start("redis", redis_command)
        master = SERVICES["master"]
        processes.start(
            "master",
            local_command(master["command"], {"8000": master_port}),
            **local_environment(master, hosts, volumes, database),
        )
        wait_for_healthy(master, "8000", master_port)
        dashboard = SERVICES["dashboard"]
        processes.start(
            "dashboard",
            local_command(dashboard["command"], {"8080": dashboard_port}),
            **local_environment(dashboard, hosts, volumes, database),
        )
        wait_for_healthy(dashboard, "8080", dashboard_port)

        worker = SERVICES["worker"]
        for i in range(worker["deploy"]["replicas"]):
            processes.start(
                f"worker-{i}",
                local_command(worker["command"], {}),
                **local_environment(worker, hosts, volumes, database),
            )
        wait_for_healthy(worker, "", 0, local_environment(worker, hosts, volumes, database))
        url = f"http://127.0.0.1:{master_port}"
        token = {"Authorization": f"Bearer {SECRETS['HPSEARCH_API_TOKEN']}"}
        spec = example_spec(stages=[{"trials": 6, "epochs": 1}, {"trials": 2, "epochs": 2}])
        assert http("POST", url + "/api/sweeps", spec)[0] == 401  # the token is required
        code, sweep = http("POST", url + "/api/sweeps", spec, token)
        assert code == 201, sweep

        def finished() -> bool:
            got = http("GET", f"{url}/api/sweeps/{sweep['id']}", headers=token)[1]
            return bool(got["status"] == "finished")

        wait_for(finished, 120, "the sweep to finish", interval=0.2)
        _, board = http("GET", f"{url}/api/leaderboard?sweep={sweep['id']}", headers=token)
        assert board["count"] >= 1
        best = board["data"][0]
        assert all((tmp_path / "checkpoints" / path).is_file() for path in best["checkpoints"])
        # The dashboard reads the same database and volume: the best trial leads its board.
        code, page = http_text(f"http://127.0.0.1:{dashboard_port}/?sweep={sweep['id']}", token)
        assert code == 200 and f'data-trial="{best["id"]}"' in page.split("<tbody>")[1][:400]
    except AssertionError:
        print(processes.log_tail())
        raise
    finally:
        processes.stop_all()
