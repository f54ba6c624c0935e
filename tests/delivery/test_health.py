"""Health telemetry: camera and inference changes at once, a periodic status read from the
pipeline's snapshot only, and the outbox's state (backlog per category, blocked channels).
"""

from __future__ import annotations

import dataclasses
import time

from trakr.delivery.cloud import Cloud, attach
from trakr.pipeline import Pipeline
from trakr.types import CameraHealth, CameraSnapshot, PipelineSnapshot


def _statuses(fake, token: str) -> list[dict]:
    return [v for v in fake.telemetry_values(token) if v.get("event") == "status"]


def test_health_on_change_and_periodic(fake, tmp_path, cloud_raw, config_of, tok):
    raw = cloud_raw(cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    cloud.health_sink(CameraHealth(1, "down", "open failed", time.time()))
    assert fake.wait_for(lambda: any(v.get("cam1_state") == "down" for v in fake.telemetry_values(tok["health"])), 5)
    assert fake.wait_for(lambda: len(_statuses(fake, tok["health"])) >= 2, 5)
    status = _statuses(fake, tok["health"])[-1]
    assert {"outbox_backlog", "outbox_bytes", "config_version", "inference_state"} <= set(status)
    assert status["outbox_blocked_channels"] == {}
    cloud.stop()


class _Frozen:
    """A pipeline held at one moment: ``snapshot()`` is all that health telemetry reads of it."""

    def __init__(self, snap: PipelineSnapshot):
        self.snap = snap

    def snapshot(self) -> PipelineSnapshot:
        return self.snap


def _camera(cid: int, state: str, fps: float, reason: str = "") -> CameraSnapshot:
    return CameraSnapshot(
        camera_id=cid,
        name=f"cam{cid}",
        state=state,
        reason=reason,
        capture_fps=fps,
        frames_read=100,
        frames_published=100,
        frames_dropped=0,
        gate_seen=100,
        gate_passed=50,
        gate_reasons={},
        frames_analysed=50,
        reconnects=0,
        failures=0,
        last_frame_at=None,
        last_error="",
    )


def test_status_comes_from_the_snapshot_and_a_dead_camera_reports_0_fps(fake, tmp_path, cloud_raw, config_of, tok):
    raw = cloud_raw(cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
    raw["common"].update(train_storage_ip="", train_url="http://127.0.0.1:1/api/v1/T/telemetry")  # refused
    cfg = config_of(raw)
    snap = dataclasses.replace(
        Pipeline(cfg, output_dir=tmp_path / "p").snapshot(),
        cameras={1: _camera(1, "up", 9.96), 2: _camera(2, "down", 90.6, "refused")},  # a stale rate
        alerts=7,
        alerts_pending_disk=3,
        detector_health="down",
    )
    cloud = Cloud(cfg, tmp_path, pipeline=_Frozen(snap))
    for i in range(4):
        cloud.enqueue_training("training", tmp_path / f"{i}.jpg", {"camera_id": 1, "captured_at": time.time()})
    cloud.start()
    try:
        assert fake.wait_for(lambda: _statuses(fake, tok["health"]), 5)
        assert fake.wait_for(
            lambda: any(v.get("event") == "inference_down" for v in fake.telemetry_values(tok["health"])), 5
        )
    finally:
        cloud.stop()
    status = _statuses(fake, tok["health"])[0]
    assert status["cam1_state"] == "up" and status["cam1_fps"] == 9.96
    assert status["cam2_state"] == "down" and status["cam2_fps"] == 0 and status["cam2_reason"] == "refused"
    assert status["cameras_up"] == 1 and status["cameras_down"] == 1
    assert status["alerts_total"] == 7 and status["alerts_pending_disk"] == 3
    assert status["inference_state"] == "down"
    assert status["outbox_backlog_training"] == 4  # per category


def test_status_from_a_real_pipeline_when_its_camera_dies(fake, tmp_path, cloud_raw, config_of, tok, rtsp_server_fn):
    cams = [
        {"CameraId": 1, "CamName": "yard", "Address": rtsp_server_fn.url(0), "Detection": "person"},
        {"CameraId": 2, "CamName": "gone", "Address": "no-such-file.mp4", "Detection": "person"},
    ]
    raw = cloud_raw(
        cameras=cams,
        detector={"imgsz": 320},
        capture={"open_timeout_s": 2, "read_timeout_s": 2, "backoff_min_s": 0.3, "backoff_max_s": 2},
        cloud={"health_interval_s": 0.3, "http_timeout_s": 3},
    )
    raw["common"].update(CamNotReachableLimit=2, enableTraining=False)
    pipeline = Pipeline(config_of(raw), output_dir=tmp_path / "out")
    link = attach(pipeline, pipeline.config)
    pipeline.start()
    try:
        assert fake.wait_for(
            lambda: any(v.get("cam1_state") == "up" and v["cam1_fps"] > 0 for v in _statuses(fake, tok["health"])), 30
        )
        up = [v for v in _statuses(fake, tok["health"]) if v.get("cam1_state") == "up"][-1]
        assert up["cam2_state"] == "down" and up["cam2_fps"] == 0 and up["cameras_up"] == 1
        rtsp_server_fn.stop()
        seen = len(_statuses(fake, tok["health"]))
        assert fake.wait_for(
            lambda: any(v.get("cam1_state") == "down" for v in _statuses(fake, tok["health"])[seen:]), 30
        )
    finally:
        pipeline.stop()
        link.stop()
    down = [v for v in _statuses(fake, tok["health"])[seen:] if v.get("cam1_state") == "down"][0]
    assert down["cam1_fps"] == 0 and down["cameras_up"] == 0 and down["inference_state"] == "up"
