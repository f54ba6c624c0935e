"""The optional event keys in a config: legacy files unchanged, bad values named by camera and field."""

from __future__ import annotations

import numpy as np

from trakr.config import parse_config
from trakr.rules.geometry import GroundPlane


def camera(**extra) -> dict:
    return {"CameraId": 9, "Address": "0", "Detection": "person", **extra}


def problems(**extra) -> list[str]:
    return [str(p) for p in parse_config({"common": {}, "cameras": [camera(**extra)]}).problems]


def test_a_legacy_camera_has_no_new_rules_and_default_event_options():
    cfg = parse_config({"common": {}, "cameras": [camera()]}).config
    cam = cfg.cameras[0]
    assert (cam.lines, cam.dwell, cam.occupancy, cam.calibration, cam.sd_min_m) == ({}, {}, {}, None, None)
    assert cfg.trakr.events.enabled and cfg.trakr.events.grace_s == 2.0


def test_the_new_keys_parse_from_legacy_style_values():
    cfg = parse_config(
        {
            "common": {},
            "trakr": {"events": {"grace_s": 3, "max_alerts_per_minute": 0}},
            "cameras": [
                camera(
                    lines={"gate": {"points": ["0.1,0.5", "0.9,0.5"], "detections": "person:car", "direction": "in"}},
                    dwell={"loiter": {"seconds": "30"}},
                    occupancy={"crowd": {"max_objects": 3}},
                    calibration={
                        "image_points": ["0,1", "1,1", "0.8,0.4", "0.2,0.4"],
                        "world_points": [[0, 0], [8, 0], [8, 20], [0, 20]],
                    },
                    sd_min_m=1.5,
                )
            ],
        }
    ).config
    cam = cfg.cameras[0]
    assert cam.lines["gate"].detections == ["person", "car"] and cam.lines["gate"].points == [(0.1, 0.5), (0.9, 0.5)]
    assert cam.dwell["loiter"].seconds == 30.0 and cam.dwell["loiter"].roi is None
    assert cam.occupancy["crowd"].max_objects == 3
    assert cfg.trakr.events.grace_s == 3.0 and cfg.trakr.events.max_alerts_per_minute == 0
    # normalised calibration points scale to the frame: the near corners are 8 m apart
    plane = GroundPlane(cam.calibration.image_points, cam.calibration.world_points)
    near = plane.to_metres(np.array([[0.0, 576.0], [768.0, 576.0]]), (768, 576))
    assert np.linalg.norm(near[1] - near[0]) == 8.0


def test_bad_values_are_reported_with_camera_field_and_value():
    assert problems(dwell={"loiter": {"seconds": 0}}) == [
        "camera 9: dwell.loiter.seconds = 0: Input should be greater than 0"
    ]
    (line,) = problems(lines={"gate": {"points": ["0,0", "1,1", "1,0"]}})
    assert line.startswith("camera 9: lines.gate.points = ") and "exactly 2 distinct points, got 3" in line
    (cal,) = problems(
        calibration={"image_points": ["0,0", "0.5,0.5", "1,1", "0,1"], "world_points": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    )
    assert cal.startswith("camera 9: calibration = ") and "three points on one line" in cal
    (sd,) = problems(sd_min_m=-1)
    assert sd == "camera 9: sd_min_m = -1: Input should be greater than 0"
    (direction,) = problems(lines={"gate": {"points": ["0,0", "1,1"], "direction": "up"}})
    assert direction.startswith("camera 9: lines.gate.direction = 'up'")
