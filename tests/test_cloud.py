"""The cloud side against a real HTTP server (tests/fake_thingsboard.py) and a real mosquitto:
outage and recovery, kill -9, disk bound, config fetch and push, MQTT, speakers, training, health.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from fake_thingsboard import FakeThingsBoard
from mqtt_broker import mosquitto  # noqa: F401 - fixture

from trakr.config import parse_config
from trakr.delivery.cloud import Cloud, attach, startup_config
from trakr.delivery.outbox import Outbox
from trakr.evidence import AlertStore
from trakr.types import Alert, CameraHealth, Frame

TOK = {
    "alert": "ALERTtok3n1",
    "roi": "ROItok3n2",
    "train": "TRAINtok3n3",
    "health": "HEALTHtok3n4",
    "attr": "ATTRtok3n5",
}
HERE = Path(__file__).resolve().parent


def cloud_raw(fake: FakeThingsBoard, version: str = "1", cameras: list | None = None, **trakr) -> dict:
    trakr.setdefault("outbox", {}).update({"retry_min_s": 0.05, "retry_max_s": 0.3})
    trakr.setdefault("cloud", {}).setdefault("http_timeout_s", 3)
    return {
        "common": {
            "config_version": version,
            "alert_url": fake.url(TOK["alert"]),
            "roi_ip": fake.url(TOK["roi"]),
            "train_url": fake.url(TOK["train"]),
            "test_url": fake.url(TOK["health"]),
            "cloud_status_ip": fake.url(TOK["attr"], "attributes"),
            "alert_storage_ip": f"{fake.base}/upload/AlertImageData/",
            "train_storage_ip": f"{fake.base}/upload/TrainImageData/",
            "audio_key": {"nohelmet": "m:1", "novest": "m:2"},
            "recommendations": {"nohelmet": "-> Please train workers to enter with proper \n safety helmet"},
            "enableSpeaker": True,
            "enableTraining": True,
            "Alert2Train": True,
            "CamAliveLimit": 30,
        },
        "cameras": cameras
        if cameras is not None
        else [
            {
                "CameraId": 1,
                "CamName": "gate",
                "Address": "0",
                "Detection": "person",
                "en_spkr": 1,
                "train_en": True,
                "train_time_pause": 10,
                "Speaker": f"127.0.0.1:{fake.port}",
            }
        ],
        "trakr": trakr,
    }


def config_of(raw: dict):
    rep = parse_config(raw)
    assert rep.ok, rep.problems
    return rep.config


def make_alert(i: int, violation: str = "person", roi: str | None = None, speaker: str | None = None) -> Alert:
    t = time.time()
    return Alert(
        alert_id=uuid.uuid4().hex,
        camera_id=1,
        camera_name="gate",
        roi=roi,
        violation=violation,
        captured_at=t,
        created_at=t + 0.05,
        recommendation="keep out",
        objects=[{"class_name": violation, "confidence": 0.9, "xyxy": [1.0, 1.0, 10.0, 10.0]}],
        frame_size=(64, 48),
        speaker=speaker,
        extra={"i": i},
    )


DETS = sv.Detections(
    xyxy=np.array([[4.0, 6.0, 20.0, 40.0]]),
    confidence=np.array([0.9]),
    class_id=np.array([0]),
    data={"class_name": np.array(["person"])},
)
IMAGE = np.full((48, 64, 3), 80, np.uint8)


@pytest.fixture
def fake():
    with FakeThingsBoard() as server:
        yield server


def test_outage_refused_then_503_then_recovery_delivers_all_in_order_once(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cloud = Cloud(config_of(cloud_raw(fake)), tmp_path)
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    fake.refuse()
    cloud.start()
    produced = []
    for i in range(8):  # connection refused
        produced.append(store.save(make_alert(i, roi="ROI1" if i % 2 else None), IMAGE, DETS).alert_id)
    time.sleep(0.4)
    assert cloud.sender.failures >= 1 and not fake.requests
    fake.mode = "error"  # listening again, answering 503
    fake.accept()
    for i in range(8, 16):
        produced.append(store.save(make_alert(i), IMAGE, DETS).alert_id)
    assert fake.wait_for(lambda: len(fake.received(ok_only=False)) >= 3, 5)
    assert all(r.status == 503 for r in fake.received(ok_only=False))
    fake.mode = "ok"
    assert fake.wait_for(
        lambda: len(fake.telemetry_values(TOK["alert"])) >= 16 and len(fake.received("upload")) >= 16, 15
    ), cloud.stats()
    time.sleep(0.3)  # nothing more should arrive
    cloud.stop()
    values = fake.telemetry_values(TOK["alert"])
    assert [v["alert_id"] for v in values] == produced  # in order
    keys = [v["msg_id"] for v in values]
    assert len(keys) == len(set(keys)) == 16  # once per idempotency key
    tele = fake.received("telemetry", TOK["alert"])
    assert all(r.headers["Idempotency-Key"] == r.body["values"]["msg_id"] for r in tele)
    assert all(abs(r.body["ts"] - round(r.at * 1000)) < 60_000 and isinstance(r.body["ts"], int) for r in tele)
    ups = fake.received("upload")
    assert [u.fields["alert_id"] for u in ups] == produced
    assert {u.fields["idempotency_key"] for u in ups} == {f"alert-image:{a}" for a in produced}
    assert all(u.files["image"][1][:2] == b"\xff\xd8" for u in ups)
    assert ups[0].fields["violation"] == "person" and ups[0].fields["camera_id"] == "1"
    assert [v["roi"] for v in fake.telemetry_values(TOK["roi"])] == ["ROI1"] * 4
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "503" in text or "Connect" in text  # the outage was logged...
    for token in TOK.values():  # ...without a single device token
        assert token not in text


WORKER = r"""
import json, sys, time, uuid, numpy as np, supervision as sv
sys.path.insert(0, sys.argv[4])
from trakr.evidence import AlertStore
from trakr.types import Alert
from trakr.delivery.cloud import Cloud
from trakr.config import parse_config
cfg = parse_config(json.load(open(sys.argv[1]))).config
out, mode = sys.argv[2], sys.argv[3]
cloud = Cloud(cfg, out)
cloud.start()
if mode == "drain":
    deadline = time.time() + 20
    while cloud.outbox.stats()["backlog"] and time.time() < deadline:
        time.sleep(0.05)
    print("backlog", cloud.outbox.stats()["backlog"], "reconciled", cloud.reconciled, flush=True)
    cloud.stop()
    sys.exit(0)
