"""PPE end to end with the three kinds of model sites have, on the same real frames.

The frames: 25 frames of the sample clip (a 2x zoom of the walkway, people walking), each person
tracked by the real YOLO11n + trakr's tracker; odd track ids "wear a helmet" (a drawn stop sign
pasted over the head: the only object we found YOLO11n detects reliably at head size), even ids
are bare-headed and carry a crop of the clip's own car over the head instead (so a negative model
has something to see on a bare head); nobody wears a vest. Three test models, all the real
YOLO11n network with relabelled ``names`` metadata, run through the real ``trakr replay`` path:

1. negative classes, other spellings: car -> ``NO-Hardhat``, person -> ``NO-Safety Vest``,
   stop sign -> ``Hardhat``; mapped by ``detector.class_aliases``;
2. positive classes: person -> ``Person``, stop sign -> ``Hardhat``, an unused slot ->
   ``Safety Vest``; ``nohelmet``/``novest`` by association (persons without a helmet box on the
   head / a vest box on the torso), held 3 analysed frames;
3. a person-crop classifier (an ONNX model built here with the ``onnx`` helper API: sigmoid of a
   fixed linear function of the mean colour of the crop's top 30 % and of its torso) whose labels
   ``NO-Hardhat`` / ``NO-Safety Vest`` map through the same aliases, on the plain YOLO11n.

Each path must give the same alerts: the same (camera, ROI, violation, person), where the person
of an alert is the pasted-on person it is about (by box overlap), and those must be what the
frames were made to show: ``nohelmet`` for every bare-headed person, ``novest`` for everybody.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from trakr.config import parse_config, trigger_warnings
from trakr.devtools.ppe_models import colour_classifier
from trakr.inference.base import class_names_from_metadata, default_model_path, model_metadata
from trakr.inference.onnx import OnnxDetector
from trakr.replay import replay
from trakr.rules.tracking import CameraTracker

FIRST, COUNT = 100, 25
"""Frames of the sample clip used."""
ZOOM = (330, 120, 384, 288)
"""x, y, w, h of the part of the frame zoomed 2x (the walkway with people)."""
IMGSZ = 640
COCO_PERSON, COCO_CAR, COCO_STOP, COCO_UNUSED = 0, 2, 11, 79
ALIASES = {
    "person": "person",
    "NO-Hardhat": "nohelmet",
    "no safety vest": "novest",
    "hardhat": "helmet",
    "Safety_Vest": "vest",
}
"""One alias table for every style (matching ignores case, spaces, '-' and '_')."""


def stop_sign(n: int = 96) -> np.ndarray:
    img = np.full((n, n, 3), 200, np.uint8)
    c, r = n / 2, n * 0.48
    ring = [[c + r * np.cos(np.pi / 8 + k * np.pi / 4), c + r * np.sin(np.pi / 8 + k * np.pi / 4)] for k in range(8)]
    cv2.fillPoly(img, [np.array(ring, np.int32)], (255, 255, 255))
    inner = [[c + 0.9 * (x - c), c + 0.9 * (y - c)] for x, y in ring]
    cv2.fillPoly(img, [np.array(inner, np.int32)], (30, 30, 200))
    cv2.putText(img, "STOP", (int(n * 0.14), int(n * 0.6)), cv2.FONT_HERSHEY_SIMPLEX, n / 80, (255, 255, 255), 3)
    return img


def paste_over_head(img: np.ndarray, obj: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Paste ``obj`` 1.3 person-widths wide, its bottom at 20 % of the person's height; its box."""
    x0, y0, x1, y1 = person
    w = (x1 - x0) * 1.3
    h = w * obj.shape[0] / obj.shape[1]
    ox0, oy0 = int((x0 + x1) / 2 - w / 2), int(y0 + 0.2 * (y1 - y0) - h)
    o = cv2.resize(obj, (int(w), int(h)))
    H, W = img.shape[:2]
    xa, ya, xb, yb = max(ox0, 0), max(oy0, 0), min(ox0 + o.shape[1], W), min(oy0 + o.shape[0], H)
    if xb > xa and yb > ya:
        img[ya:yb, xa:xb] = o[ya - oy0 : yb - oy0, xa - ox0 : xb - ox0]
    return np.array([xa, ya, xb, yb], float)


