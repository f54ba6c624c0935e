"""The events API with 100 000 stored alerts on a real console server (in-process, on 127.0.0.1):
filtered, keyset-paged, every query on an index; request paths never leave the output directory;
without a password only loopback host names are served."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import supervision as sv
from helpers import free_port

from trakr.config import parse_config
from trakr.pipeline import Pipeline
from trakr.types import Alert, local_day
from trakr.ui.events import Filters
from trakr.ui.server import start_console

N = 100_000
T0 = 1_790_000_000.0
RULES = ["person", "car", "nohelmet", "social_distancing"]
ROIS = [None, "walkway", "dock"]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    out = tmp_path_factory.mktemp("events-out")
    cfg = parse_config(
        {"common": {}, "cameras": [{"CameraId": c, "Address": "rtsp://127.0.0.1:9/x"} for c in range(8)]}
    ).config
    pipeline = Pipeline(cfg, output_dir=out)  # not started: the console only reads its stores here
    server = start_console(pipeline, cfg, port=free_port(), outbox=None)
    rng = random.Random(7)
    rows = [
        Alert(
            alert_id=f"{i:06d}{rng.randrange(16**6):06x}",
            camera_id=rng.randrange(8),
            camera_name="",
            roi=rng.choice(ROIS),
            violation=rng.choice(RULES),
            captured_at=T0 + i * 0.7 + rng.random() * 0.01,
            created_at=T0,
            recommendation="",
            objects=[{}] * rng.randrange(1, 4),
            frame_size=(768, 576),
            record_path=f"alerts/synthetic/{i}.json",
        )
        for i in range(N)
    ]
    server.state.events.add(rows)
    try:
        yield server, pipeline, rows, out
    finally:
        server.stop()


def _expected(rows, f: Filters) -> list[Alert]:
    def ok(a: Alert) -> bool:
        return (
            (f.camera is None or a.camera_id == f.camera)
            and (f.rule is None or a.violation == f.rule)
            and (f.roi is None or (a.roi or "-") == f.roi)
            and (f.since is None or a.captured_at >= f.since)
            and (f.until is None or a.captured_at < f.until)
        )

    return sorted((a for a in rows if ok(a)), key=lambda a: (a.captured_at, a.alert_id), reverse=True)


FILTERS = [
    Filters(),
    Filters(camera=3),
    Filters(rule="nohelmet"),
    Filters(roi="-"),
    Filters(roi="dock", rule="car"),
    Filters(camera=5, rule="person", roi="walkway"),
    Filters(since=T0 + 20_000, until=T0 + 30_000),
    Filters(camera=1, since=T0 + 50_000),
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in vars(f).items() if v) or "all")
def test_100k_events_filtered_and_paged_like_a_list(console, f):
    server, _, rows, _ = console
    want = _expected(rows, f)
    params = {k: v for k, v in vars(f).items() if v is not None}
    base = f"http://127.0.0.1:{server.port}/api/events"
    got, before = [], None
    for _ in range(3):
        r = httpx.get(base, params={**params, "limit": 40, **({"before": before} if before else {})}, timeout=10)
        assert r.status_code == 200
        page = r.json()
        assert page["total"] == len(want)
        got += [e["alert_id"] for e in page["items"]]
        before = page["next"]
        if before is None:
            break
    assert got == [a.alert_id for a in want[:120]]
    # a cursor deep in the list (page ~2000 of 50) answers the same way
    if len(want) > 90_001:
        deep = want[90_000]
        cursor = f"{deep.captured_at!r}:{deep.alert_id}"
        page = httpx.get(base, params={**params, "before": cursor, "limit": 5}, timeout=10).json()
        assert [e["alert_id"] for e in page["items"]] == [a.alert_id for a in want[90_001:90_006]]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in vars(f).items() if v) or "all")
def test_every_events_query_runs_on_an_index(console, f):
    server, _, rows, _ = console
    cursor = f"{T0 + 40_000!r}:zzzz"
    for plan in server.state.events.plans(f) + server.state.events.plans(f, before=cursor):
        assert "TEMP B-TREE" not in plan, plan  # no sort of the matching rows
        for step in plan.split(" / "):
            assert not step.startswith("SCAN events") or "INDEX" in step, plan  # no full table scan


def test_a_stored_alert_is_indexed_and_served_with_its_image(console):
    server, pipeline, _, out = console
    img = np.full((576, 768, 3), 90, np.uint8)
    dets = sv.Detections(
        xyxy=np.array([[100.0, 100, 180, 300]]),
        confidence=np.array([0.9]),
        class_id=np.array([0]),
        data={"class_name": np.array(["person"])},
    )
    a = Alert("realalert01", 6, "gate", "walkway", "person", T0 + N, T0 + N, "", [{"class_name": "person"}], (768, 576))
    pipeline.store.save(a, img, dets)  # the pipeline's evidence writer; the console's sink indexes it
    base = f"http://127.0.0.1:{server.port}"
    page = httpx.get(base + "/api/events", params={"camera": 6, "limit": 1}).json()
    assert page["items"][0]["alert_id"] == "realalert01"
    assert page["items"][0]["delivery"] == {"state": "local only", "messages": {}}
    r = httpx.get(base + page["items"][0]["image_url"])
    assert r.status_code == 200
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (576, 768, 3)
    html = httpx.get(base + "/events", params={"camera": 6}).text
    assert "realalert01" in html and page["items"][0]["image_url"] in html


def test_request_paths_never_leave_the_output_directory(console, tmp_path):
    server, _, _, out = console
    outside = tmp_path / "outside.jpg"
    cv2.imwrite(str(outside), np.zeros((8, 8, 3), np.uint8))
    day = out / "alerts" / local_day(T0)
    day.mkdir(parents=True, exist_ok=True)
    (day / "link.jpg").symlink_to(outside)
    crafted = {
        "evil-dotdot": "../" * 12 + "etc/passwd",
        "evil-abs": "/etc/passwd",
        "evil-outside": str(Path("alerts") / ".." / ".." / outside.relative_to("/")),
        "evil-link": f"alerts/{day.name}/link.jpg",
    }
    for aid, image in crafted.items():
        rec = Alert(aid, 7, "", None, "person", T0, T0, "", [], (8, 8), evidence_image=image).to_json()
        (day / f"{aid}.json").write_text(json.dumps(rec))
    assert server.state.events.sync() >= len(crafted)
    base = f"http://127.0.0.1:{server.port}"
    for aid in crafted:
        assert httpx.get(f"{base}/api/events/{aid}").status_code == 200  # the record is listed...
        r = httpx.get(f"{base}/api/events/{aid}/image.jpg")
        assert r.status_code == 404 and b"root:" not in r.content  # ...its image path is not followed
    for path in (
        "/api/events/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/events/../../etc/passwd/image.jpg",
        "/static/../app.py",
    ):
        r = httpx.get(base + path)
        assert r.status_code == 404 and b"root:" not in r.content and b"import" not in r.content, path


def test_without_a_password_only_loopback_host_names_are_served(console):
    server, _, _, _ = console
    url = f"http://127.0.0.1:{server.port}/api/cameras"
    assert httpx.get(url).status_code == 200
    assert httpx.get(url, headers={"Host": f"localhost:{server.port}"}).status_code == 200
    r = httpx.get(url, headers={"Host": "attacker.example"})  # DNS rebinding to 127.0.0.1
    assert r.status_code == 403 and "no password" in r.json()["detail"]
