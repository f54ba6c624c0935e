"""The cloud config: the start-up fetch, pushes while running, and bad values from the cloud
(which must never stop trakr, and are reported rejected once), against tests/fake_thingsboard.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trakr.delivery.cloud import Cloud, attach, startup_config

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


def _bad_values(raw: dict) -> dict[str, object]:
    """Config values a cloud may hold that must be rejected, never crash trakr."""
    roi_numbers = json.loads(json.dumps(raw))
    roi_numbers["common"]["config_version"] = "9"
    roi_numbers["cameras"][0]["roi_config"] = {"roi_config": {"dock": {"points": [0.1, 0.2, 0.3]}}}
    invalid = json.loads(json.dumps(raw))
    invalid["common"]["config_version"] = "9"
    invalid["cameras"][0]["CamDelay"] = -5
    return {
        "invalid": invalid,
        "cameras_5": {"common": dict(raw["common"], config_version="9"), "cameras": 5},
        "roi_points_as_numbers": roi_numbers,
        "nested_100000_deep": '{"common": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "a_list": [1, 2, 3],
        "plain_text": "sysconfig goes here",
    }


BAD = ["invalid", "cameras_5", "roi_points_as_numbers", "nested_100000_deep", "a_list", "plain_text"]


def _rejections(fake, token: str) -> list[dict]:
    return [r.body for r in fake.received("attributes", token) if r.body.get("config_status") == "rejected"]


@pytest.mark.parametrize("bad", BAD)
def test_bad_cloud_config_at_start_is_rejected_once_and_the_local_one_used(fake, tmp_path, cloud_raw, tok, bad):
    """Issue 'Months unattended' items 3 and 5d: such values made startup exit with a traceback,
    or were 'unavailable' and never reported; and each start and poll reported them again."""
    path = tmp_path / "sysconfig.json"
    local = cloud_raw(version="1", cloud={"long_poll_s": 0.3, "config_refresh_s": 0.1, "http_timeout_s": 3})
    path.write_text(json.dumps(local))
    fake.set_shared(tok["attr"], "sysconfig", _bad_values(local)[bad])
    for _ in range(2):  # a box that restarts
        rep = startup_config(path, cloud_config=True)
        assert rep.ok and rep.config.common.config_version == "1"
        assert any(p.where == "cloud" and "rejected" in p.message for p in rep.problems), rep.problems
    assert len(_rejections(fake, tok["attr"])) == 1
    assert json.loads(path.read_text()) == local  # the local file is untouched
    cloud = Cloud(rep.config, tmp_path / "out", config_path=path, cloud_config=True)
    cloud.start()
    try:  # the long-poll reads the same value again and again: nothing new to report
        assert fake.wait_for(lambda: len(fake.received("shared_get", tok["attr"])) >= 5, 10)
    finally:
        cloud.stop()
    assert len(_rejections(fake, tok["attr"])) == 1
    assert cloud.config_sync.rejected == 0 and cloud.config_sync.applied == 0


@pytest.mark.parametrize("bad", BAD)
def test_bad_push_while_running_is_rejected_once_not_retried_for_ever(fake, tmp_path, cloud_raw, config_of, tok, bad):
    path = tmp_path / "sysconfig.json"
    local = cloud_raw(version="1", cloud={"long_poll_s": 0.3, "config_refresh_s": 0.1, "http_timeout_s": 3})
    path.write_text(json.dumps(local))
    applied = []
    cloud = Cloud(config_of(local), tmp_path / "out", config_path=path, cloud_config=True, on_config=applied.append)
    cloud.start()
    try:
        assert fake.wait_for(lambda: fake.waiting.get(tok["attr"], 0) >= 1, 5)
        fake.set_shared(tok["attr"], "sysconfig", _bad_values(local)[bad])
        assert fake.wait_for(lambda: _rejections(fake, tok["attr"]), 10)
        fetched = len(fake.received("shared_get", tok["attr"]))
        assert fake.wait_for(lambda: len(fake.received("shared_get", tok["attr"])) >= fetched + 4, 10)
    finally:
        cloud.stop()
    assert len(_rejections(fake, tok["attr"])) == 1 and cloud.config_sync.rejected == 1
    assert not applied and cloud.config.common.config_version == "1"
    assert json.loads(path.read_text()) == local


class _DeepAnswer(BaseHTTPRequestHandler):
    """Shared attributes whose JSON is nested 100 000 deep (valid JSON no parser should recurse into)."""

    protocol_version = "HTTP/1.1"
    posted: list[dict] = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = b'{"shared": {"sysconfig": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_cloud_answer_nested_100000_deep_is_rejected_once_at_start(tmp_path, cloud_raw):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DeepAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = cloud_raw(version="1")
        local["common"]["cloud_status_ip"] = f"http://127.0.0.1:{server.server_address[1]}/api/v1/DEEPtok/attributes"
        path = tmp_path / "sysconfig.json"
        path.write_text(json.dumps(local))
        for _ in range(2):
            rep = startup_config(path, cloud_config=True)
            assert rep.ok and rep.config.common.config_version == "1"
    finally:
        server.shutdown()
        server.server_close()
    assert [p["config_status"] for p in _DeepAnswer.posted] == ["rejected"]
    assert "nested too deeply" in _DeepAnswer.posted[0]["config_errors"]


def test_trakr_run_starts_with_the_local_config_when_the_cloud_one_is_unusable(
    fake, tmp_path, sample_clip, cloud_raw, tok
):
    """The real ``trakr run --cloud_config 1`` with ROI points given as numbers in the cloud."""
    cams = [{"CameraId": 3, "CamName": "street", "Address": str(sample_clip), "Detection": "person", "CamDelay": 0.5}]
    local = cloud_raw(version="1", cameras=cams, detector={"imgsz": 320, "threads": 1}, cloud={"long_poll_s": 1})
    local["common"]["enableTraining"] = False
    path = tmp_path / "sysconfig.json"
    path.write_text(json.dumps(local))
    fake.set_shared(tok["attr"], "sysconfig", _bad_values(local)["roi_points_as_numbers"])
    proc = subprocess.run(
        [sys.executable, "-m", "trakr.cli", "run", "--config", str(path), "--cloud_config", "1"]
        + ["--duration", "3", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert json.loads(path.read_text()) == local
    assert len(_rejections(fake, tok["attr"])) == 1
    assert fake.telemetry_values(tok["alert"])  # it ran: the local config's camera raised alerts
