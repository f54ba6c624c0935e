"""Promises about what lands on disk: save_all_* images and their interval, ROI_crop_en offsets.

Real parts: the sample clip as a file camera at its native 10 fps, the real YOLO11n model.
"""

from __future__ import annotations

import time
from datetime import datetime

from helpers import wait_until

from trakr.config import parse_config
from trakr.evidence import read_alerts
from trakr.pipeline import Pipeline


def _run(raw: dict, out, until) -> Pipeline:
    rep = parse_config(raw)
    assert rep.ok, rep.problems
    p = Pipeline(rep.config, output_dir=out)
    p.start()
    try:
        assert wait_until(lambda: until(p), 60)
    finally:
        p.stop()
    return p


def _stamp(path) -> float:
    return datetime.strptime(path.stem[:19], "%Y%m%d-%H%M%S-%f").timestamp()


def test_save_all_images_respect_their_interval_per_camera(sample_clip, tmp_path):
    raw = {
        "common": {"batch_size": 1},
        "trakr": {
            "capture": {"loop_files": True},
            "detector": {"imgsz": 320},
            "gate": {"enabled": False},
            "output": {"save_all_interval_s": 1.0},
        },
        "cameras": [
            {
                "CameraId": 4,
                "Address": str(sample_clip),
                "Detection": "person",
                "CamDelay": 0.1,
                "save_all_inp_img": 1,
                "save_all_detection": 1,
            }
        ],
    }
    p = _run(raw, tmp_path, lambda p: p.snapshot().frames_analysed >= 35)
    for kind in ("inputs", "detections"):
        files = sorted((tmp_path / kind / "cam4").glob("*.jpg"))
        assert len(files) >= 2, kind
        gaps = [b - a for a, b in zip(map(_stamp, files), map(_stamp, files[1:]))]
        assert min(gaps) >= 0.99, (kind, gaps)  # never more often than the interval
        assert len(files) < p.snapshot().frames_analysed / 3  # so most analysed frames were not saved


def test_roi_crop_analyses_the_polygon_box_and_maps_boxes_back_to_the_frame(sample_clip, tmp_path):
    right_half = ["0.5,0", "1,0", "1,1", "0.5,1"]
    raw = {
        "common": {"batch_size": 1},
        "trakr": {"capture": {"loop_files": True}, "detector": {"imgsz": 320}, "gate": {"enabled": False}},
        "cameras": [
            {
                "CameraId": 5,
                "Address": str(sample_clip),
                "Detection": "person",
                "CamDelay": 0.2,
                "alert_time_pause": 0.5,
                "ROI": right_half,
                "ROI_crop_en": 1,
            }
        ],
    }
    _run(raw, tmp_path, lambda p: p.snapshot().alerts >= 3)
    alerts = read_alerts(tmp_path)
    boxes = [o["xyxy"] for a in alerts for o in a.objects]
    assert boxes and all(a.frame_size == (768, 576) for a in alerts)  # full-frame coordinates
    # the model saw only x >= 384: every box lies there once mapped back (without the offset it would not)
    assert all(x0 >= 383 and x1 <= 768 for x0, _, x1, _ in boxes), boxes
    assert time.time() - alerts[-1].captured_at < 120
