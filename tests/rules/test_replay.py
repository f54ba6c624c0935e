"""Replay of the real sample clip through the real YOLO11n, gate, tracking and events.

Alert quality is scored against a hand-checked labelling of the person-visits to the walkway ROI
of the demo config's camera 0 (tests/data/vtest_walkway_visits.json; how it was made is in its
``method`` field): an alert belongs to the visit whose person's labelled foot point is nearest to
the alerted box's foot point at that moment (within half a person height).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trakr.config import parse_config
from trakr.devtools.demo import default_config_raw
from trakr.evidence import read_alerts
from trakr.inference.factory import build_detector
from trakr.replay import replay

VISITS = Path(__file__).resolve().parent.parent / "data" / "vtest_walkway_visits.json"
FPS = 10


def load_visits() -> dict:
    return json.loads(VISITS.read_text())


def _foot_at(samples: list[list[int]], frame: float) -> tuple[np.ndarray, float] | None:
    """The labelled foot point and height of a person at ``frame`` (interpolated between samples)."""
    fr = np.array([s[0] for s in samples])
    i = int(np.searchsorted(fr, frame))
    if i < len(fr) and fr[i] == frame:
        a = b = samples[i]
    elif 0 < i < len(fr) and fr[i] - fr[i - 1] <= 10:
        a, b = samples[i - 1], samples[i]
    else:
        return None
    w = 0.0 if b[0] == a[0] else (frame - a[0]) / (b[0] - a[0])
    box = (1 - w) * np.array(a[1:], float) + w * np.array(b[1:], float)
    return np.array([(box[0] + box[2]) / 2, box[3]]), float(box[3] - box[1])


def score_walkway(alerts, doc: dict, start_at: float = 0.0) -> dict:
    """Recall of labelled visits and alerts per alerted visit, for the walkway ``person`` alerts."""
    visits = doc["visits"]
    boxes = doc["boxes_every_5_frames"]
    per_visit = [0] * len(visits)
    unmatched = []
    matched = []
    for a in alerts:
        if a.roi != "walkway" or a.violation != "person":
            continue
        frame = (a.captured_at - start_at) * FPS
        x1, _, x2, y2 = a.objects[0]["xyxy"]
        foot, h = np.array([(x1 + x2) / 2, y2]), y2 - a.objects[0]["xyxy"][1]
        best, best_d = None, None
        for i, v in enumerate(visits):
            if not v["start"] - 5 <= frame <= v["end"] + 5:
                continue
            gt = _foot_at(boxes[v["person"]], frame)
            if gt is None:
                continue
            d = float(np.linalg.norm(gt[0] - foot))
            if d < 0.5 * max(h, gt[1]) and (best_d is None or d < best_d):
                best, best_d = i, d
        if best is None:
            unmatched.append((round(a.captured_at, 1), a.objects[0]["xyxy"]))
        else:
            per_visit[best] += 1
            matched.append((round(a.captured_at, 1), visits[best]["person"], visits[best]["start"]))
    alerted = sum(n > 0 for n in per_visit)
    return {
        "visits": len(visits),
        "alerted": alerted,
        "recall": alerted / len(visits),
        "alerts_per_visit": sum(per_visit) / max(alerted, 1),
        "unmatched": unmatched,
        "matched": matched,
        "detail": [(v["person"], v["start"], v["end"], n) for v, n in zip(visits, per_visit)],
    }


@pytest.fixture(scope="module")
def demo():
    return parse_config(default_config_raw()).config


@pytest.fixture(scope="module")
def detector(demo):
    det = build_detector(demo)  # the real YOLO11n, as configured
    yield det
    det.close()


@pytest.fixture(scope="module")
def full_run(sample_clip, demo, detector, tmp_path_factory):
    """The whole clip (79.5 s) as camera 0 of the demo config, with the default gate."""
    return replay(sample_clip, demo, tmp_path_factory.mktemp("replay"), camera_id=0, detector=detector)


def test_walkway_person_visits_are_alerted_once_each(full_run):
    s = score_walkway(full_run.alerts, load_visits())
    print("walkway:", {k: v for k, v in s.items() if k != "detail"})
    assert s["visits"] == 21
    assert s["recall"] >= 0.95, s["detail"]
    assert s["alerts_per_visit"] <= 1.1, s["detail"]
    assert len(s["unmatched"]) <= 1, s["unmatched"]


def test_the_parked_vehicles_alert_once_per_stay(full_run):
    parking = [a for a in full_run.alerts if a.roi == "parking"]
    # the van (model says car or truck, twice on top of each other) and the car, parked all clip long
    assert len(parking) == 2, [(a.captured_at, a.violation, a.objects) for a in parking]
    assert len({tuple(a.extra["track_ids"]) for a in parking}) == 2
    assert all(a.captured_at < 1.0 for a in parking)
    ends = [e for e in full_run.events if e.roi == "parking"]
    assert len(ends) == 2 and all(e.duration > 78 for e in ends)


def test_alerts_and_event_records_are_on_disk(full_run):
    stored = read_alerts(full_run.output_dir)
    assert sorted(a.alert_id for a in stored) == sorted(a.alert_id for a in full_run.alerts)
    assert all((full_run.output_dir / a.evidence_image).is_file() for a in stored)
    records = sorted(full_run.output_dir.glob("events/*/*.json"))
    assert len(records) == len(full_run.events)
    doc = json.loads(records[0].read_text())
    assert {"event_id", "track_ids", "started_at", "ended_at", "duration_s", "best_objects", "snapshot"} <= set(doc)
    assert (full_run.output_dir / doc["snapshot"]).is_file()


def test_replay_is_deterministic(sample_clip, demo, detector, tmp_path, full_run):
    again = replay(sample_clip, demo, tmp_path, camera_id=0, detector=detector, max_seconds=20)

    def key(alerts):
        return [(a.alert_id, a.captured_at, a.roi, a.violation, a.objects, a.extra) for a in alerts]

    first = [a for a in full_run.alerts if a.captured_at < 20]
    assert key(again.alerts) == key(first)
    # the gate really ran (people move in every frame here, so it passes nearly all of them)
    assert "ungated" not in again.gate_reasons and again.gate_reasons.get("motion", 0) > 0
    assert sum(again.gate_reasons.values()) == again.frames


# ------------------------------------------------------------------------------------ quiet scene


def quiet_config(scene, gate: dict) -> object:
    raw = {
        "common": {},
        "trakr": {"gate": gate},
        "cameras": [
            {
                "CameraId": 7,
                "Address": str(scene.path),
                "alert_time_pause": 10,
                "roi_config": {"far": {"points": scene.zone, "detections": "person"}},
            }
        ],
    }
    return parse_config(raw).config


def crossings_alerted(scene, alerts) -> list[int]:
    """Alerts per labelled crossing (an alert counts for the crossing it falls in, 0.5 s slack)."""
    return [sum(a - 0.5 <= x.captured_at <= b + 0.5 for x in alerts) for a, b in scene.crossings]


def test_quiet_scene_each_crossing_of_the_far_zone_is_one_alert(detector, tmp_path):
    from trakr.devtools.scenes import quiet_scene

    scene = quiet_scene()
    # every frame analysed (no gate), up to the end of the first crossing
    run = replay(scene.path, quiet_config(scene, {"enabled": False}), tmp_path, detector=detector, max_seconds=10)
    assert crossings_alerted(scene, run.alerts)[:1] == [1]
    assert len(run.alerts) == 1 and run.alerts[0].roi == "far" and len(run.alerts[0].objects) == 1


def test_quiet_scene_every_crossing_is_alerted_with_the_default_gate(detector, tmp_path):
    from trakr.devtools.scenes import quiet_scene

    scene = quiet_scene()
    run = replay(scene.path, quiet_config(scene, {}), tmp_path, detector=detector)
    assert crossings_alerted(scene, run.alerts) == [1] * 6
