"""The dashboard behind HPSEARCH_API_TOKEN: with the token set, every page, figure and
download needs it; a browser signs in once on /login and keeps a signed cookie.

The cookie holds no token: it is an HMAC of a fixed message under the token, so it proves
knowledge of the token, changes when the token does, and never shows it. Scripts may send
`Authorization: Bearer <token>` as to the master. Open without it: /login, /healthz (for
probes) and /static (the page's own script and styles).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

COOKIE = "hpsearch_session"
COOKIE_DAYS = 30
OPEN_PATHS = ("/login", "/healthz")
OPEN_PREFIXES = ("/static/",)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"hpsearch dashboard session", hashlib.sha256).hexdigest()


def signed_in(request: Request, token: str) -> bool:
    cookie = request.cookies.get(COOKIE, "")
    if cookie and hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no //host, no scheme)."""
    # Browsers read a slash and a backslash as two slashes: no backslash at all.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def install_auth(app: FastAPI, token: str, templates: Jinja2Templates) -> None:
    if not token:
        return

    @app.middleware("http")
    async def _gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or signed_in(request, token):
            return await call_next(request)
        if path.startswith("/api/") or request.method != "GET" or "/checkpoints/" in path:
            return JSONResponse(
                {"detail": "sign in first: the dashboard needs the API token"}, status_code=401
            )
        wanted = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(wanted, safe='')}", status_code=303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002
        return templates.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "wrong": False}
        )

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        given = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        if not hmac.compare_digest(given.encode(), token.encode()):
            return templates.TemplateResponse(
                request, "login.html", {"next": target, "wrong": True}, status_code=401
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(token),
            max_age=COOKIE_DAYS * 24 * 3600,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response
