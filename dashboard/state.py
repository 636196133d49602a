"""The dashboard's long-lived parts, built once per app, and how routes reach them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from redis import Redis

from master.db import Database
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
