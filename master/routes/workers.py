"""/api/workers: the RQ workers serving the queue, and shutting one down."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from rq import Worker
from rq.command import send_shutdown_command

from core.messages import SHUTDOWN_REQUEST_SECONDS, worker_shutdown_key
from master.routes.sweeps import ERRORS
from master.schemas import Message, WorkersPublic
from master.services import ServicesDep, TokenDep
from master.sweeps import NotFound
from master.views import live_workers

router = APIRouter(prefix="/api/workers", tags=["workers"])
WorkerName = Annotated[str, PathParam(min_length=1, max_length=200)]


@router.get("", response_model=WorkersPublic)
def read_workers(services: ServicesDep) -> WorkersPublic:
    """Every live worker: state, current trial, last heartbeat."""
    with services.db.reading() as session:
        workers = live_workers(services.redis, session)
    return WorkersPublic(data=workers, count=len(workers))


@router.post(
    "/{name}/shutdown",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=ERRORS,
    dependencies=[TokenDep],
)
def shutdown_worker(name: WorkerName, services: ServicesDep) -> Message:
    """Ask a worker to exit after its current trial (a warm shutdown)."""
    if not any(w.name == name for w in Worker.all(connection=services.redis)):
        raise NotFound(f"worker {name}: no such live worker")
    # The key first: the worker takes it even if it misses the command (see core.messages).
    services.redis.set(worker_shutdown_key(name), "1", ex=SHUTDOWN_REQUEST_SECONDS)
    send_shutdown_command(services.redis, name)
    return Message(detail=f"worker {name}: shutdown requested")
