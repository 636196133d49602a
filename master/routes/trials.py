"""/api/trials: one trial in full, and stopping it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from master.models import MAX_ID, Trial, TrialStatus, utcnow
from master.routes.sweeps import ERRORS
from master.schemas import TrialDetail
from master.services import Services, ServicesDep, TokenDep
from master.sweeps import Conflict, get_trial
from master.views import trial_detail

router = APIRouter(prefix="/api/trials", tags=["trials"])
# A trial's page holds its whole history: load the epochs in the same round trip.
WITH_EPOCHS = [selectinload(Trial.epochs)]
TrialId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="trial id")]


@router.get("/{trial_id}", response_model=TrialDetail, responses=ERRORS)
def read_trial(trial_id: TrialId, services: ServicesDep) -> TrialDetail:
    """A trial: hyperparameters, status, per-epoch history and checkpoint files."""
    with services.db.reading() as session:
        return trial_detail(session, get_trial(session, trial_id, options=WITH_EPOCHS))


@router.post(
    "/{trial_id}/stop", response_model=TrialDetail, responses=ERRORS, dependencies=[TokenDep]
)
def stop_trial(trial_id: TrialId, services: ServicesDep) -> TrialDetail:
    """Stop a trial: a queued one never runs, a running one ends within a second."""
    with services.db.reading() as session:
        trial = get_trial(session, trial_id)
        if trial.status.is_final:
            raise Conflict(f"trial {trial_id}: already {trial.status}")
    services.queue.request_stop([trial_id])
    with services.db.writing() as session:
        trial = get_trial(session, trial_id)
        job_id = trial.job_id
        if trial.status == TrialStatus.QUEUED:
            trial.status = TrialStatus.STOPPED
            trial.reason = "stopped before it started"
            trial.finished_at = utcnow()
            sweep_id: int | None = trial.sweep_id
        else:
            sweep_id = None
    if job_id and sweep_id is not None and not _job_has_open_trials(services, job_id):
        services.queue.cancel([job_id])  # else its batch reaches it, sees the flag, skips it
    if sweep_id is not None:  # the stage may be complete now
        services.dispatcher.advance([sweep_id])
    with services.db.reading() as session:
        return trial_detail(session, get_trial(session, trial_id, options=WITH_EPOCHS))


def _job_has_open_trials(services: Services, job_id: str) -> bool:
    with services.db.reading() as session:
        return bool(
            session.scalar(
                select(Trial.id)
                .where(Trial.job_id == job_id)
                .where(Trial.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]))
                .limit(1)
            )
        )
