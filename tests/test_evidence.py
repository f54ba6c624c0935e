"""Evidence images an operator can read on their own: header, track ids, pairs, regions, labels laid out."""

import json
import time

import cv2
import numpy as np
import pytest
import supervision as sv
from hypothesis import given, settings
from hypothesis import strategies as st

from trakr.config import parse_config
from trakr.devtools.demo import default_config_raw
from trakr.evidence import (
    REGION_COLOR,
    AlertStore,
    Caption,
    caption_of,
    draw_evidence,
    encode_jpeg,
    local_time,
    pairs_of,
    place_labels,
)
from trakr.inference.factory import build_detector
from trakr.rules.zones import CameraRules
from trakr.types import Alert

AT = 1_714_567_402.345


@pytest.fixture(scope="module")
def demo():
    return parse_config(default_config_raw()).config


@pytest.fixture(scope="module")
def frame(sample_clip):
    cap = cv2.VideoCapture(str(sample_clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 120)
    ok, img = cap.read()
    cap.release()
    assert ok
    return img


@pytest.fixture(scope="module")
def detections(demo, frame):
    det = build_detector(demo)  # the real YOLO11n on a real frame of the clip
    try:
        d = det.detect([frame])[0]
    finally:
        det.close()
    d.tracker_id = np.arange(1, len(d) + 1)
    return d


def _inside(r, w, h):
    return 0 <= r[0] < r[2] <= w and 0 <= r[1] < r[3] <= h


def _disjoint(rects):
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                return False
    return True


def test_alert_evidence_names_camera_time_rule_roi_and_tracks(tmp_path, demo, frame, detections):
    persons = detections[detections.data["class_name"] == "person"]
    assert len(persons) >= 4  # a crowded frame
    pair = persons[[0, 1]]
    alert = Alert("a" * 32, 0, "sample-0", "walkway", "social_distancing", AT, AT, "", [], (768, 576))
    alert.extra = {"rule": "social_distancing", "track_ids": [int(t) for t in pair.tracker_id], "distance_m": 1.234}
    polygons = CameraRules(demo.cameras[0]).polygons((768, 576))
    stored = AlertStore(tmp_path).save(alert, frame, pair, polygons)
    img = cv2.imread(str(tmp_path / stored.evidence_image))
    assert img.shape == frame.shape  # same geometry as the frame: boxes in the record still match
    # the record is unchanged by the drawing
    doc = json.loads((tmp_path / stored.record_path).read_text())
    assert doc["extra"]["distance_m"] == 1.234 and doc["camera_name"] == "sample-0"

    drawn = draw_evidence(
        frame, pair, polygons, Caption(0, "sample-0", AT, "social_distancing", "social_distancing", "walkway",
                                       "1.23 m apart", tuple(int(t) for t in pair.tracker_id)), [(0, 1, "1.23 m")]
    )  # fmt: skip
    head = drawn.texts[:2]
    assert head[0] == f"Camera 0 'sample-0'  |  {local_time(AT)}"
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(AT)) + ".345" in head[0]
    assert head[1].startswith("social_distancing in ROI 'walkway'") and "1.23 m apart" in head[1]
    ta, tb = (int(t) for t in pair.tracker_id)
    assert f"#{ta} #{tb}" in head[1]
    assert "1.23 m" in drawn.texts and "ROI walkway" in drawn.texts
    assert any(t.startswith(f"#{ta} person ") for t in drawn.texts)
    # the header band really is on the image (the JPEG written by the store), and readable: it differs from the frame
    x0, y0, x1, y1 = drawn.header
    band = np.abs(img[y0:y1, x0:x1].astype(int) - frame[y0:y1, x0:x1].astype(int)).mean()
    assert band > 20
    # the store drew exactly this (same caption and pair, from the alert), then JPEG-encoded it
    same = draw_evidence(frame, pair, polygons, caption_of(stored), pairs_of(stored.extra, pair)).image
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(encode_jpeg(same, 85), np.uint8), cv2.IMREAD_COLOR))
    assert caption_of(stored).lines() == head
    # the pair: a red line between the two foot points (where no label covers it)
    fa = np.array([(pair.xyxy[0, 0] + pair.xyxy[0, 2]) / 2, pair.xyxy[0, 3]])
    fb = np.array([(pair.xyxy[1, 0] + pair.xyxy[1, 2]) / 2, pair.xyxy[1, 3]])
    on_line = [fa + k * (fb - fa) for k in np.linspace(0.1, 0.9, 17)]
    seen = [p for p in on_line if not any(_hits(r, *p) for r in drawn.labels)]
    red = [p for p in seen if _is_red(drawn.image[int(p[1]) - 1 : int(p[1]) + 2, int(p[0]) - 1 : int(p[0]) + 2])]
    assert len(seen) >= 5 and len(red) >= 0.8 * len(seen)


