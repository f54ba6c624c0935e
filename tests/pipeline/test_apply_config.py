"""A new config is applied to a running pipeline: streams kept when only rules change, reopened when
the address changes, cameras added and removed."""

import time

from helpers import wait_until

from trakr.config import parse_config
from trakr.evidence import read_alerts
from trakr.pipeline import Pipeline


def _cfg(cameras):
    return parse_config(
        {
            "common": {"batch_size": 2},
            "trakr": {"detector": {"imgsz": 320}, "capture": {"loop_files": True}},
            "cameras": cameras,
        }
    ).config


def test_apply_config_live(sample_clip, tmp_path):
    clip = str(sample_clip)
    base = [
        {"CameraId": 1, "Address": clip, "Detection": "car", "alert_time_pause": 1},
        {"CameraId": 2, "Address": clip, "Detection": "car"},
    ]
    p = Pipeline(_cfg(base), output_dir=tmp_path)
    p.start()
    try:
        assert wait_until(lambda: p.stats.frames_analysed >= 4, 30)
        reader1 = p.cameras()[1].reader
        # camera 1: only its triggers change (car -> person); camera 2 removed; camera 3 added
        p.apply_config(
            _cfg(
                [
                    {"CameraId": 1, "Address": clip, "Detection": "person", "alert_time_pause": 1},
                    {"CameraId": 3, "Address": clip, "Detection": "person"},
                ]
            )
        )
        changed_at = time.time()
        assert p.cameras()[1].reader is reader1 and reader1.alive  # stream kept open
        assert set(p.cameras()) == {1, 3} and 2 not in p.batcher.slots
        assert wait_until(
            lambda: any(
                a.camera_id == 1 and a.violation == "person" and a.captured_at > changed_at
                for a in read_alerts(tmp_path)
            ),
            30,
        )
        assert wait_until(lambda: any(a.camera_id == 3 for a in read_alerts(tmp_path)), 30)
        # camera 1's address changes: its reader is replaced
        p.apply_config(
            _cfg(
                [
                    {"CameraId": 1, "Address": "file://" + clip, "Detection": "person"},
                    {"CameraId": 3, "Address": clip, "Detection": "person"},
                ]
            )
        )
        assert p.cameras()[1].reader is not reader1
        assert wait_until(lambda: not reader1.alive, 10)
        assert wait_until(lambda: p.cameras()[1].reader.stats.state == "up", 20)
    finally:
        p.stop()
    assert not any(a.camera_id == 2 and a.captured_at > changed_at + 1 for a in read_alerts(tmp_path))


def test_every_option_is_applied_live_or_reported_as_needing_a_restart(tmp_path, sample_clip):
    """A pushed gate or threshold change takes effect at once; what cannot is named, not ignored."""
    import json

    from trakr.config import parse_config
    from trakr.pipeline import Pipeline

    raw = {
        "common": {"batch_size": 1},
        "trakr": {"capture": {"loop_files": True}, "detector": {"imgsz": 320}},
        "cameras": [{"CameraId": 1, "Address": str(sample_clip), "Detection": "person", "CamDelay": 0.5}],
    }
    p = Pipeline(parse_config(raw).config, output_dir=tmp_path)
    p.start()
    try:
        reader_before = p.cameras()[1].reader
        new = json.loads(json.dumps(raw))
        new["trakr"]["gate"] = {"area_threshold": 0.1, "keyframe_s": 2.0}
        new["trakr"]["detector"].update(confidence=0.6, iou=0.4, threads=1)
        new["trakr"]["output"] = {"jpeg_quality": 50, "directory": "/elsewhere"}
        new["trakr"]["metrics"] = {"port": 9999}
        restart = p.apply_config(parse_config(new).config)
        assert restart == ["detector.threads", "metrics.port", "output.directory"]
        assert (p.gate.area_threshold, p.gate.keyframe_s) == (0.1, 2.0)
        assert (p.detector.confidence, p.detector.iou) == (0.6, 0.4)
        assert p.store.jpeg_quality == 50
        assert p.cameras()[1].reader is reader_before  # nothing about the stream changed
        new["trakr"]["capture"]["read_timeout_s"] = 3.0
        assert p.apply_config(parse_config(new).config) == []  # the restart-only ones are unchanged now
        assert p.cameras()[1].reader is not reader_before  # a capture option reopens the stream
        assert p.cameras()[1].reader.options.read_timeout_s == 3.0
    finally:
        p.stop()
