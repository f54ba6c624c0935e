"""The console's FastAPI application: security guard, sessions, and the page and API routers.

Every route (pages and ``/api``) passes :func:`guard`: without a password only loopback host
names are served (a web page cannot reach the console through DNS rebinding); with one, a
logged-in session is needed; every write (POST/PUT/DELETE) needs the session's CSRF token in the
``X-CSRF-Token`` header (the login and logout forms carry it as a field). Responses carry a strict
Content-Security-Policy: the pages run only this console's own scripts.

Example:
    >>> safe_next("/events?camera=1"), safe_next("//evil.example/"), safe_next("https://x")
    ('/events?camera=1', '/', '/')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from trakr.ui.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    Sessions,
    is_loopback,
)
from trakr.ui.state import ConsoleState

HERE = Path(__file__).parent
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_PATHS = {"/login", "/api/session", "/api/login"}
FORM_CSRF_PATHS = {"/login", "/logout"}
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class LoginRequired(Exception):
    """A page was asked for without a logged-in session."""


def safe_next(target: str | None) -> str:
    """Only local paths are followed after a login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class Console:
    """What the routes share: the state, the password hash, sessions and the login limiter."""

    def __init__(self, state: ConsoleState, password_hash: str | None = None):
        self.state = state
        self.password_hash = password_hash
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    def session(self, request: Request) -> Session | None:
        return getattr(request.state, "session", None)

    def ensure_session(self, request: Request) -> tuple[Session, bool]:
        """The request's session, or a new (not logged-in) one; ``True`` if new."""
        s = self.session(request)
        if s is not None:
            return s, False
        s = self.sessions.new(authenticated=False)
        request.state.session = s
        return s, True

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(SESSION_COOKIE, session.sid, httponly=True, samesite="strict", path="/")

    def logged_in(self, request: Request) -> bool:
        s = self.session(request)
        return self.password_hash is None or bool(s and s.authenticated)

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        session, new = self.ensure_session(request)
        context.update(
            csrf_token=self.sessions.csrf_token(session.sid),
            password_set=self.password_hash is not None,
            logged_in=self.logged_in(request),
            active=template.removesuffix(".html"),
        )
        response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        if new:
            self.set_cookie(response, session)
        return response


def _host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def guard(request: Request) -> None:
    """Host check, login check and CSRF check of every route."""
    c: Console = request.app.state.console
    if c.password_hash is None and not is_loopback(_host_name(request)):
        raise HTTPException(403, "this console has no password: open it as http://127.0.0.1:<port>/")
    sid = request.cookies.get(SESSION_COOKIE)
    request.state.session = c.sessions.get(sid)
    path = request.url.path
    if request.method not in SAFE_METHODS:
        token = request.headers.get(CSRF_HEADER)
        if token is None and path in FORM_CSRF_PATHS:
            value = (await request.form()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        if not c.sessions.check_csrf(sid, token):
            raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    if path not in PUBLIC_PATHS and not c.logged_in(request):
        if path.startswith("/api/"):
            raise HTTPException(401, "log in first (POST /api/login)")
        raise LoginRequired(path)


class SecurityHeaders:
    """ASGI middleware adding CSP and friends to every response (streams included)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                    b"cache-control": b"no-store",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(state: ConsoleState, password_hash: str | None = None) -> FastAPI:
    """The console app for ``state`` (routes in :mod:`trakr.ui.api` and :mod:`trakr.ui.pages`)."""
    from trakr.ui.api import router as api_router
    from trakr.ui.pages import router as page_router

    app = FastAPI(
        title="trakr console API",
        version="1",
        description="The JSON API of trakr's web console: cameras, live previews, events, ROIs, health. "
        "The console's pages use the same API. Writes need the session's CSRF token "
        "(GET /api/session) in the X-CSRF-Token header; with a password set, POST /api/login first.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = Console(state, password_hash)
    app.include_router(api_router)
    app.include_router(page_router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.method not in SAFE_METHODS:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        c: Console = request.app.state.console
        return c.page(request, "error.html", status_code=exc.status_code, message=exc.detail, status=exc.status_code)

    app.add_middleware(SecurityHeaders)
    return app