def _is_red(patch):
    b, g, r = (patch[..., i].astype(int) for i in range(3))
    return bool(((r > 180) & (g < 90) & (b < 90)).any())


def _hits(rect, x, y):
    return rect[0] <= x < rect[2] and rect[1] <= y < rect[3]


def test_crowded_real_frame_labels_stay_inside_and_apart(frame, detections):
    cap = Caption(3, "loading bay east", AT, "person", "person", "walkway", track_ids=tuple(detections.tracker_id))
    drawn = draw_evidence(frame, detections, [("walkway", np.array([[0, 190], [576, 144], [768, 259], [0, 259]]))], cap)
    h, w = frame.shape[:2]
    assert len(drawn.labels) == len(detections) + 1  # every box and the ROI got its label
    assert all(_inside(r, w, h) for r in [*drawn.labels, drawn.header])
    assert _disjoint([*drawn.labels, drawn.header])


def test_a_region_box_is_drawn_with_its_label(frame):
    d = sv.Detections(
        xyxy=np.array([[300.0, 200, 340, 300]]),
        confidence=np.array([0.8]),
        tracker_id=np.array([12]),
        data={
            "class_name": np.array(["nohelmet"]),
            "region": np.array([[305.0, 200, 335, 225]]),
            "region_label": np.array(["head: no helmet"]),
        },
    )
    drawn = draw_evidence(frame, d)
    assert "head: no helmet" in drawn.texts and "#12 nohelmet 0.80" in drawn.texts
    edge = drawn.image[212, 303:308]  # the region's left edge, at mid height
    assert (np.abs(edge.astype(int) - np.array(REGION_COLOR.as_bgr())).sum(axis=1) < 30).any()
    assert (drawn.image[212, 305] != frame[212, 305]).any()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-40, 780), st.integers(-40, 590), st.integers(4, 300), st.integers(4, 300),
            st.integers(1, 999), st.sampled_from(["person", "car", "truck", "nohelmet", "unknown_face"]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)  # fmt: skip
def test_random_crowds_get_labels_inside_the_image_that_never_cover_each_other(boxes, with_pairs):
    img = np.full((576, 768, 3), 90, np.uint8)
    xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh, _, _ in boxes], dtype=float)
    d = sv.Detections(
        xyxy=xyxy,
        confidence=np.full(len(boxes), 0.5),
        tracker_id=np.array([b[4] for b in boxes]),
        data={"class_name": np.array([b[5] for b in boxes])},
    )
    pairs = [(i, i + 1, f"{i * 0.7:.2f} m") for i in range(0, len(boxes) - 1, 2)] if with_pairs else []
    cap = Caption(1, "gate", AT, "person", "person", "walkway", "", tuple(d.tracker_id))
    drawn = draw_evidence(img, d, [], cap, pairs)
    rects = [*drawn.labels, drawn.header]
    assert all(_inside(r, 768, 576) for r in rects)
    assert _disjoint(rects)
    assert len(drawn.labels) == len(boxes) + len(pairs)  # 30 labels fit a 768x576 frame: none dropped


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 200), st.integers(1, 80), st.integers(1, 80),
                  st.integers(1, 90), st.integers(1, 20)),
        min_size=1, max_size=40,
    )
)  # fmt: skip
def test_layout_never_overlaps_even_when_labels_must_be_dropped(items):
    anchors = [(x, y, x + w, y + h) for x, y, w, h, _, _ in items]
    sizes = [(lw, lh) for *_, lw, lh in items]
    rects = place_labels(anchors, sizes, (200, 120), reserved=[(0, 0, 200, 20)])
    placed = [r for r in rects if r is not None]
    assert all(_inside(r, 200, 120) for r in placed)
    assert _disjoint([*placed, (0, 0, 200, 20)])
    assert rects[0] is not None  # the first always finds room


def test_event_snapshots_carry_the_same_header(tmp_path, frame, detections):
    from trakr.rules.events import EventRecord, save_event

    rows = detections[:1]
    tid = int(rows.tracker_id[0])
    rec = EventRecord("e" * 32, 0, "walkway", "dwell:loiter", "dwell", (tid,), AT - 40, AT, AT - 10, None, 55, AT - 5,
                      rows, frame, {"seconds": 30.0})  # fmt: skip
    doc = json.loads(save_event(tmp_path, rec, [], 85, camera_name="sample-0").read_text())
    img = cv2.imread(str(tmp_path / doc["snapshot"]))
    cap = Caption(0, "sample-0", AT - 5, "dwell", "dwell:loiter", "walkway", "inside > 30 s", (tid,))
    drawn = draw_evidence(frame, rows, [], cap)
    assert cap.lines()[1] == f"dwell in ROI 'walkway'  |  rule dwell:loiter  |  inside > 30 s  |  track #{tid}"
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(encode_jpeg(drawn.image, 85), np.uint8), cv2.IMREAD_COLOR))
