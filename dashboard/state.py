"""The dashboard's long-lived parts, built once per app, how routes reach them, and the
ids routes take from URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from redis import Redis

from master.db import Database
from master.models import MAX_ID
from master.settings import Settings


@dataclass
class Dashboard:
    settings: Settings
    db: Database
    redis: Redis  # only the workers page reads it
    templates: Jinja2Templates


def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]
# A sweep or trial id, as the database holds them.
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
