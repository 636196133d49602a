"""/api/workers: the RQ workers serving the queue, and shutting one down."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from rq import Worker
from rq.command import send_shutdown_command
from rq.worker import BaseWorker
from sqlalchemy import select

from master.models import Trial, TrialStatus
from master.routes.sweeps import ERRORS
from master.schemas import Message, WorkerPublic, WorkersPublic
from master.services import ServicesDep, TokenDep
from master.sweeps import NotFound

router = APIRouter(prefix="/api/workers", tags=["workers"])
WorkerName = Annotated[str, PathParam(min_length=1, max_length=200)]


@router.get("", response_model=WorkersPublic)
def read_workers(services: ServicesDep) -> WorkersPublic:
    """Every live worker: state, current trial, last heartbeat."""
    found = Worker.all(connection=services.redis)
    with services.db.reading() as session:
        # A worker's job may hold a batch of trials: the running one is in the database.
        running = dict(
            session.execute(
                select(Trial.worker, Trial.id).where(
                    Trial.status == TrialStatus.RUNNING,
                    Trial.worker.in_([w.name for w in found]),
                )
            ).all()
        )
    workers = [_public(w, running.get(w.name)) for w in found]
    workers.sort(key=lambda w: w.name)
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
    send_shutdown_command(services.redis, name)
    return Message(detail=f"worker {name}: shutdown requested")


def _public(worker: BaseWorker, trial_id: int | None) -> WorkerPublic:
    job = worker.get_current_job_id()
    return WorkerPublic(
        name=worker.name,
        host=worker.hostname,
        state=str(worker.get_state()),
        queues=worker.queue_names(),
        current_job=job,
        current_trial=trial_id if job else None,
        last_heartbeat=worker.last_heartbeat,
    )
