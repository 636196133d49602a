"""The master's FastAPI app: the REST API, with the scheduler running beside it.

`create_app(settings)` builds everything from one Settings object; the scheduler thread
starts and stops with the app (lifespan), so `uvicorn` or a test client runs the whole master.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from master.docs import install_docs
from master.errors import BodySizeLimit, install_error_handlers
from master.routes import ensembles, health, leaderboard, sweeps, trials, workers
from master.services import Services, TokenDep
from master.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, run_scheduler: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        stopping = threading.Event()
        services.db.wait_and_create_tables(stopping)
        app.state.services = services
        thread = threading.Thread(
            target=services.scheduler.run, args=(stopping,), name="scheduler", daemon=True
        )
        if run_scheduler:
            thread.start()
        try:
            yield
        finally:
            stopping.set()
            if thread.is_alive():
                thread.join(timeout=10)
            services.close()

    app = FastAPI(
        title="hpsearch master",
        summary="Coarse-to-fine random hyperparameter search: sweeps, trials, workers.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # master.docs serves them without a CDN
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    # With HPSEARCH_API_TOKEN set, every call needs it; health stays open for probes (it
    # names no path), and so do the docs (they describe the API, not its data).
    for module in (sweeps, trials, ensembles, leaderboard, workers):
        app.include_router(module.router, dependencies=[TokenDep])
    app.include_router(health.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
