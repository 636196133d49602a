"""The dashboard's FastAPI app: pages, figures, files, and how it answers errors.

Read-only: it opens the database for reads and never creates tables or writes. Every page
answers with HTML, errors included: an unreachable database is a 503 page that says so,
a bad id a 400 page that names it. Each response carries a Server-Timing header with the
time spent in the app (benchmarks/leaderboard.py reads it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard import actions, data, pages
from dashboard.actions import ActionFailed
from dashboard.auth import install_auth
from dashboard.formatting import install_filters
from dashboard.pages import BadAddress
from dashboard.state import Dashboard
from master.db import Database, DatabaseUnavailable
from master.settings import Settings
from master.spec import describe_error_list
from master.sweeps import NotFound

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    templates = Jinja2Templates(directory=HERE / "templates")
    install_filters(templates.env)
    app = FastAPI(title="hpsearch dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    # Short timeouts: only the workers page reads Redis, and it must not hang on it.
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=2)
    app.state.dashboard = Dashboard(settings, Database(settings.database), redis, templates)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(data.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    _install_error_pages(app, templates)
    install_auth(app, settings.api_token, templates)
    app.add_middleware(ServerTiming)
    return app


def _install_error_pages(app: FastAPI, templates: Jinja2Templates) -> None:
    def error(request: Request, code: int, title: str, detail: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": f"{title}: {detail}"}, status_code=code)
        return templates.TemplateResponse(
            request, "error.html", {"title": title, "detail": detail}, status_code=code
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = describe_error_list(exc.errors(), strip_prefix=("query", "path"))
        return error(request, 400, "bad address", "; ".join(problems))

    @app.exception_handler(ActionFailed)
    async def _action_failed(request: Request, exc: ActionFailed) -> Response:
        return error(request, exc.status, "could not do it", str(exc))

    @app.exception_handler(BadAddress)
    async def _bad_address(request: Request, exc: BadAddress) -> Response:
        return error(request, 400, "bad address", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return error(request, 404, "not found", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = "no such page" if exc.status_code == 404 else str(exc.detail)
        return error(request, exc.status_code, f"error {exc.status_code}", detail)

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(SQLAlchemyError)
    async def _no_database(request: Request, exc: Exception) -> Response:
        log.warning("database: %s", exc)
        text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if "no such table" in text or "does not exist" in text:
            return error(
                request,
                503,
                "the database has no hpsearch tables yet",
                f"{text}. Start the master once (hpsearch master or hpsearch up) to create them.",
            )
        return error(
            request,
            503,
            "the database is unreachable",
            f"{text}. The dashboard reads everything from the database (DATABASE_URL); "
            "this page will work again once it answers.",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(request, 500, "internal error", "the dashboard's log has the details")


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>`: the time from request to response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
