"""The cloud config: the start-up fetch, pushes while running, and bad values from the cloud
(which must never stop trakr, and are reported rejected once), against tests/fake_thingsboard.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from trakr.delivery.cloud import attach, startup_config

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent.parent / "src")


def _push_config_pipeline(config, tmp_path):
    """A real pipeline on the sample clip with the real model (imgsz 320)."""
    from trakr.inference.onnx import OnnxDetector
    from trakr.pipeline import Pipeline

    return Pipeline(config, detector=OnnxDetector(imgsz=320), output_dir=tmp_path / "out")


def test_config_push_new_roi_takes_effect_invalid_is_rejected(fake, tmp_path, sample_clip, cloud_raw, config_of, tok):
    cams = [
        {
            "CameraId": 1,
            "CamName": "yard",
            "Address": str(sample_clip),
            "Detection": "",
            "CamDelay": 0.3,
            "alert_time_pause": 1,
        }
    ]
    raw = cloud_raw(cameras=cams, capture={"loop_files": True}, cloud={"long_poll_s": 5, "http_timeout_s": 3})
    raw["common"]["enableTraining"] = False
    path = tmp_path / "sysconfig.json"
    path.write_text(json.dumps(raw))
    pipeline = _push_config_pipeline(config_of(raw), tmp_path)
    link = attach(pipeline, pipeline.config, config_path=path, cloud_config=True)
    pipeline.start()
    try:
        assert fake.wait_for(lambda: fake.waiting.get(tok["attr"], 0) >= 1, 5)
        time.sleep(0.5)
        assert pipeline.snapshot().frames_analysed > 0 and not fake.telemetry_values(tok["alert"])
        new = json.loads(json.dumps(raw))
        new["common"]["config_version"] = "2"
        new["cameras"][0]["roi_config"] = {
            "roi_config": {
                "dock": {  # the clip's walkway: people all along
                    "points": ["0.0,0.33", "0.75,0.25", "1.0,0.45", "1.0,0.85", "0.55,0.65", "0.0,0.45"],
                    "detections": "person",
                }
            }
        }
        del new["trakr"]  # a cloud config without the local section keeps it
        fake.set_shared(tok["attr"], "sysconfig", json.dumps(new))
        assert fake.wait_for(lambda: any(v["roi"] == "dock" for v in fake.telemetry_values(tok["alert"])), 10)
        assert pipeline.config.common.config_version == "2"
        saved = json.loads(path.read_text())
        assert saved["common"]["config_version"] == "2" and saved["trakr"] == raw["trakr"]
        assert json.loads((tmp_path / "sysconfig.json.last-good").read_text()) == saved
        assert fake.wait_for(
            lambda: any(r.body.get("config_status") == "applied" for r in fake.received("attributes", tok["attr"])), 5
        )
        bad = json.loads(json.dumps(new))
        bad["common"]["config_version"] = "3"
        bad["cameras"][0]["CamDelay"] = -5
        assert fake.wait_for(lambda: fake.waiting.get(tok["attr"], 0) >= 1, 5)
        fake.set_shared(tok["attr"], "sysconfig", bad)
        assert fake.wait_for(
            lambda: any(r.body.get("config_status") == "rejected" for r in fake.received("attributes", tok["attr"])), 10
        )
        rejected = [
            r.body for r in fake.received("attributes", tok["attr"]) if r.body.get("config_status") == "rejected"
        ][0]
        assert rejected["config_version"] == "3" and "CamDelay" in rejected["config_errors"]
        assert pipeline.config.common.config_version == "2"  # the old one keeps running
        assert json.loads(path.read_text())["common"]["config_version"] == "2"
        assert link.config_sync.applied == 1 and link.config_sync.rejected == 1
        assert not pipeline.stopping and pipeline.cameras()[1].rules.zones[-1].name == "dock"
    finally:
        pipeline.stop()
        link.stop()


def test_startup_config_fetch(fake, tmp_path, cloud_raw, tok):
    path = tmp_path / "sysconfig.json"
    local = cloud_raw(version="1")
    path.write_text(json.dumps(local))
    # cloud unreachable -> local
    fake.refuse()
    rep = startup_config(path, cloud_config=True)
    assert rep.ok and rep.config.common.config_version == "1"
    assert any("unavailable" in p.message for p in rep.problems)
    fake.accept()
    # no attribute -> local; 0 -> never asks
    assert startup_config(path, cloud_config=False).config.common.config_version == "1"
    assert not fake.received("shared_get")
    # newer valid version -> saved and used
    newer = cloud_raw(version="7")
    newer["cameras"][0]["CamName"] = "renamed"
    fake.set_shared(tok["attr"], "sysconfig", newer)
    rep = startup_config(path, cloud_config=True)
    assert rep.ok and rep.config.common.config_version == "7" and rep.config.cameras[0].name == "renamed"
    assert json.loads(path.read_text())["common"]["config_version"] == "7"
    assert (tmp_path / "sysconfig.json.last-good").exists()
    assert fake.received("attributes", tok["attr"])[-1].body["config_status"] == "applied"
    # same version -> local file untouched
    mtime = path.stat().st_mtime_ns
    assert startup_config(path, cloud_config=True).config.common.config_version == "7"
    assert path.stat().st_mtime_ns == mtime
    # invalid -> rejected and reported, local used
    broken = cloud_raw(version="8")
    broken["cameras"][0]["CameraId"] = "not a number"
    fake.set_shared(tok["attr"], "sysconfig", json.dumps(broken))
    rep = startup_config(path, cloud_config=True)
    assert rep.ok and rep.config.common.config_version == "7"
    assert fake.received("attributes", tok["attr"])[-1].body["config_status"] == "rejected"
    # a corrupted local file falls back to .last-good
    path.write_text("{ not json")
    rep = startup_config(path, cloud_config=False)
    assert rep.ok and rep.config.common.config_version == "7"


def test_trakr_run_cloud_config_fetches_and_delivers(fake, tmp_path, sample_clip, cloud_raw, tok):
    """The real ``trakr run --cloud_config 1``: newer config fetched and saved, alerts delivered."""
    cams = [
        {
            "CameraId": 3,
            "CamName": "street",
            "Address": str(sample_clip),
            "Detection": "person",
            "CamDelay": 0.5,
            "alert_time_pause": 1,
        }
    ]
    local = cloud_raw(
        version="1",
        cameras=cams,
        detector={"imgsz": 320, "threads": 1},
        cloud={"long_poll_s": 2, "http_timeout_s": 3},
    )
    local["common"]["enableTraining"] = False
    path = tmp_path / "sysconfig.json"
    path.write_text(json.dumps(local))
    newer = json.loads(json.dumps(local))
    newer["common"]["config_version"] = "5"
    newer["cameras"][0]["CamName"] = "street-renamed"
    fake.set_shared(tok["attr"], "sysconfig", newer)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trakr.cli",
            "run",
            "--config",
            str(path),
            "--cloud_config",
            "1",
            "--duration",
            "4",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(path.read_text())["common"]["config_version"] == "5"
    written = sorted(json.loads(p.read_text())["alert_id"] for p in out.glob("alerts/*/*.json"))
    assert written, proc.stdout[-2000:]
    delivered = [v for v in fake.telemetry_values(tok["alert"])]
    assert sorted(v["alert_id"] for v in delivered) == written
    assert {v["camera_name"] for v in delivered} == {"street-renamed"}
    assert "outbox: 0 message(s) pending" in proc.stdout
    assert any(r.kind == "updates" for r in fake.requests)  # the long-poll ran
    for token in tok.values():
        assert token not in proc.stdout + proc.stderr
