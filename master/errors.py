"""How the API answers errors: always JSON with a message, never a stack trace.

422 lists one "field.path: problem" per invalid field (the same words `hpsearch submit`
prints); an unreachable database or Redis is 503; a body over the size limit is 413.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from master.db import DatabaseUnavailable
from master.spec import SpecError, describe_error_list
from master.sweeps import Conflict, NotFound

log = logging.getLogger(__name__)


def error_response(
    code: int,
    detail: str,
    problems: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "problems": problems or []}
    return JSONResponse(body, status_code=code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = describe_error_list(exc.errors(), strip_prefix=("body", "query", "path"))
        return error_response(422, "; ".join(problems), problems)

    @app.exception_handler(SpecError)
    async def _bad_spec(_: Request, exc: SpecError) -> JSONResponse:
        return error_response(422, str(exc), exc.problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def _no_database(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("%s", exc)
        return error_response(503, "the database is unavailable; try again shortly")

    @app.exception_handler(RedisError)
    async def _no_redis(_: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis: %s", exc)
        return error_response(503, f"Redis is unavailable ({type(exc).__name__}); try again")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the master's log has the details")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app: its handler answers with the JSON error.
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._message())
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(status.HTTP_413_CONTENT_TOO_LARGE, self._message())
        await response(scope, receive, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes (HPSEARCH_MAX_BODY_BYTES)"