@pytest.fixture(scope="module")
def ppe_clip(sample_clip, tmp_path_factory):
    """The made frames as an MJPG clip, and per frame the truth: (track, person box, marker box,
    helmet, the model sees the person in the made frame, the model sees the marker)."""
    cap = cv2.VideoCapture(str(sample_clip))
    frames = [cap.read()[1] for _ in range(FIRST + COUNT)]
    cap.release()
    car = frames[0][50:95, 732:768].copy()  # YOLO11n finds the car here (0.74)
    sign = stop_sign()
    x, y, w, h = ZOOM
    det = OnnxDetector(imgsz=IMGSZ, threads=2)
    tracker = CameraTracker()
    path = tmp_path_factory.mktemp("ppe") / "ppe.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (2 * w, 2 * h))
    truth = []
    for i in range(FIRST, FIRST + COUNT):
        img = cv2.resize(frames[i][y : y + h, x : x + w], (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
        d = det.detect([img])[0]
        people = tracker.update((i - FIRST) / 10, (2 * w, 2 * h), d[d.data["class_name"] == "person"])
        rows = []
        made = img.copy()
        for box, tid in zip(people.xyxy, people.tracker_id):
            helmet = bool(tid % 2)
            marker = paste_over_head(made, sign if helmet else car, box)
            rows.append((int(tid), box, marker, helmet))
        seen = det.detect([made])[0]  # what the model sees of the made frame: who is judged
        names = seen.data["class_name"]
        rows = [(*r, _found(seen.xyxy[names == "person"], r[1]), _found(seen.xyxy[names == ("stop sign" if r[3] else "car")], r[2])) for r in rows]  # fmt: skip
        truth.append(rows)
        out.write(made)
    out.release()
    det.close()
    return path, truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy))


def _found(boxes: np.ndarray, box: np.ndarray) -> bool:
    return any(_iou(b, box) >= 0.5 for b in boxes)


def relabelled(tmp_path: Path, names: dict[int, str]) -> Path:
    model = onnx.load(str(default_model_path()))
    coco = class_names_from_metadata({p.key: p.value for p in model.metadata_props})
    labels = {i: names.get(i, n) for i, n in enumerate(coco)}
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = str(labels)
    path = tmp_path / f"model_{abs(hash(tuple(sorted(names.items()))))}.onnx"
    onnx.save(model, str(path))
    return path


def config(model: Path | None, ppe: dict | None = None) -> dict:
    return {
        "common": {},
        "trakr": {
            "detector": {
                "backend": "onnxruntime",
                "model_path": str(model) if model else None,
                "imgsz": IMGSZ,
                "threads": 2,
                "class_aliases": ALIASES,
            },
            "gate": {"enabled": False},
            "ppe": {"hold_frames": 3, **(ppe or {})},
        },
        "cameras": [
            {
                "CameraId": 7,
                "Address": "ppe.avi",
                "alert_time_pause": 60,
                "roi_config": {"site": {"points": ["0,0", "1,0", "1,1", "0,1"], "detections": "nohelmet:novest"}},
            }
        ],
    }


def styles(tmp_path: Path) -> dict[str, dict]:
    negative = relabelled(tmp_path, {COCO_PERSON: "NO-Safety Vest", COCO_CAR: "NO-Hardhat", COCO_STOP: "Hardhat"})
    positive = relabelled(tmp_path, {COCO_PERSON: "Person", COCO_STOP: "Hardhat", COCO_UNUSED: "Safety Vest"})
    clf = colour_classifier(tmp_path / "ppe_colour.onnx")
    return {
        "negative": config(negative),
        # the pasted sign sits on top of the head, so the model's person box stops where it starts:
        # look a little higher above the box than the default helmet region does
        "positive": config(positive, {"regions": {"helmet": [0, -0.3, 1, 0.3]}}),
        "classifier": config(
            None, {"classifier": {"model_path": str(clf), "multi_label": True, "interval_s": 1.0, "pad": 0.25}}
        ),
    }


def person_of(alert_box: list[float], at: float, truth: list, key: int) -> int | None:
    """The made person an alert is about: the best-overlapping person (key 1) or marker (key 2) box."""
    frame = round(at * 10)
    best, best_iou = None, 0.3
    b = np.array(alert_box)
    for row in truth[frame]:
        iou = _iou(b, row[key])
        if iou > best_iou:
            best, best_iou = row[0], iou
    return best