store = AlertStore(out, sinks=[cloud.enqueue_alert])
dets = sv.Detections(xyxy=np.array([[4.0, 6, 20, 40]]), class_id=np.array([0]), data={"class_name": np.array(["person"])})
img = np.full((48, 64, 3), 80, np.uint8)
i = 0
while True:
    t = time.time()
    store.save(Alert(uuid.uuid4().hex, 1, "gate", None, "person", t, t, "", [], (64, 48)), img, dets)
    i += 1
    print(i, flush=True)
"""


def test_kill_9_with_backlog_then_restart_delivers_everything_once(fake, tmp_path):
    cfg_path = tmp_path / "sysconfig.json"
    cfg_path.write_text(json.dumps(cloud_raw(fake)))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    src = str(HERE.parent / "src")
    fake.mode = "error"  # a backlog builds up
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cfg_path), str(out), "produce", src], stdout=subprocess.PIPE, text=True
    )
    n = 0
    deadline = time.monotonic() + 30
    while n < 40 and time.monotonic() < deadline:
        n = int(proc.stdout.readline() or 0)
    os.kill(proc.pid, signal.SIGKILL)  # mid-production: an alert may be on disk but not queued
    proc.wait()
    assert n >= 40
    written = sorted(json.loads(p.read_text())["alert_id"] for p in out.glob("alerts/*/*.json"))
    assert len(written) >= 40
    fake.mode = "ok"
    drain = subprocess.run(
        [sys.executable, str(script), str(cfg_path), str(out), "drain", src], capture_output=True, text=True, timeout=60
    )
    assert "backlog 0" in drain.stdout, drain.stdout + drain.stderr[-2000:]
    delivered = [v["alert_id"] for v in fake.telemetry_values(TOK["alert"])]
    assert sorted(delivered) == written, drain.stdout  # nothing lost, nothing duplicated
    uploaded = [u.fields["alert_id"] for u in fake.received("upload")]
    assert sorted(uploaded) == written, drain.stdout
    assert list((out / "outbox" / "files").iterdir()) == []


def test_disk_bound_drops_training_before_alerts_and_reports_it(fake, tmp_path):
    raw = cloud_raw(fake, outbox={"max_disk_mb": 0.03}, cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
    cloud = Cloud(config_of(raw), tmp_path)
    fake.refuse()
    cloud.start()
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # ~20 kB JPEGs
    for i in range(3):
        img = tmp_path / f"train{i}.jpg"
        img.write_bytes(cv2.imencode(".jpg", noisy)[1].tobytes())
        cloud.enqueue_training("training", img, {"camera_id": 1, "captured_at": time.time(), "labels": ""})
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    alerts = [store.save(make_alert(i), IMAGE, DETS).alert_id for i in range(5)]
    st = cloud.outbox.stats()
    assert st["dropped.training"] >= 2 and "dropped.alert" not in st and "dropped.alert_image" not in st
    assert st["bytes"] <= 30_000
    fake.accept()
    assert fake.wait_for(lambda: [v["alert_id"] for v in fake.telemetry_values(TOK["alert"])] == alerts, 10)
    assert fake.wait_for(
        lambda: any(v.get("outbox_dropped_training", 0) >= 2 for v in fake.telemetry_values(TOK["health"])), 5
    )
    cloud.stop()


def _push_config_pipeline(raw, tmp_path):
    """A real pipeline on the sample clip with the real model (imgsz 320)."""
    from trakr.inference.onnx import OnnxDetector
    from trakr.pipeline import Pipeline

    return Pipeline(config_of(raw), detector=OnnxDetector(imgsz=320), output_dir=tmp_path / "out")


def test_config_push_new_roi_takes_effect_invalid_is_rejected(fake, tmp_path, sample_clip):
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
    raw = cloud_raw(fake, cameras=cams, capture={"loop_files": True}, cloud={"long_poll_s": 5, "http_timeout_s": 3})
    raw["common"]["enableTraining"] = False
    path = tmp_path / "sysconfig.json"
    path.write_text(json.dumps(raw))
    pipeline = _push_config_pipeline(raw, tmp_path)
    link = attach(pipeline, pipeline.config, config_path=path, cloud_config=True)
    pipeline.start()
    try:
        assert fake.wait_for(lambda: fake.waiting.get(TOK["attr"], 0) >= 1, 5)
        time.sleep(0.5)
        assert pipeline.stats.frames_analysed > 0 and not fake.telemetry_values(TOK["alert"])
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
        fake.set_shared(TOK["attr"], "sysconfig", json.dumps(new))
        assert fake.wait_for(lambda: any(v["roi"] == "dock" for v in fake.telemetry_values(TOK["alert"])), 10)
        assert pipeline.config.common.config_version == "2"
        saved = json.loads(path.read_text())
        assert saved["common"]["config_version"] == "2" and saved["trakr"] == raw["trakr"]
        assert json.loads((tmp_path / "sysconfig.json.last-good").read_text()) == saved
        assert fake.wait_for(
            lambda: any(r.body.get("config_status") == "applied" for r in fake.received("attributes", TOK["attr"])), 5
        )
        bad = json.loads(json.dumps(new))
        bad["common"]["config_version"] = "3"
        bad["cameras"][0]["CamDelay"] = -5
        assert fake.wait_for(lambda: fake.waiting.get(TOK["attr"], 0) >= 1, 5)
        fake.set_shared(TOK["attr"], "sysconfig", bad)
        assert fake.wait_for(
            lambda: any(r.body.get("config_status") == "rejected" for r in fake.received("attributes", TOK["attr"])), 10
        )
        rejected = [
            r.body for r in fake.received("attributes", TOK["attr"]) if r.body.get("config_status") == "rejected"
        ][0]
        assert rejected["config_version"] == "3" and "CamDelay" in rejected["config_errors"]
        assert pipeline.config.common.config_version == "2"  # the old one keeps running
        assert json.loads(path.read_text())["common"]["config_version"] == "2"
        assert link.config_sync.applied == 1 and link.config_sync.rejected == 1
        assert not pipeline.stopping and pipeline.cameras()[1].rules.zones[-1].name == "dock"
    finally:
        pipeline.stop()
        link.stop()


def test_startup_config_fetch(fake, tmp_path):
    path = tmp_path / "sysconfig.json"
    local = cloud_raw(fake, version="1")
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
    newer = cloud_raw(fake, version="7")
    newer["cameras"][0]["CamName"] = "renamed"
    fake.set_shared(TOK["attr"], "sysconfig", newer)
    rep = startup_config(path, cloud_config=True)
    assert rep.ok and rep.config.common.config_version == "7" and rep.config.cameras[0].name == "renamed"
    assert json.loads(path.read_text())["common"]["config_version"] == "7"
    assert (tmp_path / "sysconfig.json.last-good").exists()
    assert fake.received("attributes", TOK["attr"])[-1].body["config_status"] == "applied"
    # same version -> local file untouched
    mtime = path.stat().st_mtime_ns
    assert startup_config(path, cloud_config=True).config.common.config_version == "7"
    assert path.stat().st_mtime_ns == mtime
    # invalid -> rejected and reported, local used
    broken = cloud_raw(fake, version="8")
    broken["cameras"][0]["CameraId"] = "not a number"
    fake.set_shared(TOK["attr"], "sysconfig", json.dumps(broken))
    rep = startup_config(path, cloud_config=True)
    assert rep.ok and rep.config.common.config_version == "7"
    assert fake.received("attributes", TOK["attr"])[-1].body["config_status"] == "rejected"
    # a corrupted local file falls back to .last-good
    path.write_text("{ not json")
    rep = startup_config(path, cloud_config=False)
    assert rep.ok and rep.config.common.config_version == "7"


def test_mqtt_telemetry_through_real_mosquitto(fake, tmp_path, mosquitto):  # noqa: F811
    import paho.mqtt.client as mqtt

    got: list[dict] = []
    subscribed = threading.Event()

    def subscriber():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:6]}")
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe("v1/devices/me/telemetry", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda cl, ud, msg: got.append(json.loads(msg.payload))
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        return c

    sub = subscriber()
    assert subscribed.wait(5)
    raw = cloud_raw(fake, cloud={"mqtt_url": mosquitto.url, "http_timeout_s": 2})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    ids = [store.save(make_alert(i), None, DETS).alert_id for i in range(3)]
    assert fake.wait_for(lambda: len([m for m in got if "alert_id" in m["values"]]) >= 3, 10)
    assert [m["values"]["alert_id"] for m in got if "alert_id" in m["values"]] == ids
    assert all(isinstance(m["ts"], int) for m in got)
    assert not fake.received("telemetry")  # telemetry went over MQTT, not HTTP
    # broker down: alerts wait in the outbox, then arrive
    sub.loop_stop()
    mosquitto.stop()
    more = [store.save(make_alert(i), None, DETS).alert_id for i in range(3, 5)]
    time.sleep(0.5)
    assert cloud.outbox.stats()["backlog_by_category"].get("alert") == 2
    mosquitto.start()
    subscribed.clear()
    sub = subscriber()
    assert subscribed.wait(5)
    assert fake.wait_for(lambda: [m["values"]["alert_id"] for m in got if "alert_id" in m["values"]][3:] == more, 15)
    sub.loop_stop()
    cloud.stop()


def test_speaker_http_driver_sends_audio_key_code_throttled(fake, tmp_path):
    raw = cloud_raw(
        fake,
        speaker={
            "driver": "http",
            "url_template": "http://{ip}/speaker/play?code={code}&cam={camera_id}",
            "min_interval_s": 30,
        },
    )
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    spk = f"127.0.0.1:{fake.port}"
    store = AlertStore(tmp_path, sinks=[cloud.alert_sink])
    store.save(make_alert(0, "nohelmet", speaker=spk), None, DETS)
    store.save(make_alert(1, "nohelmet", speaker=spk), None, DETS)  # throttled
    store.save(make_alert(2, "novest", speaker=spk), None, DETS)
    store.save(make_alert(3, "person", speaker=spk), None, DETS)  # no audio_key: skipped
    assert fake.wait_for(lambda: len(fake.received("speaker")) >= 2, 5)
    time.sleep(0.2)
    cloud.stop()
    calls = fake.received("speaker")
    assert [c.query["code"] for c in calls] == ["m:1", "m:2"] and calls[0].query["cam"] == "1"
    assert calls[0].path == "/speaker/play" and calls[0].method == "GET"
    assert cloud.speaker.throttled == 1 and cloud.speaker.skipped == 1


def test_speaker_tts_driver_writes_wav_and_runs_player(fake, tmp_path):
    played = tmp_path / "played.wav"
    raw = cloud_raw(fake, speaker={"driver": "tts", "player_command": ["cp", "{wav}", str(played)]})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    alert = make_alert(0, "nohelmet")
    alert.recommendation = raw["common"]["recommendations"]["nohelmet"]
    cloud.alert_sink(alert, tmp_path)
    wav = tmp_path / "speaker" / "cam1_nohelmet.wav"
    assert fake.wait_for(lambda: played.exists(), 10), cloud.outbox.stats()
    cloud.stop()
    data = wav.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 10_000
    assert played.read_bytes() == data


def test_training_capture_labels_uploads_and_frame_file(fake, tmp_path):
    from trakr.types import AnalysedFrame

    raw = cloud_raw(fake)
    raw["common"].update(enableFrame=True, frameFile="latest.png")
    cfg = config_of(raw)
    cloud = Cloud(cfg, tmp_path)
    cloud.start()
    cam = cfg.cameras[0]
    t0 = time.time()

    def af(dt, alerts=()):
        return AnalysedFrame(Frame(1, IMAGE, t0 + dt, 1), cam, DETS, [], list(alerts), [], t0 + dt)

    cloud.result_sink(af(0))
    cloud.result_sink(af(5))  # within train_time_pause = 10 s
    alert = make_alert(0)
    cloud.result_sink(af(6, [alert]))  # Alert2Train: captured whatever the pause
    cloud.result_sink(af(11))
    images = sorted((tmp_path / "training").glob("*/*.jpg"))
    assert len(images) == 3 and sum("_alert_" in p.name for p in images) == 1
    label = images[0].with_suffix(".txt").read_text()
    assert label == "0 0.187500 0.479167 0.250000 0.708333\n"
    assert (tmp_path / "training" / "classes.txt").read_text() == "person\n"
    assert fake.wait_for(lambda: len(fake.received("upload")) == 3 and len(fake.telemetry_values(TOK["train"])) == 3, 5)
    up = fake.received("upload")[0]
    assert up.path == "/upload/TrainImageData/" and up.fields["labels"] == label and up.fields["source"] == "periodic"
    assert sorted(u.files["image"][0] for u in fake.received("upload")) == [p.name for p in images]
    frame = cv2.imread(str(tmp_path / "latest.png"))
    assert frame is not None and frame.shape == IMAGE.shape
    cloud.stop()


def test_health_on_change_and_periodic(fake, tmp_path):
    raw = cloud_raw(fake, cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    cloud.health_sink(CameraHealth(1, "down", "open failed", time.time()))
    assert fake.wait_for(lambda: any(v.get("cam1_state") == "down" for v in fake.telemetry_values(TOK["health"])), 5)
    assert fake.wait_for(lambda: sum(v.get("event") == "status" for v in fake.telemetry_values(TOK["health"])) >= 2, 5)
    status = [v for v in fake.telemetry_values(TOK["health"]) if v.get("event") == "status"][-1]
    assert {"outbox_backlog", "outbox_bytes", "config_version", "inference_state"} <= set(status)
    cloud.stop()


def test_outbox_is_reused_across_restarts(tmp_path, fake):
    cfg = config_of(cloud_raw(fake))
    fake.refuse()
    cloud = Cloud(cfg, tmp_path)
    cloud.enqueue_alert(make_alert(0), tmp_path)
    cloud.stop()
    assert Outbox(tmp_path / "outbox").stats()["backlog"] == 1


def test_trakr_run_cloud_config_fetches_and_delivers(fake, tmp_path, sample_clip):
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
        fake,
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
    fake.set_shared(TOK["attr"], "sysconfig", newer)
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
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(path.read_text())["common"]["config_version"] == "5"
    written = sorted(json.loads(p.read_text())["alert_id"] for p in out.glob("alerts/*/*.json"))
    assert written, proc.stdout[-2000:]
    delivered = [v for v in fake.telemetry_values(TOK["alert"])]
    assert sorted(v["alert_id"] for v in delivered) == written
    assert {v["camera_name"] for v in delivered} == {"street-renamed"}
    assert "outbox: 0 message(s) pending" in proc.stdout
    assert any(r.kind == "updates" for r in fake.requests)  # the long-poll ran
    for token in TOK.values():
        assert token not in proc.stdout + proc.stderr


def test_reconcile_queues_what_a_crash_left_out(fake, tmp_path):
    cfg = config_of(cloud_raw(fake))
    store = AlertStore(tmp_path)  # records written, sinks never called: a crash right after
    a = store.save(make_alert(0), IMAGE, DETS)
    b = store.save(make_alert(1, roi="ROI1"), IMAGE, DETS)
    c = store.save(make_alert(2), IMAGE, DETS)
    box = Outbox(tmp_path / "outbox")  # b's telemetry made it into the outbox, its image did not
    box.put(f"alert:{b.alert_id}", "tb:alert", "alert", {"ts": 1, "values": {"alert_id": b.alert_id}})
    box.put(f"alert:{c.alert_id}", "tb:alert", "alert", {"ts": 1, "values": {"alert_id": c.alert_id}})
    box.put(f"alert-image:{c.alert_id}", "up:alert", "alert_image", {"filename": "x", "fields": {}}, data=b"x")
    box.close()
    fake.refuse()
    cloud = Cloud(cfg, tmp_path)
    assert cloud.reconcile() == 2 and cloud.reconcile() == 0
    keys = {m.key for m in cloud.outbox.pending()}
    assert keys == {
        f"alert:{a.alert_id}",
        f"alert-image:{a.alert_id}",
        f"alert:{b.alert_id}",
        f"alert-image:{b.alert_id}",
        f"roi:{b.alert_id}",
        f"alert:{c.alert_id}",
        f"alert-image:{c.alert_id}",
    }
    cloud.stop(drain_s=0)
