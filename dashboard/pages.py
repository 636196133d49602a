"""The HTML pages. Each page also renders its live part alone (`?part=live`), which the
page's script fetches every 2 s while the sweep or trial is still running."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from redis.exceptions import RedisError
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.checkpoint import parse_checkpoint_name
from core.config import TrainConfig
from core.contract import BUILTIN
from core.distributions import PROBE_ROWS
from dashboard.figures import log_parameters, pair_of
from dashboard.files import best_on_disk
from dashboard.leaderboard import Filters, best_checkpoint, load_leaderboard, sweep_choices
from dashboard.state import Dashboard, DashboardDep, Id
from dashboard.sweep_list import list_sweeps
from dashboard.weights import NoImage, describe_first_layer
from master.diagnoses import trial_findings
from master.evaluating import best_checkpoint as best_epoch_file
from master.evaluating import trial_lookup
from master.models import MAX_ID, Ensemble, Sweep, SweepStatus, Trial, TrialEpoch, TrialStatus
from master.schemas import WorkerPublic
from master.settings import redact_url
from master.sweeps import get_sweep, get_trial
from master.views import ensemble_public, live_workers, running_trials, sweep_public

router = APIRouter(default_response_class=HTMLResponse)
ALL_SWEEPS = "all"  # ?sweep=all: the leaderboard of every sweep
Part = Annotated[Literal["live"] | None, Query(description="only the live part of the page")]
LIVE_HEADER = "X-Live"  # "true" while the page's data can still change


def _render(
    dashboard: Dashboard, request: Request, page: str, part: str | None, live: bool, **context: Any
) -> Response:
    template = f"{page}_live.html" if part else f"{page}.html"
    response = dashboard.templates.TemplateResponse(
        request, template, {"live": live, "page": page, **context}
    )
    response.headers[LIVE_HEADER] = "true" if live else "false"
    return response


def _any_sweep_running(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(Sweep.status == SweepStatus.RUNNING))))


class BadAddress(ValueError):
    """A query parameter the page cannot use; the message names it."""


def _leaderboard_filters(
    sweep: Annotated[str | None, Query(max_length=20)] = None,
    stage: Annotated[str | None, Query(max_length=20)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Filters:
    # Strings, not ints: the filter form sends "all" as an empty value.
    statuses = [s.value for s in TrialStatus]
    if status and status not in statuses:
        raise BadAddress(f"status: {status!r} is not one of {', '.join(statuses)}")
    every = sweep == ALL_SWEEPS
    return Filters(
        None if every else _optional_int("sweep", sweep, 1, MAX_ID),
        _optional_int("stage", stage, 0, 1000),
        status or None,
        every_sweep=every,
    )


def _optional_int(name: str, text: str | None, low: int, high: int) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadAddress(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadAddress(f"{name}: must be from {low} to {high}, got {value}")
    return value


@router.get("/")
def read_leaderboard(
    request: Request,
    dashboard: DashboardDep,
    filters: Annotated[Filters, Depends(_leaderboard_filters)],
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    part: Part = None,
) -> Response:
    """The trials of one sweep (the newest, unless the address names one, or all of them
    with sweep=all), best validation accuracy first: trials of unrelated datasets are not
    ranked together unless asked."""
    with dashboard.db.reading() as session:
        if filters.sweep is None and not filters.every_sweep:
            newest = session.scalar(select(Sweep.id).order_by(Sweep.id.desc()).limit(1))
            filters = dataclasses.replace(filters, sweep=newest)
        board = load_leaderboard(session, filters, offset)
        live = _any_sweep_running(session)
        # The filter form is not part of the live part: no need to list sweeps every 2 s.
        sweeps = [] if part else sweep_choices(session)
        return _render(
            dashboard,
            request,
            "leaderboard",
            part,
            live,
            board=board,
            sweeps=sweeps,
            filters=filters,
            statuses=[s.value for s in TrialStatus],
        )


@router.get("/sweeps")
def read_sweeps(request: Request, dashboard: DashboardDep, part: Part = None) -> Response:
    """Every sweep, newest first: name, dataset, status, progress, best."""
    with dashboard.db.reading() as session:
        rows = list_sweeps(session)
        return _render(dashboard, request, "sweeps", part, _any_sweep_running(session), rows=rows)


@router.get("/sweeps/{sweep_id}")
def read_sweep(
    sweep_id: Id, request: Request, dashboard: DashboardDep, part: Part = None
) -> Response:
    """A sweep's stages (progress, ranges, warnings) and its plots."""
    with dashboard.db.reading() as session:
        sweep = get_sweep(session, sweep_id)
        summary = sweep_public(session, sweep)
        space = sweep.spec.get("space", {})
        ensembles = session.scalars(
            select(Ensemble).where(Ensemble.sweep_id == sweep_id).order_by(Ensemble.id.desc())
        ).all()
        evaluating = any(not e.status.is_final for e in ensembles)
        return _render(
            dashboard,
            request,
            "sweep",
            part,
            sweep.status == SweepStatus.RUNNING or evaluating,
            sweep=summary,
            ensembles=[ensemble_public(e) for e in ensembles],
            log_parameters=log_parameters(space),
            pair=pair_of(space),
        )


