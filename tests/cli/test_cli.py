"""The ``trakr`` command as a user runs it: config check, refusing bad configs, partial start,
status lines, clean shutdown."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trakr.cli import STATUS_INTERVAL_ENV, status_line, status_table
from trakr.evidence import read_alerts
from trakr.types import CameraSnapshot, PipelineSnapshot

TRAKR = [sys.executable, "-m", "trakr.cli"]
SEED = Path(__file__).parent.parent / "data" / "sysconfig.seed.json"


def _run(*args, timeout=120, env=None):
    return subprocess.run(
        [*TRAKR, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_config_check_lists_every_problem_and_fails(tmp_path):
    r = _run("config", "check", str(SEED))
    assert r.returncode == 1
    assert "camera 78: CamDelay = -6" in r.stderr and "camera 12: ROI = 'dggd'" in r.stderr
    assert "7 error(s)" in r.stdout
    assert "2 invalid camera(s) left out (trakr run starts the others): 78, 12" in r.stdout


def test_config_check_sample_cameras_shows_table_and_warnings():
    r = _run("config", "check", str(SEED), "--sample-cameras")
    assert r.returncode == 0, r.stderr
    assert "cloudtestCam" in r.stdout or "cloudtes" in r.stdout
    assert "warning: camera 0: roi_config.ROI2.detections = 'nohelmet'" in r.stderr


def test_run_refuses_a_config_without_a_valid_camera_naming_camera_field_value():
    r = _run("run", "--config", str(SEED), "--duration", "1")  # both of the seed's cameras are invalid
    assert r.returncode == 2
    assert "camera 12: alert_time_pause = -4" in r.stderr
    assert "refusing to run: no valid camera (2 invalid" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("fresh_cache", [False, True], ids=["cached-backend", "backend-measured-at-start"])
def test_sigterm_stops_cleanly_with_pending_alerts_written(tmp_path, sample_clip, fresh_cache):
    """``fresh_cache``: ``backend: auto`` measures (and closes) OpenVINO at start. Before OpenVINO's
    Core was kept for the process, SIGTERM then killed trakr with SIGSEGV (a parked plugin thread
    woke into an unloaded library)."""
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
    env = {**os.environ, "TRAKR_CACHE": str(tmp_path / "cache")} if fresh_cache else None
    proc = subprocess.Popen(
        [*TRAKR, "run", "--config", str(path), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
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


# --------------------------------------------------------------------------- partial start


def _seed_with_good_camera(clip: Path) -> dict:
    """The seed file (its two invalid cameras included) plus a good camera on the sample clip and
    one that is refused. The cloud URLs are blanked: this test must not reach the internet."""
    raw = json.loads(SEED.read_text())
    for key, value in list(raw["common"].items()):
        if isinstance(value, str) and "://" in value:
            raw["common"][key] = "NA"
    raw["common"]["CamDelay"] = 0  # the seed samples every 20 s
    raw["common"]["CamNotReachableLimit"] = 1  # report the refused camera down at once
    raw["trakr"] = {"detector": {"imgsz": 320}, "capture": {"loop_files": True}}
    raw["cameras"] += [
        {"CameraId": 5, "CamName": "walkway", "Address": str(clip), "Detection": "person", "alert_time_pause": 1},
        {"CameraId": 6, "Address": "rtsp://admin:hunter2@127.0.0.1:9/x", "Detection": "person"},
    ]
    return raw


def test_run_starts_the_valid_cameras_reports_the_invalid_ones_and_logs_status(tmp_path, sample_clip):
    path = tmp_path / "sys.json"
    path.write_text(json.dumps(_seed_with_good_camera(sample_clip)))
    out = tmp_path / "out"
    r = _run("run", "--config", str(path), "--output", str(out), "--duration", "8", env={STATUS_INTERVAL_ENV: "0.5"})
    assert r.returncode == 0, r.stderr
    log = (out / "trakr.log").read_text()  # the seed sets LogFileSave
    for text in (r.stderr, log):
        assert "config: camera 78 is invalid and was not started: CamDelay = -6" in text
        assert "config: camera 12 is invalid and was not started: CamDelay = -7" in text
    assert "not started (invalid config): camera 78, 12" in r.stdout
    # the one-line status: 2 cameras run (the refused one is down), frames analysed, outbox
    status = [line for line in log.splitlines() if "status: cameras" in line]
    assert len(status) >= 3, log
    assert any("status: cameras 1/2 up" in line and "not up: 6 down" in line for line in status), status
    fps = [float(m.group(1)) for line in status if (m := re.search(r"analysed ([0-9.]+) fps", line))]
    assert max(fps) > 0, status
    assert all("outbox backlog 0" in line for line in status), status
    assert all(a.camera_id == 5 for a in read_alerts(out))
    assert "hunter2" not in log + r.stderr + r.stdout


def test_run_strict_refuses_any_invalid_camera(tmp_path, sample_clip):
    path = tmp_path / "sys.json"
    path.write_text(json.dumps(_seed_with_good_camera(sample_clip)))
    r = _run("run", "--config", str(path), "--duration", "1", "--strict")
    assert r.returncode == 2
    assert "refusing to run: 7 config error(s) (--strict)" in r.stderr and "camera 78: CamDelay = -6" in r.stderr


BAD_FILES = {
    "directory": (None, "is a directory, not a config file"),
    "non-utf8": (b'{"common": {"ClientName": "\xff"}, "cameras": []}', "not UTF-8 text"),
    "deep": (b"[" * 100000 + b"]" * 100000, "invalid JSON: nested too deeply"),
    "cameras-5": (b'{"common": {}, "cameras": 5}', "file: cameras = 5: expected a list of cameras"),
    "open-timeout": (
        b'{"common": {}, "cameras": [], "trakr": {"capture": {"open_timeout_s": 1e7}}}',
        "trakr.capture.open_timeout_s = 10000000.0: Input should be less than or equal to 600",
    ),
    "read-timeout-inf": (
        b'{"common": {}, "cameras": [], "trakr": {"capture": {"read_timeout_s": 1e999}}}',
        "trakr.capture.read_timeout_s = inf: Input should be a finite number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_run_with_an_unusable_config_exits_2_with_a_problem_line(tmp_path, case):
    content, line = BAD_FILES[case]
    path = tmp_path / "conf"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    r = _run("run", "--config", str(path), "--duration", "1")
    assert r.returncode == 2, r.stderr
    assert line in r.stderr and "refusing to run" in r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- status from the snapshot


def _make(cls, **given):
    """A ``cls`` dataclass with the given fields; any other is zero/empty (the types grow)."""
    zero = {"int": 0, "float": 0.0, "str": "", "bool": True}
    fields = {
        name: zero.get(str(f.type), {} if str(f.type).startswith("dict") else None)
        for name, f in cls.__dataclass_fields__.items()
    }
    return cls(**{**fields, **given})


def _cam(cid: int, state: str, *, analysed: int = 0, reason: str = "", name: str = "") -> CameraSnapshot:
    return _make(
        CameraSnapshot,
        camera_id=cid,
        name=name,
        state=state,
        reason=reason,
        capture_fps=10.0 if state == "up" else 0.0,
        frames_read=100,
        frames_published=90,
        frames_dropped=3,
        gate_seen=80,
        gate_passed=20,
        gate_reasons={"motion": 20},
        frames_analysed=analysed,
        reconnects=1,
    )


def _snap(at: float, cameras: list[CameraSnapshot], analysed: int, alerts: int, **kw) -> PipelineSnapshot:
    given = {
        "at": at,
        "cameras": {c.camera_id: c for c in cameras},
        "frames_analysed": analysed,
        "alerts": alerts,
        "detector": "onnxruntime",
        "detector_health": "up",
        "threads_alive": True,
    }
    return _make(PipelineSnapshot, **{**given, **kw})


def test_status_line_rates_since_the_previous_snapshot():
    prev = _snap(100.0, [_cam(1, "up"), _cam(2, "starting")], analysed=1000, alerts=5)
    snap = _snap(160.0, [_cam(1, "up"), _cam(2, "down", reason="refused")], analysed=1600, alerts=7)
    assert status_line(snap, prev, 12) == (
        "status: cameras 1/2 up, analysed 10.0 fps, alerts 7 (+2), outbox backlog 12; not up: 2 down (refused)"
    )
    bad = _snap(160.0, [_cam(1, "up")], 1600, 7, detector_health="down", threads_alive=False)
    assert status_line(bad, prev, None).endswith(
        "outbox backlog ?; detector onnxruntime down; a pipeline thread is not running"
    )


def test_status_table_reads_only_the_snapshot():
    snap = _snap(0.0, [_cam(1, "up", analysed=50, name="door"), _cam(2, "down", reason="timeout")], 50, 0)
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(status_table(snap, 10.0))
    text = console.export_text()
    assert re.search(r"1:door\s+│\s+up\s+│\s+10.0\s+│\s+5.0\s+│\s+25%\s+│\s+3\s+│\s+1", text), text
    assert "down (timeout)" in text
