"""The ``trakr`` command as a user runs it: config check, refusing bad configs, clean shutdown."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from trakr.evidence import read_alerts

TRAKR = [sys.executable, "-m", "trakr.cli"]
SEED = Path(__file__).parent / "data" / "sysconfig.seed.json"


def _run(*args, timeout=120):
    return subprocess.run([*TRAKR, *args], capture_output=True, text=True, timeout=timeout)


def test_config_check_lists_every_problem_and_fails(tmp_path):
    r = _run("config", "check", str(SEED))
    assert r.returncode == 1
    assert "camera 78: CamDelay = -6" in r.stderr and "camera 12: ROI = 'dggd'" in r.stderr
    assert "7 error(s)" in r.stdout


def test_config_check_sample_cameras_shows_table_and_warnings():
    r = _run("config", "check", str(SEED), "--sample-cameras")
    assert r.returncode == 0, r.stderr
    assert "cloudtestCam" in r.stdout or "cloudtes" in r.stdout
    assert "warning: camera 0: roi_config.ROI2.detections = 'nohelmet'" in r.stderr


def test_run_refuses_a_bad_config_naming_camera_field_value():
    r = _run("run", "--config", str(SEED), "--duration", "1")
    assert r.returncode == 2
    assert "camera 12: alert_time_pause = -4" in r.stderr and "refusing to run" in r.stderr


def test_sigterm_stops_cleanly_with_pending_alerts_written(tmp_path, sample_clip):
    cfg = {
        "common": {
            "batch_size": 2,
            "LoggingLevel": "INFO",
            "LogFileSave": True,
            "CamNotReachableLimit": 2,
            "alert_url": "http://127.0.0.1:9/api/v1/SECRETTOKEN123/telemetry",
        },
        "trakr": {"detector": {"imgsz": 320}, "capture": {"loop_files": True}},
        "cameras": [
            {
                "CameraId": 3,
                "CamName": "door",
                "Address": str(sample_clip),
                "Detection": "person",
                "alert_time_pause": 2,
            },
            {"CameraId": 4, "Address": "rtsp://admin:hunter2@127.0.0.1:9/x", "Detection": "person"},
        ],
    }
    path = tmp_path / "sys.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*TRAKR, "run", "--config", str(path), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not read_alerts(out):
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    alerts = read_alerts(out)
    assert alerts and all(a.camera_id == 3 for a in alerts)
    assert all((out / a.evidence_image).is_file() for a in alerts)
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    log = (out / "trakr.log").read_text()
    assert "received SIGTERM" in log and "pipeline stopped" in log
    assert "camera 4 down" in log and log.count("camera 4 down") == 1  # logged once, not per retry
    assert "hunter2" not in log + stderr and "SECRETTOKEN123" not in log + stderr
    assert f"{len(alerts)} alert(s) written" in stdout


def test_run_with_a_missing_model_file_says_so(tmp_path):
    path = tmp_path / "sys.json"
    path.write_text(
        json.dumps(
            {
                "common": {},
                "trakr": {"detector": {"model_path": str(tmp_path / "ppe.onnx")}},
                "cameras": [{"CameraId": 1, "Address": "0"}],
            }
        )
    )
    r = _run("run", "--config", str(path), "--duration", "1")
    assert r.returncode == 2
    assert "trakr.detector: model file not found" in r.stderr and "Traceback" not in r.stderr
