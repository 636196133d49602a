"""/api/leaderboard: trials ranked by best validation accuracy, ties to more epochs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from master.models import MAX_ID, Trial, TrialStatus, ranking
from master.schemas import LeaderboardPublic
from master.services import ServicesDep
from master.views import ranked_trial

router = APIRouter(prefix="/api/leaderboard", tags=["leaderboard"])


@router.get("", response_model=LeaderboardPublic)
def read_leaderboard(
    services: ServicesDep,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    trial_status: Annotated[TrialStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> LeaderboardPublic:
    """Trials with a validation accuracy, best first (ties: more epochs trained first)."""
    query = select(Trial).where(Trial.best_val_acc.is_not(None))
    if sweep is not None:
        query = query.where(Trial.sweep_id == sweep)
    if trial_status is not None:
        query = query.where(Trial.status == trial_status)
    with services.db.reading() as session:
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        trials = session.scalars(query.order_by(*ranking()).limit(limit).offset(offset))
        data = [ranked_trial(t, offset + i + 1) for i, t in enumerate(trials)]
    return LeaderboardPublic(data=data, count=count)
