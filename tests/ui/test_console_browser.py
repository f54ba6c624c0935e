"""The console in a real headless Chromium (Debian's package, driven by Playwright) against a real
``trakr run`` on 4 RTSP cameras: the live grid, one camera full size, an alert arriving in the
events list, an ROI drawn with the mouse, saved to the config file and used by the next alert, a
bad polygon refused, a write without the CSRF token refused, the login page. Each page is saved
as a screenshot (``$TRAKR_SCREENSHOTS``, e.g. docs/screenshots, or a temp folder)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from helpers import free_port

from trakr.config import parse_config
from trakr.pipeline import Pipeline
from trakr.ui.auth import hash_password
from trakr.ui.server import start_console

VIEW = {"width": 1400, "height": 950}


def _poll(page, cond, seconds: float, what: str) -> None:
    """Let the page run (events are processed) until ``cond()``; fail naming ``what``."""
    for _ in range(int(seconds * 4)):
        if cond():
            return
        page.wait_for_timeout(250)
    assert cond(), what


def _natural_width(page, selector: str) -> int:
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


def _pixels(page, selector: str) -> str:
    """The image as the page shows it now (same-origin, so readable through a canvas)."""
    return page.eval_on_selector(
        selector,
        """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth;
                  c.height = img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0);
                  return c.toDataURL('image/png'); }""",
    )


def test_live_grid_shows_four_cameras_whose_images_change(live_trakr, browser, screenshots):
    page = browser.new_page(viewport=VIEW)
    previews: dict[int, list] = {}

    def on_response(resp):
        m = re.search(r"/api/cameras/(\d+)/preview\.jpg", resp.url)
        if m and resp.status == 200:
            previews.setdefault(int(m.group(1)), []).append(resp)

    page.on("response", on_response)
    try:
        page.goto(live_trakr.url + "/")
        assert page.locator(".tile").count() == 4
        page.wait_for_function("() => document.querySelectorAll('.tile.has-frame').length === 4", timeout=30_000)
        _poll(page, lambda: all(len(previews.get(c, [])) >= 4 for c in range(4)), 30, f"previews: {previews}")
        for cam in range(4):
            bodies = {r.body() for r in previews[cam]}
            assert len(bodies) >= 3, f"camera {cam}'s image does not change"
        captions = page.locator(".tile [data-field='state']").all_inner_texts()
        assert all(t.startswith("up") for t in captions), captions
        _poll(page, lambda: "analysed …" not in page.inner_text("#grid"), 10, "analysed fps never shown")
        assert "lies entirely outside the 768x576 frame" in page.inner_text(".tile[data-camera='3']")
        page.screenshot(path=str(screenshots / "live.png"))

        page.goto(live_trakr.url + "/cameras/0")
        page.wait_for_function("() => document.getElementById('stream').naturalWidth === 768", timeout=20_000)
        first = _pixels(page, "#stream")
        _poll(page, lambda: _pixels(page, "#stream") != first, 10, "the MJPEG view does not move")
        page.screenshot(path=str(screenshots / "camera.png"))
    finally:
        page.close()


def test_a_new_alert_appears_in_the_events_list_with_its_image(live_trakr, browser, screenshots):
    since = time.time()
    fresh: dict = {}

    def new_alert() -> bool:
        items = live_trakr.api("/api/events", params={"camera": 2, "since": since, "limit": 1})["items"]
        fresh.update(items[0] if items else {})
        return bool(fresh)

    page = browser.new_page(viewport=VIEW)
    try:
        page.goto(live_trakr.url + "/events?camera=2")
        _poll(page, new_alert, 40, "no new alert on camera 2")
        page.reload()
        row = page.locator(f"li.event[data-alert='{fresh['alert_id']}']")
        assert row.count() == 1
        sel = f"li.event[data-alert='{fresh['alert_id']}'] img"
        _poll(page, lambda: _natural_width(page, sel) == 768, 10, "evidence thumbnail not loaded")
        assert row.locator(".delivery").inner_text() in ("queued", "sent")
        assert "person" in row.inner_text() and "camera 2" in row.inner_text()
        page.screenshot(path=str(screenshots / "events.png"))

        row.locator("a.when").click()
        page.wait_for_url(re.compile(r"/events/" + fresh["alert_id"]))
        _poll(page, lambda: _natural_width(page, "#evidence") == 768, 10, "evidence image not loaded")
        assert json.loads(page.inner_text("#record"))["alert_id"] == fresh["alert_id"]
        page.screenshot(path=str(screenshots / "event.png"))
    finally:
        page.close()


def test_roi_drawn_with_the_mouse_is_saved_and_used_by_the_next_alert(live_trakr, browser, screenshots):
    path = live_trakr.config_path
    original_text = path.read_text()
    original = json.loads(original_text)
    page = browser.new_page(viewport=VIEW)
    try:
        page.goto(live_trakr.url + "/roi/0")
        page.wait_for_selector("#stage.ready", timeout=20_000)
        page.wait_for_function("() => document.querySelectorAll('#zone-list li').length === 3")
        # remove the walkway ROI, add "yard" drawn with the mouse
        page.locator("#zone-list li", has_text="walkway").click()
        page.click("#delete-zone")
        page.click("#add-roi")
        page.fill("#zone-name", "yard")
        box = page.locator("#canvas").bounding_box()

        def at(x: float, y: float) -> tuple[float, float]:
            return box["x"] + x * box["width"], box["y"] + y * box["height"]

        for x, y in [(0.02, 0.30), (0.98, 0.30), (0.98, 0.95), (0.5, 0.97), (0.02, 0.95)]:
            page.mouse.click(*at(x, y))
        page.mouse.move(*at(0.98, 0.30))  # drag a point
        page.mouse.down()
        page.mouse.move(*at(0.96, 0.28), steps=5)
        page.mouse.up()
        page.mouse.click(*at(0.5, 0.97), button="right")  # delete a point
        assert "yard · 4 points · person" in page.inner_text("#zone-list")
        saved_at = time.time()
        page.click("#save")
        page.wait_for_selector("#roi-status.ok", timeout=10_000)
        assert "saved to" in page.inner_text("#roi-status")
        page.screenshot(path=str(screenshots / "roi.png"))

        # the file on disk: legacy format, unknown keys kept, previous version kept
        raw = json.loads(path.read_text())
        cam0 = raw["cameras"][0]
        rois = cam0["roi_config"]["roi_config"]
        assert sorted(rois) == ["gate", "yard"]
        assert rois["gate"] == original["cameras"][0]["roi_config"]["roi_config"]["gate"]  # "colour" kept
        assert rois["yard"]["detections"] == "person"
        pts = np.array([[float(v) for v in p.split(",")] for p in rois["yard"]["points"]])
        assert all(re.fullmatch(r"[01](\.\d{1,4})?,[01](\.\d{1,4})?", p) for p in rois["yard"]["points"])
        want = np.array([(0.02, 0.30), (0.96, 0.28), (0.98, 0.95), (0.02, 0.95)])
        assert pts.shape == (4, 2) and np.abs(pts - want).max() < 0.01, pts
        assert raw["site_notes"] == original["site_notes"] and cam0["vendor_note"] == "keep me"
        assert raw["cameras"][1:] == original["cameras"][1:] and raw["common"] == original["common"]
        assert path.with_name(path.name + ".prev").read_text() == original_text
        assert parse_config(raw).ok

        # applied live: the next alerts of camera 0 are in "yard", with their feet inside it
        def yard_alert() -> dict | None:
            items = live_trakr.api("/api/events", params={"camera": 0, "since": saved_at + 1, "limit": 50})["items"]
            return next((e for e in items if e["roi"] == "yard"), None)

        _poll(page, lambda: yard_alert() is not None, 40, "no alert in the new ROI")
        alert = live_trakr.api(f"/api/events/{yard_alert()['alert_id']}")["record"]
        w, h = alert["frame_size"]
        poly = pts * [w, h]
        for o in alert["objects"]:
            x0, _, x1, y1 = o["xyxy"]
            fx, fy = (x0 + x1) / 2, y1
            assert poly[:, 0].min() <= fx <= poly[:, 0].max() and poly[:, 1].min() - 3 <= fy <= poly[:, 1].max()
        later = live_trakr.api("/api/events", params={"camera": 0, "since": saved_at + 1, "limit": 500})["items"]
        assert not [e for e in later if e["roi"] == "walkway"], "the deleted ROI still alerts"

        # a bad polygon is refused with its message, and nothing is written
        before = path.read_bytes()
        page.click("#add-roi")
        page.fill("#zone-name", "bad")
        page.mouse.click(*at(0.3, 0.3))
        page.mouse.click(*at(0.4, 0.4))
        page.click("#save")
        page.wait_for_selector("#roi-status.bad", timeout=10_000)
        problems = page.inner_text("#roi-problems")
        assert "camera 0: roi_config.bad.points = [" in problems
        assert "a polygon needs at least 3 points, got 2" in problems
        assert path.read_bytes() == before

        # a write without the CSRF token is refused, from the console's own page
        status = page.evaluate(
            """async () => (await fetch('/api/cameras/0/rois', {method: 'PUT',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({camera: {points: null, triggers: []}, rois: []})})).status"""
        )
        assert status == 403 and path.read_bytes() == before
    finally:
        page.close()


def test_health_and_api_pages(live_trakr, browser, screenshots):
    page = browser.new_page(viewport=VIEW)
    try:
        page.goto(live_trakr.url + "/health")
        assert page.locator("#health-cameras tbody tr").count() == 4
        detector = page.inner_text("#health-detector")
        api = live_trakr.api("/api/health")["detector"]
        assert f"backend\t{api['backend']}" in detector and f"precision\t{api['precision']}" in detector
        assert "7.3.1" in page.inner_text("#config-version")
        assert "lies entirely outside" in page.inner_text("#health-cameras")
        assert "backlog" in page.inner_text("#health-outbox")
        page.screenshot(path=str(screenshots / "health.png"), full_page=True)
        page.goto(live_trakr.url + "/api")
        assert "/api/cameras/{camera_id}/rois" in page.inner_text("main")
        page.screenshot(path=str(screenshots / "api.png"))
    finally:
        page.close()


@pytest.fixture
def password_console(tmp_path, sample_clip):
    cfg = parse_config(
        {
            "common": {},
            "trakr": {"ui": {"password_hash": hash_password("site password 1")}},
            "cameras": [{"CameraId": 1, "CamName": "gate", "Address": str(sample_clip)}],
        }
    ).config
    pipeline = Pipeline(cfg, output_dir=tmp_path)  # not started: the login flow needs no frames
    server = start_console(pipeline, cfg, port=free_port())
    try:
        yield server
    finally:
        server.stop()


def test_login_page_sets_a_strict_httponly_session(browser, password_console, screenshots):
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    try:
        base = f"http://127.0.0.1:{password_console.port}"
        page.goto(base + "/health")
        assert page.url == base + "/login?next=/health"
        page.fill("input[name=password]", "not it")
        page.click("button[type=submit]")
        assert page.inner_text("#login-error") == "wrong password"
        page.screenshot(path=str(screenshots / "login.png"))
        page.fill("input[name=password]", "site password 1")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/health")
        (cookie,) = [c for c in context.cookies() if c["name"] == "trakr_session"]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # not readable by scripts
    finally:
        context.close()
