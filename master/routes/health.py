"""/api/health: can the master reach Redis, the database and the checkpoint volume, which
master's scheduler is active, and how many worker events wait to be applied?"""

from __future__ import annotations

import os
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from master.schemas import ComponentHealth, EventBacklog, HealthPublic, SchedulerHealth
from master.services import Services, ServicesDep

router = APIRouter(prefix="/api/health", tags=["health"])


@router.get("", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def read_health(services: ServicesDep) -> JSONResponse:
    """200 when Redis, the database and the checkpoint directory answer and a scheduler is
    active; 503 otherwise."""
    health = HealthPublic(
        status="ok",
        redis=_check(lambda: services.redis.ping() and "ping answered"),
        database=_check(lambda: _ping(services)),
        checkpoint_dir=_check(lambda: _writable(services.settings.checkpoint_dir)),
        scheduler=None,
        events=None,
    )
    if health.redis.ok:
        try:
            health.scheduler = _scheduler(services)
            backlog = services.scheduler.backlog()
            health.events = EventBacklog(
                waiting=backlog.length,
                oldest_age_seconds=backlog.oldest_age_seconds,
                unapplied=backlog.unapplied,
            )
        except RedisError as exc:
            health.redis = ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")
    parts = (health.redis, health.database, health.checkpoint_dir, health.scheduler)
    if not all(part is not None and part.ok for part in parts):
        health.status = "unavailable"
    return JSONResponse(health.model_dump(), status_code=200 if health.status == "ok" else 503)


def _scheduler(services: Services) -> SchedulerHealth:
    scheduler = services.scheduler
    holder = scheduler.lease.current_holder()
    now = scheduler.clock()
    ago = None if scheduler.last_pass is None else now - scheduler.last_pass
    mine = holder == scheduler.lease.holder
    # A pass renews the lease: a loop that has not passed for a lease's time is stuck (or,
    # never having passed, did not start).
    lease_seconds = scheduler.lease.milliseconds / 1000
    passing = (now - scheduler.created if ago is None else ago) < lease_seconds
    return SchedulerHealth(
        ok=passing and (mine or holder is not None or ago is None),
        active=mine,
        this_master=scheduler.lease.holder,
        active_master=holder,
        last_pass_seconds_ago=ago,
    )


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
    # Health is open to probes: it says what is wrong, never where on the machine.
    if not os.path.isdir(directory):
        raise FileNotFoundError("CHECKPOINT_DIR does not exist")
    if not os.access(directory, os.W_OK):
        raise PermissionError("CHECKPOINT_DIR is not writable")
    return "CHECKPOINT_DIR is writable"
