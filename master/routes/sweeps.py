"""/api/sweeps: submit, list, read and cancel sweeps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from fastapi import Path as PathParam
from redis.exceptions import RedisError
from sqlalchemy import func, select

from core.contract import BUILTIN
from core.data import DatasetError, confine, parse_dataset_spec
from master.models import MAX_ID, Sweep, SweepStatus, Trial, TrialStatus, ranking
from master.reindex import write_sweep_record
from master.schemas import Message, SweepPublic, SweepsPublic, TrialsPublic
from master.services import Services, ServicesDep, TokenDep
from master.spec import SpecError, SweepSpec, check_trial_budget
from master.sweeps import cancel_sweep, create_sweep, get_sweep
from master.trainers import advertised_trainers, with_declaration
from master.views import sweep_public, trial_public

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])
SweepId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="sweep id")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (401, 404, 409, 413, 422, 503)
}
TRIAL_SORTS = {
    "val_acc": (Trial.best_val_acc.asc().nulls_last(), Trial.id.asc()),
    "-val_acc": ranking(),
    "epochs": (Trial.epochs_done.asc(), Trial.id.asc()),
    "-epochs": (Trial.epochs_done.desc(), Trial.id.asc()),
    "id": (Trial.id.asc(),),
    "-id": (Trial.id.desc(),),
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepPublic,
    responses=ERRORS,
    dependencies=[TokenDep],
)
def create_sweep_route(spec: Annotated[SweepSpec, Body()], services: ServicesDep) -> SweepPublic:
    """Submit a sweep: its first stage's trials are sampled and queued at once."""
    if spec.trainer != BUILTIN or spec.declared is not None:
        spec = with_declaration(spec, advertised_trainers(services.redis))
    if spec.budget is not None and spec.budget.parallel is None:
        spec = spec.with_parallel(_registered_workers(services))
    check_trial_budget(spec, services.settings.max_trials)  # FastAPI validated the rest
    _check_dataset(spec.dataset, services.settings.dataset_dirs)
    with services.db.writing() as session:
        sweep = create_sweep(session, spec)
        sweep_id, stored = sweep.id, sweep.spec
    try:  # so that the volume alone can rebuild a lost database (hpsearch reindex)
        write_sweep_record(services.settings.checkpoint_dir, sweep_id, spec.name, stored)
    except OSError as exc:
        log.warning("sweep %d: cannot keep its spec on the volume: %s", sweep_id, exc)
    try:
        services.dispatcher.enqueue_pending()
    except RedisError:  # stored all the same: the scheduler enqueues once Redis is back
        log.warning("sweep %d stored; its trials wait for Redis", sweep_id)
    with services.db.reading() as session:
        return sweep_public(session, get_sweep(session, sweep_id))


def _registered_workers(services: Services) -> int:
    try:
        return services.queue.worker_count()
    except RedisError:  # laid out for one; the sweep is stored and waits for Redis
        return 1


@router.get("", response_model=SweepsPublic)
def read_sweeps(
    services: ServicesDep,
    sweep_status: Annotated[SweepStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepsPublic:
    """List sweeps, newest first."""
    with services.db.reading() as session:
        query = select(Sweep)
        if sweep_status is not None:
            query = query.where(Sweep.status == sweep_status)
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        sweeps = session.scalars(query.order_by(Sweep.id.desc()).limit(limit).offset(offset))
        return SweepsPublic(data=[sweep_public(session, s) for s in sweeps], count=count)


@router.get("/{sweep_id}", response_model=SweepPublic, responses=ERRORS)
def read_sweep(sweep_id: SweepId, services: ServicesDep) -> SweepPublic:
    """One sweep: its stages with their ranges, warnings and counts per status."""
    with services.db.reading() as session:
        return sweep_public(session, get_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/cancel", response_model=SweepPublic, responses=ERRORS, dependencies=[TokenDep]
)
def cancel_sweep_route(sweep_id: SweepId, services: ServicesDep) -> SweepPublic:
    """Cancel a sweep: queued trials are taken off the queue, running ones stop within a
    second."""
    with services.db.reading() as session:
        get_sweep(session, sweep_id)
    # The flag first: whatever starts from now on stops at once, even a job being dequeued.
    services.queue.request_stop(sweep_id=sweep_id)
    with services.db.writing() as session:
        _, open_trials = cancel_sweep(session, sweep_id)
        job_ids = [t.job_id for t in open_trials if t.job_id]
    services.queue.cancel(job_ids)
    with services.db.reading() as session:
        return sweep_public(session, get_sweep(session, sweep_id))


@router.get("/{sweep_id}/trials", response_model=TrialsPublic, responses=ERRORS)
def read_sweep_trials(
    sweep_id: SweepId,
    services: ServicesDep,
    trial_status: Annotated[TrialStatus | None, Query(alias="status")] = None,
    stage: Annotated[int | None, Query(ge=0, le=1000)] = None,
    sort: Annotated[str, Query(pattern="^-?(val_acc|epochs|id)$")] = "-val_acc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> TrialsPublic:
    """A sweep's trials, filtered by status and stage, best first by default."""
    with services.db.reading() as session:
        get_sweep(session, sweep_id)
        query = select(Trial).where(Trial.sweep_id == sweep_id)
        if trial_status is not None:
            query = query.where(Trial.status == trial_status)
        if stage is not None:
            query = query.where(Trial.stage_index == stage)
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        trials = session.scalars(query.order_by(*TRIAL_SORTS[sort]).limit(limit).offset(offset))
        return TrialsPublic(data=[trial_public(t) for t in trials], count=count)


def _check_dataset(dataset: str, folders: list[Path]) -> None:
    """A file dataset must lie in a dataset folder (whatever is outside gets one answer,
    whether or not it exists) and exist there, as the master sees the shared volume."""
    try:
        resolved = confine(dataset, folders)
    except DatasetError as exc:
        raise SpecError([f"dataset: {exc}"]) from None
    kind, location = parse_dataset_spec(resolved)
    if kind != "digits" and not Path(location).exists():
        raise SpecError([f"dataset: {dataset!r}: no such file or folder in the dataset folders"])