def alerted(result, truth) -> set[tuple]:
    out = set()
    for a in result.alerts:
        obj = a.objects[0]
        # a negative model's nohelmet box is the bare-head marker; every other alert box is a person's
        key = 2 if obj.get("region") is None and a.violation == "nohelmet" else 1
        out.add((a.camera_id, a.roi, a.violation, person_of(obj["xyxy"], a.captured_at, truth, key)))
    return out


def test_three_kinds_of_ppe_model_give_the_same_alerts(ppe_clip, tmp_path):
    clip, truth = ppe_clip
    people = {row[0]: row[3] for rows in truth for row in rows}
    seen_frames: dict[int, int] = {}
    first: dict[int, tuple[int, np.ndarray]] = {}
    for i, rows in enumerate(truth):
        for tid, box, _, _, person_seen, marker_seen in rows:
            seen_frames[tid] = seen_frames.get(tid, 0) + int(person_seen and marker_seen)
            first.setdefault(tid, (i, box))
    w, h = 2 * ZOOM[2], 2 * ZOOM[3]

    def walks_in(tid: int) -> bool:  # there from the start or entering at an edge (not a continued track)
        i, (x0, y0, x1, y1) = first[tid]
        return i == 0 or min(x0, y0, w - x1, h - y1) < 8

    # people the model sees, with what is on their head, for long enough (the hold is 3 frames)
    judged = {tid for tid, n in seen_frames.items() if n >= 6 and walks_in(tid)}
    assert any(people[t] for t in judged) and any(not people[t] for t in judged)  # with and without helmets
    expected = {(7, "site", "novest", t) for t in judged} | {
        (7, "site", "nohelmet", t) for t in judged if not people[t]
    }
    got, results = {}, {}
    for style, raw in styles(tmp_path).items():
        cfg = parse_config(raw).config
        assert cfg is not None
        result = results[style] = replay(clip, cfg, tmp_path / style)
        got[style] = {a for a in alerted(result, truth) if a[3] in judged}
        print(style, sorted(got[style]), result.counts)
    # derived alerts show the person and the region looked at, on the record and the evidence image
    for a in results["positive"].alerts:
        obj = a.objects[0]
        assert obj["region_label"] == {"nohelmet": "no helmet", "novest": "no vest"}[a.violation]
        x0, y0, x1, y1 = obj["xyxy"]
        assert obj["region"][0] == x0 and obj["region"][2] == x1 and obj["region"][1] < y0 + 0.7 * (y1 - y0)
        assert a.evidence_image and (tmp_path / "positive" / a.evidence_image).is_file()
    assert all(a.objects[0]["region_label"] in ("NO-Hardhat", "NO-Safety Vest") for a in results["classifier"].alerts)
    assert got["negative"] == expected
    assert got["positive"] == expected
    assert got["classifier"] == expected


def test_config_check_sees_how_each_style_produces_the_triggers(tmp_path):
    from trakr.inference.classes import camera_trigger_sources

    model_names = {}
    for style, raw in styles(tmp_path).items():
        cfg = parse_config(raw).config
        path = cfg.trakr.detector.model_path or default_model_path()
        model_names[style] = names = class_names_from_metadata(model_metadata(Path(path)))
        labels = ["NO-Hardhat", "NO-Safety Vest"] if style == "classifier" else None
        assert trigger_warnings(cfg, names, labels) == []
        sources = camera_trigger_sources(cfg, cfg.cameras[0], names, labels or ())
        assert (
            sources
            == {
                "negative": {"nohelmet": ["alias NO-Hardhat"], "novest": ["alias NO-Safety Vest"]},
                "positive": {"nohelmet": ["association helmet"], "novest": ["association vest"]},
                "classifier": {"nohelmet": ["classifier NO-Hardhat"], "novest": ["classifier NO-Safety Vest"]},
            }[style]
        )
    # the plain COCO model without a classifier cannot: a warning that lists its classes
    raw = styles(tmp_path)["classifier"]
    del raw["trakr"]["ppe"]["classifier"]
    warns = trigger_warnings(parse_config(raw).config, model_names["classifier"])
    assert [(w.value, w.severity) for w in warns] == [("nohelmet", "warning"), ("novest", "warning")]
    assert "model classes: person, bicycle, car" in warns[0].message
