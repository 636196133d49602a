"""/api/health: can the master reach Redis, the database and the checkpoint volume?"""

from __future__ import annotations

import os
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from master.schemas import ComponentHealth, HealthPublic
from master.services import Services, ServicesDep

router = APIRouter(prefix="/api/health", tags=["health"])


@router.get("", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def read_health(services: ServicesDep) -> JSONResponse:
    """200 when Redis, the database and the checkpoint directory all answer; 503 otherwise."""
    health = HealthPublic(
        status="ok",
        redis=_check(lambda: services.redis.ping() and "ping answered"),
        database=_check(lambda: _ping(services)),
        checkpoint_dir=_check(lambda: _writable(services.settings.checkpoint_dir)),
    )
    parts = (health.redis, health.database, health.checkpoint_dir)
    if not all(part.ok for part in parts):
        health.status = "unavailable"
    return JSONResponse(health.model_dump(), status_code=200 if health.status == "ok" else 503)


def _check(probe: Callable[[], object]) -> ComponentHealth:
    try:
        detail = probe()
        return ComponentHealth(ok=True, detail=str(detail))
    except Exception as exc:  # any failure is the answer, whatever its type
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")


def _ping(services: Services) -> str:
    services.db.ping()
    return "SELECT 1 answered"


def _writable(directory: os.PathLike[str]) -> str:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{directory} is not writable")
    return f"{directory} is writable"
