"""End to end on real parts: GStreamer RTSP server serving the real clip, the real model, and
the pipeline writing alerts; then faults: a camera's server killed and restarted, a bogus camera."""

import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest
import supervision as sv
from helpers import wait_until as _wait

from trakr.config import parse_config
from trakr.evidence import read_alerts
from trakr.pipeline import Pipeline
from trakr.rules.zones import scale_polygon

WALKWAY = ["0.0,0.33", "0.75,0.25", "1.0,0.45", "1.0,0.85", "0.55,0.65", "0.0,0.45"]
FAST = {
    "detector": {"imgsz": 320},
    "capture": {"open_timeout_s": 2, "read_timeout_s": 2, "backoff_min_s": 0.3, "backoff_max_s": 2},
}


def _config(cameras, **common):
    return parse_config(
        {"common": {"batch_size": 4, "CamNotReachableLimit": 2, **common}, "trakr": FAST, "cameras": cameras}
    ).config


def _walkway_cam(cid, url, pause=4.0):
    return {
        "CameraId": cid,
        "CamName": f"cam{cid}",
        "Address": url,
        "alert_time_pause": pause,
        "roi_config": {"roi_config": {"walkway": {"points": WALKWAY, "detections": "person"}}},
    }


def test_four_rtsp_cameras_raise_throttled_person_alerts_inside_the_walkway(rtsp_server, tmp_path):
    cfg = _config([_walkway_cam(i, rtsp_server.url(i)) for i in range(4)])
    p = Pipeline(cfg, output_dir=tmp_path)
    p.run(duration=14)
    alerts = read_alerts(tmp_path)
    assert {a.camera_id for a in alerts} == {0, 1, 2, 3}
    assert all(a.violation == "person" and a.roi == "walkway" for a in alerts)
    for a in alerts:
        img = cv2.imread(str(tmp_path / a.evidence_image))
        assert img is not None and img.shape == (576, 768, 3)
        rec = json.loads((tmp_path / a.record_path).read_text())
        assert rec["alert_id"] == a.alert_id and rec["objects"]
        # every alerted box stands (bottom centre) inside the walkway polygon
        zone = sv.PolygonZone(scale_polygon([tuple(map(float, s.split(","))) for s in WALKWAY], (768, 576)))
        boxes = np.array([o["xyxy"] for o in a.objects])
        assert zone.trigger(sv.Detections(xyxy=boxes)).all()
        assert 0 < time.time() - a.captured_at < 60 and a.created_at >= a.captured_at
    # events: one alert per tracked person per visit, never twice for the same event, and a
    # person is not re-alerted within alert_time_pause (4 s) of the previous alert on them
    assert len({a.alert_id for a in alerts}) == len(alerts) == len({a.extra["event_id"] for a in alerts})
    for cam in range(4):
        by_track: dict[int, list[float]] = {}
        for a in sorted((a for a in alerts if a.camera_id == cam), key=lambda a: a.captured_at):
            assert len(a.extra["track_ids"]) == 1 and len(a.objects) == 1  # one person, one event
            by_track.setdefault(a.extra["track_ids"][0], []).append(a.captured_at)
        for times in by_track.values():
            assert all(b - a >= 4.0 for a, b in zip(times, times[1:])), "alert_time_pause not respected"
    # each camera sees the same looped clip: at most a few people cross the walkway in 14 s
    assert max(sum(a.camera_id == c for a in alerts) for c in range(4)) <= 12
    assert p.stats.frames_analysed > 40
    # nothing queued without bound: the readers gate, so they publish exactly what the gate passed;
    # each published frame was analysed or replaced in its one-frame slot (counted as dropped); at
    # most one frame per camera is left over
    snap = p.snapshot()
    for cs in snap.cameras.values():
        assert cs.gate_passed == cs.frames_published and cs.gate_seen <= cs.frames_read, cs
        taken = cs.frames_published - cs.frames_dropped  # left the slot (or still in it: at most one)
        assert 0 <= taken - cs.frames_analysed <= 1, cs


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a hung camera)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_camera_dies_and_recovers_while_others_keep_alerting(rtsp_server, rtsp_server_fn, silent_server, tmp_path):
    cams = [
        _walkway_cam(0, rtsp_server_fn.url(0), pause=2.0),
        _walkway_cam(1, rtsp_server.url(1), pause=2.0),
        _walkway_cam(2, rtsp_server.url(2), pause=2.0),
        _walkway_cam(7, f"rtsp://127.0.0.1:{silent_server}/hung", pause=2.0),
        _walkway_cam(8, "no-such-file.mp4", pause=2.0),
    ]
    events = []
    p = Pipeline(_config(cams), output_dir=tmp_path, health_sinks=[events.append])
    t_start = time.monotonic()
    p.start()
    try:
        # bogus and hung cameras never delay the others: the good ones are up within seconds
        assert _wait(lambda: all(p.health.get(c) and p.health[c].state == "up" for c in (0, 1, 2)), 10)
        up_after = time.monotonic() - t_start
        assert _wait(lambda: p.health.get(8) and p.health[8].state == "down", 10)
        assert _wait(lambda: {0, 1, 2} <= {a.camera_id for a in read_alerts(tmp_path)}, 20)

        rtsp_server_fn.stop()  # camera 0's server dies
        killed = time.time()
        assert _wait(lambda: p.health[0].state == "down", 20), "camera 0 never reported down"
        down_at = time.time()
        down_after = down_at - killed
        before = len([a for a in read_alerts(tmp_path) if a.camera_id in (1, 2)])
        time.sleep(3)
        after = [a for a in read_alerts(tmp_path) if a.camera_id in (1, 2)]
        assert len(after) > before, "other cameras stopped alerting while camera 0 was down"
        assert all(a.camera_id != 0 or a.captured_at < down_at for a in read_alerts(tmp_path))

        rtsp_server_fn.restart()
        restarted = time.monotonic()
        assert _wait(lambda: p.health[0].state == "up", 30), "camera 0 did not recover"
        recovery_s = time.monotonic() - restarted
        assert _wait(lambda: any(a.camera_id == 0 and a.captured_at > killed for a in read_alerts(tmp_path)), 15)
        assert p.health[7].state == "down"  # the hung camera is down, not blocking
    finally:
        p.stop()
    states = [(e.camera_id, e.state) for e in events if e.camera_id == 0]
    assert states == [(0, "up"), (0, "down"), (0, "up")]  # each change reported once
    print(
        f"good cameras up after {up_after:.2f}s; camera 0 down {down_after:.2f}s after its server died, "
        f"up again {recovery_s:.2f}s after the server restarted"
    )
    assert p.cameras()[0].reader.stats.reconnects >= 1
