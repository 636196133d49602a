"""The master's long-lived parts, built once per process, and FastAPI's ways to reach them."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from redis import Redis

from master.db import Database
from master.dispatching import Dispatcher
from master.queueing import TrialQueue
from master.scheduler import Scheduler
from master.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: Redis
    queue: TrialQueue
    dispatcher: Dispatcher
    scheduler: Scheduler

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database)
        redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        queue = TrialQueue(redis, settings.queue, result_ttl_seconds=settings.result_ttl_seconds)
        dispatcher = Dispatcher(db, redis, queue)
        scheduler = Scheduler(
            db,
            redis,
            queue,
            dispatcher,
            reconcile_seconds=settings.reconcile_seconds,
            lease_seconds=settings.scheduler_lease_seconds,
        )
        return cls(settings, db, redis, queue, dispatcher, scheduler)

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_token(request: Request, services: ServicesDep) -> None:
    """With HPSEARCH_API_TOKEN set, every call but health needs `Authorization: Bearer
    <token>`."""
    token = services.settings.api_token
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API token: send 'Authorization: Bearer <HPSEARCH_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


TokenDep = Depends(require_token)
