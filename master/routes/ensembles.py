"""/api/sweeps/{id}/ensembles and /api/ensembles: evaluating a sweep's models together."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, status
from fastapi import Path as PathParam
from redis.exceptions import RedisError
from sqlalchemy import select

from master.evaluating import EnsembleConflict, create_ensemble
from master.models import MAX_ID, Ensemble, EnsembleKind, Trial, ranking
from master.routes.sweeps import ERRORS, SweepId
from master.schemas import EnsemblePublic, EnsembleRequest, EnsemblesPublic
from master.services import ServicesDep, TokenDep
from master.sweeps import Conflict, NotFound, get_sweep
from master.views import ensemble_public

log = logging.getLogger(__name__)
router = APIRouter(tags=["ensembles"])
EnsembleId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="ensemble id")]


@router.post(
    "/api/sweeps/{sweep_id}/ensembles",
    status_code=status.HTTP_201_CREATED,
    response_model=EnsemblePublic,
    responses=ERRORS,
    dependencies=[TokenDep],
)
def create_ensemble_route(
    sweep_id: SweepId, request: Annotated[EnsembleRequest, Body()], services: ServicesDep
) -> EnsemblePublic:
    """Evaluate an ensemble of a finished (or cancelled) sweep's models on a worker: every k
    up to max_k on validation and test, k chosen on validation."""
    params = request.model_dump(exclude_none=True, exclude={"kind"})
    if request.kind == "seeds":  # its members are the trial and its re-trainings
        params.pop("max_k", None)
    with services.db.writing() as session:
        sweep = get_sweep(session, sweep_id)
        if request.kind != "top-k" and request.trial_id is None:
            best = session.scalars(
                select(Trial.id).where(Trial.sweep_id == sweep_id).order_by(*ranking()).limit(1)
            ).first()
            if best is None:
                raise Conflict(f"sweep {sweep_id} has no trials")
            params["trial_id"] = best
        try:
            ensemble = create_ensemble(session, sweep, EnsembleKind(request.kind), params)
        except EnsembleConflict as exc:
            raise Conflict(str(exc)) from None
        ensemble_id = ensemble.id
    try:
        services.dispatcher.enqueue_pending()  # a seeds ensemble's stage
        services.scheduler.evaluations.enqueue_pending()
    except RedisError:  # stored all the same: the scheduler enqueues it once Redis is back
        log.warning("ensemble %d stored; it waits for Redis", ensemble_id)
    return read_ensemble(ensemble_id, services)


@router.get("/api/sweeps/{sweep_id}/ensembles", response_model=EnsemblesPublic, responses=ERRORS)
def list_ensembles(sweep_id: SweepId, services: ServicesDep) -> EnsemblesPublic:
    """The sweep's ensembles, newest first (its own test evaluation among them)."""
    with services.db.reading() as session:
        get_sweep(session, sweep_id)
        rows = session.scalars(
            select(Ensemble).where(Ensemble.sweep_id == sweep_id).order_by(Ensemble.id.desc())
        ).all()
        return EnsemblesPublic(data=[ensemble_public(e) for e in rows], count=len(rows))


@router.get("/api/ensembles/{ensemble_id}", response_model=EnsemblePublic, responses=ERRORS)
def read_ensemble(ensemble_id: EnsembleId, services: ServicesDep) -> EnsemblePublic:
    """One ensemble: its members (best first) with their scores, and the curve over k."""
    with services.db.reading() as session:
        ensemble = session.get(Ensemble, ensemble_id)
        if ensemble is None:
            raise NotFound(f"ensemble {ensemble_id}: no such ensemble")
        return ensemble_public(ensemble)


@router.post(
    "/api/ensembles/{ensemble_id}/stop",
    response_model=EnsemblePublic,
    responses=ERRORS,
    dependencies=[TokenDep],
)
def stop_ensemble(ensemble_id: EnsembleId, services: ServicesDep) -> EnsemblePublic:
    """Stop an ensemble's evaluation: a queued one never runs, a running one ends at its
    next member, keeping what it scored."""
    current = read_ensemble(ensemble_id, services)
    if current.status not in ("queued", "running"):
        raise Conflict(f"ensemble {ensemble_id}: already {current.status}")
    services.scheduler.evaluations.stop(ensemble_id)
    return read_ensemble(ensemble_id, services)
