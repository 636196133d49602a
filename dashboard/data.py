"""What the pages load besides HTML: figures (JSON), weight images, checkpoint downloads,
and Plotly itself, from the plotly package's own bundled copy (no CDN)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from dashboard.figures import ensembles_figure, sweep_figures
from dashboard.files import NoSuchFile, best_on_disk, checkpoint_path
from dashboard.glance import curves_figure, importance_figure
from dashboard.state import DashboardDep, Id
from dashboard.trial_figures import trial_figures
from dashboard.weights import NoImage, first_layer_png
from master.models import Ensemble, SweepStatus, Trial
from master.sweeps import NotFound, get_sweep, get_trial

router = APIRouter()
CheckpointFile = Annotated[str, PathParam(min_length=1, max_length=200)]


@cache
def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/vendor/plotly.min.js", include_in_schema=False)
def read_plotly() -> FileResponse:
    """The plotly.js that the installed plotly package bundles."""
    return FileResponse(
        plotly_js(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/healthz", include_in_schema=False)
def read_health() -> dict[str, str]:
    """The process answers (it does not touch the database: pages say when that is down)."""
    return {"status": "ok"}


@router.get("/api/sweeps/{sweep_id}/figures")
def read_sweep_figures(sweep_id: Id, dashboard: DashboardDep) -> dict[str, Any]:
    """The sweep page's figures, and whether they can still change."""
    with dashboard.db.reading() as session:
        sweep = get_sweep(session, sweep_id)
        # Only the columns the figures use: a sweep may hold thousands of trials.
        trials = session.execute(
            select(
                Trial.id, Trial.stage_index, Trial.hyperparameters, Trial.best_val_acc, Trial.status
            )
            .where(Trial.sweep_id == sweep_id)
            .order_by(Trial.id)
        ).all()
        figures = sweep_figures(sweep.spec.get("space", {}), sweep.stages, trials)
        figures["plot-curves"] = curves_figure(session, sweep_id, len(sweep.stages))
        figures["plot-importance"] = importance_figure(
            session, sweep_id, sweep.spec.get("space", {})
        )
        ensembles = session.scalars(
            select(Ensemble).where(Ensemble.sweep_id == sweep_id).order_by(Ensemble.id)
        ).all()
        if any(e.curve for e in ensembles):
            figures["plot-ensembles"] = ensembles_figure([e for e in ensembles if e.curve])
        evaluating = any(not e.status.is_final for e in ensembles)
        return {"figures": figures, "live": sweep.status == SweepStatus.RUNNING or evaluating}


@router.get("/api/trials/{trial_id}/figures")
def read_trial_figures(trial_id: Id, dashboard: DashboardDep) -> dict[str, Any]:
    """The trial page's curves, and whether they can still change."""
    with dashboard.db.reading() as session:
        trial = get_trial(session, trial_id, options=[selectinload(Trial.epochs)])
        live = not trial.status.is_final
        return {"figures": trial_figures(trial.epochs), "live": live}


@router.get("/trials/{trial_id}/weights.png")
def read_weights(trial_id: Id, dashboard: DashboardDep) -> Response:
    """The first-layer weights of the trial's best checkpoint, one tile per hidden unit."""
    with dashboard.db.reading() as session:
        best = best_on_disk(dashboard.settings.checkpoint_dir, get_trial(session, trial_id))
    if best is None:
        raise NotFound(f"trial {trial_id}: no checkpoint yet")
    try:
        png = first_layer_png(best)
    except NoImage as exc:
        raise NotFound(f"trial {trial_id}: {exc}") from None
    return Response(png, media_type="image/png")


@router.get("/trials/{trial_id}/checkpoints/{name}")
def download_checkpoint(
    trial_id: Id, name: CheckpointFile, dashboard: DashboardDep
) -> FileResponse:
    """One of the trial's checkpoint files, as a download."""
    with dashboard.db.reading() as session:
        trial = get_trial(session, trial_id)
        try:
            path = checkpoint_path(dashboard.settings.checkpoint_dir, trial, name)
        except NoSuchFile as exc:
            raise NotFound(str(exc)) from None
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
