"""The console's JSON API under ``/api`` (the pages use it too); OpenAPI at ``/api/openapi.json``.

Reads: cameras and their live previews (JPEG, MJPEG), the ROI editor model, events (filtered,
keyset-paged) with their evidence image, record and delivery state, and health. Writes: login,
logout, and saving a camera's ROIs. Writes need the ``X-CSRF-Token`` header (``GET /api/session``).

Example (with a console on 127.0.0.1:8080)::

    curl -s http://127.0.0.1:8080/api/cameras
    curl -s 'http://127.0.0.1:8080/api/events?camera=2&rule=person&limit=10'
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from trakr.ui.app import Console, guard
from trakr.ui.events import WHOLE_CAMERA, Filters, delivery, inside_dir, parse_cursor
from trakr.ui.roi import RoiEdit
from trakr.ui.state import SaveError, clean, problem_json

router = APIRouter(prefix="/api", dependencies=[Depends(guard)], tags=["console"])
BOUNDARY = "trakrframe"


def _c(request: Request) -> Console:
    return request.app.state.console


# ------------------------------------------------------------------------------------------ models


class SessionInfo(BaseModel):
    authenticated: bool = Field(description="True when no password is set or the session logged in.")
    password_required: bool = Field(description="The console has a password.")
    csrf_token: str = Field(description="Send as X-CSRF-Token with every write.")


class LoginBody(BaseModel):
    password: str = Field(description="The console password.")


class CameraView(BaseModel):
    camera_id: int
    name: str
    label: str
    address: str = Field(description="Camera address with credentials redacted.")
    state: str = Field(description="starting, up or down.")
    reason: str = Field(description="Why it is in that state.")
    capture_fps: float
    analysed_fps: float | None = Field(description="Frames analysed per second (None until measured).")
    frames_analysed: int
    frames_dropped: int
    reconnects: int
    failures: int
    last_error: str
    last_frame_age_s: float | None
    last_analysed_at: float | None
    frame_size: list[int] | None
    detections: int = Field(description="Detections in the latest analysed frame.")
    triggers: list[str]
    zone_problems: list[str] = Field(description="Polygons that cannot work on this camera's frames.")


class EventItem(BaseModel):
    alert_id: str
    captured_at: float
    captured_at_iso: str
    camera_id: int
    camera_name: str
    roi: str | None
    violation: str
    objects: int
    image_url: str | None
    record_path: str | None
    delivery: dict


class EventPage(BaseModel):
    items: list[EventItem]
    total: int = Field(description="Events matching the filters.")
    next: str | None = Field(description="Pass as ?before= for the next (older) page; None on the last.")


class ProblemView(BaseModel):
    where: str
    field: str
    value: str
    message: str
    severity: str
    text: str


class SaveResult(BaseModel):
    ok: bool
    message: str
    config_sha: str
    warnings: list[ProblemView]


# ------------------------------------------------------------------------------------------ session


@router.get("/session", response_model=SessionInfo, summary="The session and its CSRF token")
def session_info(request: Request) -> Response:
    c = _c(request)
    s, new = c.ensure_session(request)
    body = SessionInfo(
        authenticated=c.logged_in(request),
        password_required=c.password_hash is not None,
        csrf_token=c.sessions.csrf_token(s.sid),
    )
    response = JSONResponse(body.model_dump())
    if new:
        c.set_cookie(response, s)
    return response


def login_attempt(c: Console, request: Request, password: str):
    """A new logged-in session, or an HTTPException (401 wrong, 429 too many tries)."""
    client = request.client.host if request.client else "?"
    wait = c.limiter.retry_after(client)
    if wait > 0:
        raise HTTPException(429, f"too many failed logins: try again in {wait:.0f} s", {"Retry-After": f"{wait:.0f}"})
    from trakr.ui.auth import verify_password

    if c.password_hash is None or not verify_password(password, c.password_hash):
        c.limiter.failed(client)
        raise HTTPException(401, "wrong password")
    old = c.session(request)
    if old is not None:
        c.sessions.drop(old.sid)  # a fresh id after login (no session fixation)
    s = c.sessions.new(authenticated=True)
    request.state.session = s
    return s


@router.post("/login", summary="Log in with the console password")
def api_login(request: Request, body: LoginBody) -> Response:
    c = _c(request)
    s = login_attempt(c, request, body.password)
    response = JSONResponse({"ok": True, "csrf_token": c.sessions.csrf_token(s.sid)})
    c.set_cookie(response, s)
    return response


@router.post("/logout", summary="End the session")
def api_logout(request: Request) -> dict:
    c = _c(request)
    s = c.session(request)
    if s is not None:
        c.sessions.drop(s.sid)
    return {"ok": True}


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict:
    return request.app.openapi()


# ------------------------------------------------------------------------------------------ cameras


@router.get("/cameras", response_model=list[CameraView], summary="Every camera: state, rates, zone problems")
def cameras(request: Request) -> list[dict]:
    return _c(request).state.cameras()


def _camera_or_404(c: Console, camera_id: int) -> None:
    if c.state.camera(camera_id) is None:
        raise HTTPException(404, f"no camera {camera_id}")


def _jpeg(c: Console, camera_id: int, width: int | None, annotated: bool) -> Response:
    _camera_or_404(c, camera_id)
    got = c.state.previewer.jpeg(camera_id, width, annotated)
    if got is None:
        raise HTTPException(503, f"camera {camera_id} has no analysed frame yet", {"Retry-After": "1"})
    data, af = got
    return Response(
        data,
        media_type="image/jpeg",
        headers={"X-Frame-Seq": str(af.frame.seq), "X-Captured-At": f"{af.frame.captured_at:.3f}"},
    )


@router.get(
    "/cameras/{camera_id}/preview.jpg",
    summary="Latest analysed frame with boxes and ROIs (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def preview(request: Request, camera_id: int, width: int | None = Query(None, ge=64, le=4096)) -> Response:
    return _jpeg(_c(request), camera_id, width, True)


@router.get(
    "/cameras/{camera_id}/snapshot.jpg",
    summary="Latest frame, full size, without drawings (for the ROI editor)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def snapshot(request: Request, camera_id: int) -> Response:
    return _jpeg(_c(request), camera_id, None, False)


@router.get(
    "/cameras/{camera_id}/stream.mjpg",
    summary="Live MJPEG stream (multipart/x-mixed-replace) of the annotated frames",
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    camera_id: int,
    width: int | None = Query(None, ge=64, le=4096),
    fps: float = Query(5.0, gt=0, le=30),
) -> StreamingResponse:
    c = _c(request)
    _camera_or_404(c, camera_id)
    prev = c.state.previewer
    period = 1.0 / min(fps, prev.fps)

    async def frames():
        last = None
        while not c.state.stopping.is_set():
            if await request.is_disconnected():
                return
            got = await anyio.to_thread.run_sync(prev.jpeg, camera_id, width, True)
            if got is not None and got[1] is not last:
                data, last = got
                yield (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + b"\r\n"
                )
            await asyncio.sleep(period)

    return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


@router.get("/cameras/{camera_id}/rois", summary="The camera's zones for the ROI editor (normalised points)")
def rois(request: Request, camera_id: int) -> dict:
    model = _c(request).state.editor(camera_id)
    if model is None:
        raise HTTPException(404, f"no camera {camera_id}")
    return model


@router.put(
    "/cameras/{camera_id}/rois",
    response_model=SaveResult,
    summary="Save the camera's zones: validated, written to the config file, applied live",
    responses={422: {"description": "Refused; 'problems' lists each by camera, field and value"}, 409: {}},
)
def save_rois(request: Request, camera_id: int, edit: RoiEdit) -> Response:
    c = _c(request)
    _camera_or_404(c, camera_id)
    try:
        result = c.state.save_rois(camera_id, edit)
    except SaveError as e:
        return JSONResponse(
            {"detail": e.message, "problems": [problem_json(p) for p in e.problems]}, status_code=e.status
        )
    return JSONResponse(result)


# ------------------------------------------------------------------------------------------ events


def _iso(t: float) -> str:
    from trakr.types import iso_utc

    return iso_utc(t)


def event_item(c: Console, row: dict) -> dict:
    return {
        **row,
        "captured_at_iso": _iso(row["captured_at"]),
        "image_url": f"/api/events/{row['alert_id']}/image.jpg" if row.get("evidence_image") else None,
        "delivery": delivery(c.state.outbox, row["alert_id"]),
    }


def filters_from(
    camera: int | None, rule: str | None, roi: str | None, since: float | None, until: float | None
) -> Filters:
    return Filters(camera=camera, rule=rule or None, roi=roi or None, since=since, until=until)


@router.get("/events", response_model=EventPage, summary="Stored alerts, newest first, filtered and paged")
def events(
    request: Request,
    camera: int | None = Query(None, description="Camera id."),
    rule: str | None = Query(None, description="Violation, e.g. person or nohelmet."),
    roi: str | None = Query(None, description=f"ROI name; '{WHOLE_CAMERA}' = camera-wide alerts."),
    since: float | None = Query(None, description="Captured at or after (epoch seconds)."),
    until: float | None = Query(None, description="Captured before (epoch seconds)."),
    before: str | None = Query(None, description="The 'next' cursor of the previous page."),
    limit: int = Query(50, ge=1, le=500),
) -> dict:
    c = _c(request)
    if before:
        try:
            parse_cursor(before)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
    page = c.state.events.query(filters_from(camera, rule, roi, since, until), before=before, limit=limit)
    return {"items": [event_item(c, r) for r in page.items], "total": page.total, "next": page.next}


@router.get("/events/facets", summary="Cameras, rules and ROIs that have events (filter menus)")
def facets(request: Request) -> dict:
    return _c(request).state.events.facets()


def _event_or_404(c: Console, alert_id: str) -> dict:
    row = c.state.events.get(alert_id)
    if row is None:
        raise HTTPException(404, f"no event {alert_id!r}")
    return row


def event_record(c: Console, row: dict) -> dict | None:
    """The stored JSON record of an event (redacted), or ``None`` if retention removed it."""
    path = inside_dir(c.state.output_dir, row.get("record_path"))
    if path is None:
        return None
    try:
        return json.loads(clean(path.read_text()))
    except (OSError, ValueError):
        return None


@router.get("/events/{alert_id}", summary="One event: its record and delivery state")
def event(request: Request, alert_id: str) -> dict[str, Any]:
    c = _c(request)
    row = _event_or_404(c, alert_id)
    return {**event_item(c, row), "record": event_record(c, row)}


@router.get(
    "/events/{alert_id}/image.jpg",
    summary="The event's evidence image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def event_image(request: Request, alert_id: str) -> Response:
    c = _c(request)
    row = _event_or_404(c, alert_id)
    path = inside_dir(c.state.output_dir, row.get("evidence_image"))
    if path is None or path.suffix.lower() not in (".jpg", ".jpeg"):
        raise HTTPException(404, "no evidence image (not saved, or removed by retention)")
    return Response(path.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# ------------------------------------------------------------------------------------------ health


@router.get("/health", summary="Cameras, detector, outbox, disk use and config version")
def health(request: Request) -> dict:
    return _c(request).state.health()