@router.get("/trials/{trial_id}")
def read_trial(
    trial_id: Id, request: Request, dashboard: DashboardDep, part: Part = None
) -> Response:
    """A trial's curves, hyperparameters, status and checkpoints."""
    with dashboard.db.reading() as session:
        trial = get_trial(session, trial_id)
        sweep = session.get(Sweep, trial.sweep_id)
        best = best_checkpoint(trial.checkpoints)
        weights_note = None if part else _weights_note(dashboard.settings.checkpoint_dir, trial)
        builtin = sweep is None or sweep.spec.get("trainer", BUILTIN) == BUILTIN
        if builtin:
            hidden = trial.hyperparameters.get("hidden_sizes") or TrainConfig().hidden_sizes
            layers = [f"layer{i}" for i in range(1, len(hidden) + 1)]
        else:  # the layers a user trainer reports, if it reports any
            layers = reported_layers(session, trial.id)
        # A promoted trial whose best epoch is its parent's: that file is the parent's.
        best_file = best_epoch_file(trial, trial_lookup(session))
        inherited = None
        if best_file is not None and best_file not in trial.checkpoints:
            name = PurePosixPath(best_file).name
            inherited = {"trial_id": parse_checkpoint_name(name).trial_id, "name": name}
        return _render(
            dashboard,
            request,
            "trial",
            part,
            not trial.status.is_final,
            trial=trial,
            sweep_name=sweep.name if sweep else "",
            checkpoints=[PurePosixPath(p).name for p in trial.checkpoints],
            best_checkpoint=PurePosixPath(best).name if best else None,
            inherited_best=inherited,
            layers=layers,
            probe_rows=PROBE_ROWS,
            findings=trial_findings(trial),
            weights=weights_note,
        )


def reported_layers(session: Session, trial_id: int) -> list[str]:
    """The hidden layers whose activations a trial's latest epoch recorded."""
    latest = session.scalar(
        select(TrialEpoch.distributions)
        .where(TrialEpoch.trial_id == trial_id)
        .order_by(TrialEpoch.epoch.desc())
        .limit(1)
    )
    activations = (latest or {}).get("activations") or {}
    return sorted(activations, key=lambda name: int(name.removeprefix("layer") or 0))


def _weights_note(root: Path, trial: Trial) -> dict[str, Any]:
    """Whether the first-layer weights can be drawn, and what the picture holds."""
    best = best_on_disk(root, trial)
    if best is None:
        return {"ok": False, "text": "no checkpoint yet"}
    try:
        shown, units, shape = describe_first_layer(best)
    except NoImage as exc:
        return {"ok": False, "text": str(exc)}
    more = f" (the first {shown} of {units})" if shown < units else ""
    size = "x".join(map(str, shape))
    return {
        "ok": True,
        "text": f"{units} hidden units as {size} images{more}, from {best.name}",
    }


@router.get("/workers")
def read_workers(request: Request, dashboard: DashboardDep, part: Part = None) -> Response:
    """Each worker, its state, current trial and last heartbeat (from Redis)."""
    error = None
    workers: list[WorkerPublic] = []
    running: dict[str, int] = {}
    with dashboard.db.reading() as session:
        try:
            workers = live_workers(dashboard.redis, session)
        except RedisError as exc:
            error = f"Redis ({redact_url(dashboard.settings.redis_url)}) is unreachable: {exc}"
            running = running_trials(session)
    return _render(
        dashboard, request, "workers", part, True, workers=workers, error=error, running=running
    )
