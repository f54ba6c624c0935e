"""The console's pages, rendered on the server (Jinja2); a little vanilla JS keeps them live.

``/`` live grid, ``/cameras/{id}`` one camera full size, ``/events`` and ``/events/{id}``,
``/roi/{id}`` the ROI editor, ``/health``, ``/api`` the API reference, ``/login``.

Example:
    >>> parse_local("2026-11-24T10:30") == time.mktime((2026, 11, 24, 10, 30, 0, 0, 0, -1))
    True
    >>> parse_local("") is None and parse_local("yesterday") is None
    True
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from trakr.types import iso_utc
from trakr.ui.api import event_item, event_record, filters_from, login_attempt
from trakr.ui.app import Console, guard, safe_next
from trakr.ui.events import WHOLE_CAMERA, parse_cursor

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)


def _c(request: Request) -> Console:
    return request.app.state.console


def parse_local(text: str | None) -> float | None:
    """A ``datetime-local`` form value (local time) as epoch seconds; ``None`` if empty or bad."""
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(text, fmt))
        except ValueError:
            continue
    return None


def local_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


@router.get("/")
def live(request: Request) -> Response:
    c = _c(request)
    fps = c.state.previewer.fps
    return c.page(request, "live.html", cameras=c.state.cameras(), grid_fps=min(fps, 2.0), preview_fps=fps)


@router.get("/cameras/{camera_id}")
def camera_page(request: Request, camera_id: int) -> Response:
    c = _c(request)
    cam = next((v for v in c.state.cameras() if v["camera_id"] == camera_id), None)
    if cam is None:
        raise HTTPException(404, f"no camera {camera_id}")
    return c.page(request, "camera.html", camera=cam, preview_fps=c.state.previewer.fps)


@router.get("/events")
def events_page(
    request: Request,
    camera: str = "",
    rule: str = "",
    roi: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
) -> Response:
    c = _c(request)
    cam_id = int(camera) if camera.strip().lstrip("-").isdigit() else None
    cursor = before or None
    if cursor:
        try:
            parse_cursor(cursor)
        except ValueError:
            cursor = None
    f = filters_from(cam_id, rule, roi, parse_local(since), parse_local(until))
    page = c.state.events.query(f, before=cursor, limit=25)
    items = []
    for row in page.items:
        it = event_item(c, row)
        it["local_time"] = local_time(row["captured_at"])
        it["record"] = event_record(c, row)
        items.append(it)
    query = {"camera": camera, "rule": rule, "roi": roi, "since": since, "until": until}
    return c.page(
        request,
        "events.html",
        items=items,
        total=page.total,
        next=page.next,
        first_page=cursor is None,
        query=query,
        facets=c.state.events.facets(),
        whole_camera=WHOLE_CAMERA,
    )


@router.get("/events/{alert_id}")
def event_page(request: Request, alert_id: str) -> Response:
    c = _c(request)
    row = c.state.events.get(alert_id)
    if row is None:
        raise HTTPException(404, f"no event {alert_id}")
    it = event_item(c, row)
    it["local_time"] = local_time(row["captured_at"])
    return c.page(request, "event.html", event=it, record=event_record(c, row), iso=iso_utc(row["captured_at"]))


@router.get("/roi")
def roi_index(request: Request) -> Response:
    cams = _c(request).state.config.cameras
    if not cams:
        raise HTTPException(404, "no cameras configured")
    return RedirectResponse(f"/roi/{cams[0].camera_id}", status_code=303)


@router.get("/roi/{camera_id}")
def roi_page(request: Request, camera_id: int) -> Response:
    c = _c(request)
    cam = c.state.camera(camera_id)
    if cam is None:
        raise HTTPException(404, f"no camera {camera_id}")
    return c.page(
        request,
        "roi.html",
        camera=cam,
        cameras=c.state.config.cameras,
        config_path=str(c.state.config_path) if c.state.config_path else None,
    )


@router.get("/health")
def health_page(request: Request) -> Response:
    c = _c(request)
    return c.page(request, "health.html", h=c.state.health(), mb=_mb, local_time=local_time)


@router.get("/api")
def api_page(request: Request) -> Response:
    c = _c(request)
    spec = request.app.openapi()
    routes = [
        {"method": m.upper(), "path": p, "summary": op.get("summary", "")}
        for p, ops in spec.get("paths", {}).items()
        for m, op in ops.items()
    ]
    return c.page(request, "api.html", routes=routes)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    c = _c(request)
    if c.password_hash is None or c.logged_in(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return c.page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login_form(request: Request, password: str = Form(""), next: str = Form("/")) -> Response:
    c = _c(request)
    try:
        s = login_attempt(c, request, password)
    except HTTPException as e:
        resp = c.page(request, "login.html", status_code=e.status_code, next=safe_next(next), error=e.detail)
        for k, v in (e.headers or {}).items():
            resp.headers[k] = v
        return resp
    resp = RedirectResponse(safe_next(next), status_code=303)
    c.set_cookie(resp, s)
    return resp


@router.post("/logout")
def logout_form(request: Request) -> Response:
    c = _c(request)
    s = c.session(request)
    if s is not None:
        c.sessions.drop(s.sid)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie("trakr_session", path="/")
    return resp
