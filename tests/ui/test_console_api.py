"""The console's JSON API on a real ``trakr run`` (4 RTSP cameras, real model, fake ThingsBoard):
previews encoded only for viewers, camera state, events with image/record/delivery, filters,
the MJPEG stream, ROI saves refused with their reasons, secrets never shown."""

from __future__ import annotations

import json

import cv2
import httpx
import numpy as np
from helpers import wait_until


def _jpeg(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def _first_alert(live, **params) -> dict:
    found: dict = {}

    def have() -> bool:
        page = live.api("/api/events", params={"limit": 5, **params})
        if page["items"]:
            found.update(page["items"][0])
        return bool(found)

    assert wait_until(have, 60, step=0.5), f"no event {params}:\n{live.log_text()[-3000:]}"
    return found


def test_previews_are_encoded_only_for_viewers(live_trakr):
    def health():
        return live_trakr.api("/api/health")

    h0 = health()
    encoded0, analysed0 = h0["console"]["preview_encodes"], h0["detector"]["frames_analysed"]
    assert wait_until(lambda: health()["detector"]["frames_analysed"] >= analysed0 + 20, 30)
    assert health()["console"]["preview_encodes"] == encoded0, "JPEGs were encoded with nobody watching"

    r = live_trakr.get("/api/cameras/2/preview.jpg", params={"width": 320})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert _jpeg(r.content).shape == (240, 320, 3)  # 768x576 scaled to the asked width
    assert int(r.headers["x-frame-seq"]) > 0
    assert health()["console"]["preview_encodes"] >= encoded0 + 1
    raw = _jpeg(live_trakr.get("/api/cameras/2/snapshot.jpg").content)
    assert raw.shape == (576, 768, 3)
    assert live_trakr.get("/api/cameras/9/preview.jpg").status_code == 404


def test_cameras_show_state_rates_and_a_polygon_outside_the_frame(live_trakr):
    def cams():
        return {c["camera_id"]: c for c in live_trakr.api("/api/cameras")}

    assert wait_until(lambda: all((c["analysed_fps"] or 0) > 0 for c in cams().values()), 20, step=0.5)
    c = cams()
    assert sorted(c) == [0, 1, 2, 3]
    for cam in c.values():
        assert cam["state"] == "up" and cam["capture_fps"] > 0 and cam["frame_size"] == [768, 576]
    # the camera whose polygon is in pixels of another camera: said so, instead of silence
    assert c[3]["zone_problems"] == [
        "camera polygon: the polygon lies entirely outside the 768x576 frame: its rule never fires"
    ]
    assert c[0]["zone_problems"] == [] and c[0]["triggers"] == ["car", "person"]
    assert c[1]["address"].startswith("rtsp://***@127.0.0.1:")


def test_an_alert_is_listed_with_its_image_record_and_delivery_state(live_trakr):
    item = _first_alert(live_trakr, camera=1)
    assert item["camera_id"] == 1 and item["violation"] == "person" and item["roi"] is None
    img = _jpeg(live_trakr.get(item["image_url"]).content)
    assert img.shape == (576, 768, 3)
    detail = live_trakr.api(f"/api/events/{item['alert_id']}")
    on_disk = json.loads((live_trakr.output / item["record_path"]).read_text())
    assert detail["record"]["alert_id"] == on_disk["alert_id"] == item["alert_id"]
    assert detail["record"]["objects"] == on_disk["objects"] and len(on_disk["objects"]) == item["objects"]

    # the fake cloud answers 200: the alert's telemetry and image end up "sent"
    def sent() -> bool:
        d = live_trakr.api(f"/api/events/{item['alert_id']}")["delivery"]
        return d["state"] == "sent" and d["messages"] == {"telemetry": "sent", "image": "sent"}

    assert wait_until(sent, 30, step=0.5), live_trakr.api(f"/api/events/{item['alert_id']}")["delivery"]
    got = [
        r
        for r in live_trakr.fake.received("telemetry", live_trakr.alert_token)
        if item["alert_id"] in json.dumps(r.body)
    ]
    assert got, "the fake ThingsBoard never got this alert"


def test_events_filter_by_camera_rule_roi_and_time_and_page(live_trakr):
    roi = _first_alert(live_trakr, camera=0)["roi"]  # camera 0 alerts only inside its ROIs
    assert roi is not None
    in_roi = live_trakr.api("/api/events", params={"roi": roi, "limit": 500})["items"]
    assert in_roi and all(e["roi"] == roi and e["camera_id"] == 0 for e in in_roi)
    wait_until(lambda: live_trakr.api("/api/events", params={"limit": 1})["total"] >= 6, 30, step=0.5)
    everything = live_trakr.api("/api/events", params={"limit": 500})
    assert everything["total"] >= 6
    by_cam = live_trakr.api("/api/events", params={"camera": 2, "limit": 500})
    assert by_cam["items"] and {e["camera_id"] for e in by_cam["items"]} == {2}
    whole = live_trakr.api("/api/events", params={"roi": "-", "limit": 500})
    assert whole["items"] and all(e["roi"] is None for e in whole["items"])
    assert all(e["camera_id"] != 3 for e in everything["items"]), "camera 3's polygon is off the frame"
    assert not live_trakr.api("/api/events", params={"rule": "truck"})["items"]
    cut = everything["items"][len(everything["items"]) // 2]["captured_at"]
    later = live_trakr.api("/api/events", params={"since": cut, "limit": 500})["items"]
    assert later and all(e["captured_at"] >= cut for e in later)
    # pages of 2, newest first, no overlap, nothing skipped
    seen, before = [], None
    for _ in range(3):
        page = live_trakr.api("/api/events", params={"limit": 2, **({"before": before} if before else {})})
        seen += page["items"]
        before = page["next"]
    times = [(e["captured_at"], e["alert_id"]) for e in seen]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times) == 6
    assert live_trakr.get("/api/events", params={"before": "garbage"}).status_code == 422


def test_mjpeg_stream_sends_successive_frames(live_trakr):
    parts: list[bytes] = []
    with httpx.stream("GET", live_trakr.url + "/api/cameras/0/stream.mjpg", params={"fps": 5}, timeout=15) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace; boundary=")
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            while True:
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start + 2)
                if start < 0 or end < 0:
                    break
                parts.append(buf[start : end + 2])
                buf = buf[end + 2 :]
            if len(parts) >= 3:
                break
    frames = [_jpeg(p) for p in parts[:3]]
    assert all(f.shape == (576, 768, 3) for f in frames)
    assert len({p for p in parts[:3]}) == 3, "the stream repeated a frame"


