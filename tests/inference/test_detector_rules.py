"""The real YOLO11n model on real frames, a user's model with its own class names, and the rules."""

import cv2
import numpy as np
import onnx
import pytest
import supervision as sv

from trakr.config import CameraConfig, parse_config, trigger_warnings
from trakr.inference.onnx import OnnxDetector, default_model_path
from trakr.rules.zones import CameraRules, close_pairs, scale_polygon

PPE_NAMES = ["nohelmet", "novest", "nomask", "noshoe"] + [f"class{i}" for i in range(4, 80)]


@pytest.fixture(scope="module")
def frames(sample_clip):
    cap = cv2.VideoCapture(str(sample_clip))
    out = []
    for i in range(160):
        ok, f = cap.read()
        if i in (100, 130, 159):
            out.append(f)
    return out


@pytest.fixture(scope="module")
def detector():
    return OnnxDetector(imgsz=416)


def test_model_finds_the_people_of_the_clip(detector, frames):
    assert detector.class_names[:3] == ["person", "bicycle", "car"] and len(detector.class_names) == 80
    dets = detector.detect(frames[:1])[0]
    persons = dets[dets.data["class_name"] == "person"]
    assert len(persons) >= 4  # frame 100 has 6 people on the walkway
    h, w = frames[0].shape[:2]
    assert (persons.xyxy[:, [0, 2]] <= w).all() and (persons.xyxy[:, [1, 3]] <= h).all()
    assert (persons.confidence >= 0.35).all()
    # people are upright: boxes taller than wide
    assert ((persons.xyxy[:, 3] - persons.xyxy[:, 1]) > (persons.xyxy[:, 2] - persons.xyxy[:, 0])).all()


def test_batched_inference_equals_one_by_one(detector, frames):
    batched = detector.detect(frames)
    for img, b in zip(frames, batched):
        single = detector.detect([img])[0]
        assert len(single) == len(b)
        np.testing.assert_allclose(np.sort(single.xyxy, axis=0), np.sort(b.xyxy, axis=0), atol=1.0)


def test_a_users_model_with_its_own_class_names_plugs_in_by_config(tmp_path, frames):
    model = onnx.load(str(default_model_path()))
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = str(dict(enumerate(PPE_NAMES)))
    path = tmp_path / "ppe.onnx"
    onnx.save(model, str(path))
    raw = {
        "common": {},
        "trakr": {"detector": {"model_path": str(path), "imgsz": 416}},
        "cameras": [
            {
                "CameraId": 1,
                "Address": "0",
                "roi_config": {"roi_config": {"gate": {"points": "NA", "detections": "nohelmet"}}},
            }
        ],
    }
    cfg = parse_config(raw).config
    from trakr.inference.factory import build_detector

    det = build_detector(cfg)
    assert det.class_names[:2] == ["nohelmet", "novest"]
    assert trigger_warnings(cfg, det.class_names) == []
    dets = det.detect(frames[:1])[0]
    violations = CameraRules(cfg.cameras[0]).evaluate((768, 576), dets)
    assert [(v.roi, v.violation) for v in violations] == [("gate", "nohelmet")]


def _dets(boxes, names):
    return sv.Detections(
        xyxy=np.array(boxes, dtype=float),
        confidence=np.ones(len(boxes)),
        class_id=np.zeros(len(boxes), int),
        data={"class_name": np.array(names)},
    )


def test_roi_membership_is_by_bottom_centre_anchor():
    cam = CameraConfig(
        CameraId=1,
        Address="0",
        roi_config={"bottom": {"points": ["0,0.5", "1,0.5", "1,1", "0,1"], "detections": "person"}},
    )
    rules = CameraRules(cam)
    # box mostly in the top half but feet (bottom centre) in the bottom half -> inside
    inside = _dets([[10, 10, 30, 60]], ["person"])
    # box whose bottom centre is just above the line -> outside
    outside = _dets([[10, 10, 30, 49]], ["person"])
    assert [v.roi for v in rules.evaluate((100, 100), inside)] == ["bottom"]
    assert rules.evaluate((100, 100), outside) == []


def test_pixel_and_normalised_polygons():
    assert scale_polygon([(0.5, 0.5), (1, 0), (1, 1)], (200, 100)).tolist() == [[100, 50], [200, 0], [200, 100]]
    assert scale_polygon([(150, 50), (10, 0), (10, 90)], (200, 100)).tolist() == [[150, 50], [10, 0], [10, 90]]


def test_camera_polygon_limits_camera_wide_triggers_and_roi_en_off_ignores_it():
    cam = CameraConfig(CameraId=1, Address="0", Detection="car", points=["0,0", "50,0", "50,50", "0,50"])
    dets = _dets([[0, 0, 10, 10], [60, 60, 80, 80]], ["car", "car"])
    v = CameraRules(cam).evaluate((100, 100), dets)
    assert len(v) == 1 and len(v[0].detections) == 1
    v = CameraRules(cam, roi_enabled=False).evaluate((100, 100), dets)
    assert len(v[0].detections) == 2


def test_social_distancing_flags_close_pairs_only():
    anchors = np.array([[100, 100], [130, 105], [400, 100]], float)
    assert close_pairs(anchors, 50, 20).tolist() == [True, True, False]
    cam = CameraConfig(
        CameraId=1, Address="0", Detection="social_distancing", sd_thresh_limit_x=50, sd_thresh_limit_y=20
    )
    dets = _dets(
        [[80, 40, 120, 100], [110, 45, 150, 105], [380, 40, 420, 100], [90, 40, 120, 100]],
        ["person", "person", "person", "car"],
    )
    v = CameraRules(cam).evaluate((640, 480), dets)
    assert [x.violation for x in v] == ["social_distancing"]
    assert sorted(v[0].detections.xyxy[:, 0].tolist()) == [80, 110]  # the car is not a person
