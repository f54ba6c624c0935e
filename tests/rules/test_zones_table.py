"""Zone rules as a table: anchors, normalised and pixel polygons, ROI switch, social distancing."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from trakr.config import CameraConfig
from trakr.rules.zones import CameraRules

SIZE = (200, 100)  # w, h
LOWER_HALF = ["0,0.5", "1,0.5", "1,1", "0,1"]


def dets(*items):
    boxes = np.array([b for b, _ in items], dtype=float).reshape(-1, 4)
    names = np.array([n for _, n in items])
    return sv.Detections(xyxy=boxes, class_id=np.zeros(len(items), int), data={"class_name": names})


def cam(**kw) -> CameraConfig:
    return CameraConfig(CameraId=1, Address="0", **kw)


def result(rules: CameraRules, d: sv.Detections):
    return sorted((v.roi or "", v.violation, len(v.detections)) for v in rules.evaluate(SIZE, d))


@pytest.mark.parametrize(
    "config, detections, expected",
    [
        # camera-wide trigger, no polygon: anywhere in the frame
        ({"Detection": "person"}, [([10, 10, 20, 30], "person"), ([50, 5, 60, 20], "car")], [("", "person", 1)]),
        # a box whose bottom centre is in the lower half counts, whatever its top does
        ({"Detection": "person", "ROI": LOWER_HALF}, [([10, 10, 20, 60], "person")], [("", "person", 1)]),
        ({"Detection": "person", "ROI": LOWER_HALF}, [([10, 10, 20, 40], "person")], []),
        # pixel polygon (values > 1) is used as pixels: the same lower half
        (
            {"Detection": "car", "ROI": ["0,50", "200,50", "200,100", "0,100"]},
            [([10, 60, 30, 90], "car")],
            [("", "car", 1)],
        ),
        # an ROI has its own triggers; a class not listed is not a violation there
        (
            {"roi_config": {"dock": {"points": LOWER_HALF, "detections": "truck"}}},
            [([10, 60, 30, 90], "truck"), ([40, 60, 50, 90], "person")],
            [("dock", "truck", 1)],
        ),
        # social distancing: two people 15 px apart (< 100 px limits) violate, a far third does not
        (
            {"Detection": "social_distancing"},
            [([10, 10, 20, 50], "person"), ([25, 10, 35, 50], "person"), ([150, 10, 160, 50], "person")],
            [("", "social_distancing", 2)],
        ),
        # tighter pixel limits: the same pair is fine
        (
            {"Detection": "social_distancing", "sd_thresh_limit_x": 10},
            [([10, 10, 20, 50], "person"), ([25, 10, 35, 50], "person")],
            [],
        ),
        # no detections, no violations
        ({"Detection": "person"}, [], []),
    ],
)
def test_zone_table(config, detections, expected):
    assert result(CameraRules(cam(**config)), dets(*detections)) == expected


def test_roi_switch_off_makes_every_zone_the_whole_frame():
    c = cam(Detection="person", ROI=LOWER_HALF)
    d = dets(([10, 10, 20, 40], "person"))  # upper half
    assert result(CameraRules(c, roi_enabled=True), d) == []
    assert result(CameraRules(c, roi_enabled=False), d) == [("", "person", 1)]


def test_polygons_for_drawing_are_scaled_to_the_frame():
    rules = CameraRules(cam(Detection="person", ROI=LOWER_HALF))
    [(name, poly)] = rules.polygons(SIZE)
    assert name is None and poly.tolist() == [[0, 50], [200, 50], [200, 100], [0, 100]]