def test_roi_saves_are_refused_with_their_reasons(live_trakr):
    before = live_trakr.config_path.read_bytes()
    url = live_trakr.url + "/api/cameras/0/rois"
    model = live_trakr.api("/api/cameras/0/rois")
    zones = {z["name"]: z for z in model["zones"]}
    assert zones[None]["points"] is None and zones["gate"]["points"][0] == [0.02, 0.02]
    assert zones["gate"]["triggers"] == ["car"] and "person" in model["known_triggers"]
    edit = {"camera": {"points": None, "triggers": []}, "rois": [], "config_sha": model["config_sha"]}
    with httpx.Client(timeout=10) as client:
        # no CSRF token: refused before anything is read
        r = client.put(url, json=edit)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        token = client.get(live_trakr.url + "/api/session").json()["csrf_token"]
        assert client.put(url, json=edit, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
        h = {"X-CSRF-Token": token}
        outside = {
            **edit,
            "rois": [{"name": "door", "points": [[0.1, 0.1], [1.3, 0.5], [0.2, 0.9]], "triggers": ["person"]}],
        }
        r = client.put(url, json=outside, headers=h)
        assert r.status_code == 422
        (p,) = r.json()["problems"]
        assert (p["where"], p["field"]) == ("camera 0", "roi_config.door.points")
        assert p["value"] == '["0.1,0.1", "1.3,0.5", "0.2,0.9"]'
        assert p["message"] == "point 2 (1.3, 0.5) lies outside the frame (x and y must be between 0 and 1)"
        two = {**edit, "camera": {"points": [[0.1, 0.1], [0.5, 0.5]], "triggers": ["person"]}}
        r = client.put(url, json=two, headers=h)
        assert r.status_code == 422
        assert r.json()["problems"][0]["text"].startswith("camera 0: points = ")
        assert "a polygon needs at least 3 points, got 2" in r.json()["problems"][0]["message"]
        stale = {**edit, "config_sha": "0123456789abcdef"}
        r = client.put(url, json=stale, headers=h)
        assert r.status_code == 409 and "changed since" in r.json()["detail"]
    assert live_trakr.config_path.read_bytes() == before


def test_secrets_are_never_rendered(live_trakr):
    item = _first_alert(live_trakr, camera=1)
    paths = [
        "/",
        "/cameras/1",
        "/events",
        f"/events/{item['alert_id']}",
        "/roi/1",
        "/health",
        "/api",
        "/api/cameras",
        "/api/health",
        "/api/events",
        f"/api/events/{item['alert_id']}",
        "/api/cameras/1/rois",
        "/api/openapi.json",
    ]
    for path in paths:
        r = live_trakr.get(path)
        assert r.status_code == 200, path
        for secret in live_trakr.secrets:
            assert secret not in r.text, f"{secret} shown on {path}"
    assert live_trakr.secrets[0] in live_trakr.config_path.read_text()  # it is in the config, just never shown


def test_health_reports_detector_outbox_disk_and_config(live_trakr):
    assert wait_until(lambda: live_trakr.api("/api/health")["outbox"]["counters"].get("sent.alert", 0) > 0, 30, 0.5)
    h = live_trakr.api("/api/health")
    assert h["detector"]["backend"] not in ("", "none") and h["detector"]["precision"] not in ("", "not reported")
    assert h["detector"]["frames_analysed"] > 0 and h["pipeline"]["threads_alive"] is True
    assert {c["camera_id"] for c in h["cameras"]} == {0, 1, 2, 3}
    assert all(c["reconnects"] == 0 and "last_error" in c for c in h["cameras"])
    assert h["config"]["version"] == "7.3.1" and h["config"]["path"] == str(live_trakr.config_path)
    assert h["disk"]["bytes"] > 0 and h["disk"]["by_folder"]["alerts"] > 0
    assert h["outbox"]["backlog"] >= 0 and isinstance(h["outbox"]["by_channel"], dict)
    assert h["console"]["events_indexed"] > 0
    spec = live_trakr.api("/api/openapi.json")
    for path in ("/api/cameras", "/api/events", "/api/cameras/{camera_id}/rois", "/api/health"):
        assert path in spec["paths"]
    # the console's write API is described too, with its request model
    assert "put" in spec["paths"]["/api/cameras/{camera_id}/rois"]
