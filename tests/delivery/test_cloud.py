"""The cloud link end to end against a real HTTP server (tests/fake_thingsboard.py) and a real
mosquitto: outage and recovery, kill -9, disk bound, MQTT, restarts and reconcile.
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
from mqtt_broker import mosquitto  # noqa: F401 - fixture

from trakr.delivery.cloud import Cloud
from trakr.delivery.outbox import Outbox
from trakr.evidence import AlertStore

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent.parent / "src")


def test_outage_refused_then_503_then_recovery_delivers_all_in_order_once(
    fake, tmp_path, caplog, cloud_raw, config_of, make_alert, tok, evidence
):
    caplog.set_level(logging.DEBUG)
    cloud = Cloud(config_of(cloud_raw()), tmp_path)
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    fake.refuse()
    cloud.start()
    produced = []
    for i in range(8):  # connection refused
        produced.append(store.save(make_alert(i, roi="ROI1" if i % 2 else None), *evidence).alert_id)
    time.sleep(0.4)
    assert cloud.sender.failures >= 1 and not fake.requests
    fake.mode = "error"  # listening again, answering 503
    fake.accept()
    for i in range(8, 16):
        produced.append(store.save(make_alert(i), *evidence).alert_id)
    assert fake.wait_for(lambda: len(fake.received(ok_only=False)) >= 3, 5)
    assert all(r.status == 503 for r in fake.received(ok_only=False))
    fake.mode = "ok"
    assert fake.wait_for(
        lambda: len(fake.telemetry_values(tok["alert"])) >= 16 and len(fake.received("upload")) >= 16, 15
    ), cloud.stats()
    time.sleep(0.3)  # nothing more should arrive
    cloud.stop()
    values = fake.telemetry_values(tok["alert"])
    assert [v["alert_id"] for v in values] == produced  # in order
    keys = [v["msg_id"] for v in values]
    assert len(keys) == len(set(keys)) == 16  # once per idempotency key
    tele = fake.received("telemetry", tok["alert"])
    assert all(r.headers["Idempotency-Key"] == r.body["values"]["msg_id"] for r in tele)
    assert all(abs(r.body["ts"] - round(r.at * 1000)) < 60_000 and isinstance(r.body["ts"], int) for r in tele)
    ups = fake.received("upload")
    assert [u.fields["alert_id"] for u in ups] == produced
    assert {u.fields["idempotency_key"] for u in ups} == {f"alert-image:{a}" for a in produced}
    assert all(u.files["image"][1][:2] == b"\xff\xd8" for u in ups)
    assert ups[0].fields["violation"] == "person" and ups[0].fields["camera_id"] == "1"
    assert [v["roi"] for v in fake.telemetry_values(tok["roi"])] == ["ROI1"] * 4
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "503" in text or "Connect" in text  # the outage was logged...
    for token in tok.values():  # ...without a single device token
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


def test_kill_9_with_backlog_then_restart_delivers_everything_once(fake, tmp_path, cloud_raw, tok):
    cfg_path = tmp_path / "sysconfig.json"
    cfg_path.write_text(json.dumps(cloud_raw()))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    src = SRC
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
    delivered = [v["alert_id"] for v in fake.telemetry_values(tok["alert"])]
    assert sorted(delivered) == written, drain.stdout  # nothing lost, nothing duplicated
    uploaded = [u.fields["alert_id"] for u in fake.received("upload")]
    assert sorted(uploaded) == written, drain.stdout
    assert list((out / "outbox" / "files").iterdir()) == []


def test_disk_bound_drops_training_before_alerts_and_reports_it(
    fake, tmp_path, cloud_raw, config_of, make_alert, tok, evidence
):
    raw = cloud_raw(outbox={"max_disk_mb": 0.03}, cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
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
    alerts = [store.save(make_alert(i), *evidence).alert_id for i in range(5)]
    st = cloud.outbox.stats()
    assert st["dropped.training"] >= 2 and "dropped.alert" not in st and "dropped.alert_image" not in st
    assert st["bytes"] <= 30_000
    fake.accept()
    assert fake.wait_for(lambda: [v["alert_id"] for v in fake.telemetry_values(tok["alert"])] == alerts, 10)
    assert fake.wait_for(
        lambda: any(v.get("outbox_dropped_training", 0) >= 2 for v in fake.telemetry_values(tok["health"])), 5
    )
    cloud.stop()


def test_mqtt_telemetry_through_real_mosquitto(fake, tmp_path, mosquitto, cloud_raw, config_of, make_alert, evidence):  # noqa: F811
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
    raw = cloud_raw(cloud={"mqtt_url": mosquitto.url, "http_timeout_s": 2})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    ids = [store.save(make_alert(i), None, evidence[1]).alert_id for i in range(3)]
    assert fake.wait_for(lambda: len([m for m in got if "alert_id" in m["values"]]) >= 3, 10)
    assert [m["values"]["alert_id"] for m in got if "alert_id" in m["values"]] == ids
    assert all(isinstance(m["ts"], int) for m in got)
    assert not fake.received("telemetry")  # telemetry went over MQTT, not HTTP
    # broker down: alerts wait in the outbox, then arrive
    sub.loop_stop()
    mosquitto.stop()
    more = [store.save(make_alert(i), None, evidence[1]).alert_id for i in range(3, 5)]
    time.sleep(0.5)
    assert cloud.outbox.stats()["backlog_by_category"].get("alert") == 2
    mosquitto.start()
    subscribed.clear()
    sub = subscriber()
    assert subscribed.wait(5)
    assert fake.wait_for(lambda: [m["values"]["alert_id"] for m in got if "alert_id" in m["values"]][3:] == more, 15)
    sub.loop_stop()
    cloud.stop()


def test_outbox_is_reused_across_restarts(tmp_path, fake, cloud_raw, config_of, make_alert):
    cfg = config_of(cloud_raw())
    fake.refuse()
    cloud = Cloud(cfg, tmp_path)
    cloud.enqueue_alert(make_alert(0), tmp_path)
    cloud.stop(drain_s=0)  # never started: nothing to wait for
    assert Outbox(tmp_path / "outbox").stats()["backlog"] == 1


def test_reconcile_queues_what_a_crash_left_out(fake, tmp_path, cloud_raw, config_of, make_alert, evidence):
    cfg = config_of(cloud_raw())
    store = AlertStore(tmp_path)  # records written, sinks never called: a crash right after
    a = store.save(make_alert(0), *evidence)
    b = store.save(make_alert(1, roi="ROI1"), *evidence)
    c = store.save(make_alert(2), *evidence)
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


def test_reconcile_on_a_site_without_image_store_queues_nothing_twice(
    fake, tmp_path, cloud_raw, config_of, make_alert, evidence, tok
):
    """Issue 'Months unattended' item 8: reconcile looked for image uploads the site never makes,
    so every stored alert was queued again at each start."""
    raw = cloud_raw()
    raw["common"].update(alert_storage_ip="", roi_ip="")
    cfg = config_of(raw)
    cloud = Cloud(cfg, tmp_path)
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    for i in range(5):
        store.save(make_alert(i, roi="ROI1"), *evidence)
    cloud.start()
    assert fake.wait_for(lambda: len(fake.telemetry_values(tok["alert"])) == 5, 10)
    cloud.stop()
    again = Cloud(cfg, tmp_path)  # the next start
    try:
        assert again.reconcile() == 0
        assert again.outbox.stats()["backlog"] == 0 and again.alerts_queued == 0
    finally:
        again.stop(drain_s=0)
    assert not fake.received("upload") and not fake.received("telemetry", tok["roi"])


def test_an_alert_queued_behind_600_low_priority_messages_is_sent_next(
    fake, tmp_path, cloud_raw, config_of, make_alert, tok
):
    """Issue 'Months unattended' item 4: a sender thread kept a channel until it was empty, so an
    alert queued after 300 training uploads and 300 health reports waited behind all 600."""
    raw = cloud_raw()
    raw["common"]["train_url"] = ""  # training: uploads only
    cloud = Cloud(config_of(raw), tmp_path)
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 80, np.uint8))[1].tobytes()
    for i in range(300):
        image = tmp_path / "training" / f"t{i:03d}.jpg"
        image.parent.mkdir(exist_ok=True)
        image.write_bytes(jpeg)
        cloud.enqueue_training("training", image, {"camera_id": 1, "captured_at": time.time(), "labels": ""})
        cloud.health.queue({"event": "status", "i": i})
    assert cloud.outbox.stats()["backlog_by_category"] == {"training": 300, "health": 300}
    cloud.start()
    try:
        assert fake.wait_for(lambda: len(fake.received()) >= 20, 10, 0.005)  # both senders busy
        queued_at = len(fake.received(ok_only=False))
        alert = make_alert(0)
        cloud.enqueue_alert(alert, tmp_path)
        assert fake.wait_for(lambda: fake.telemetry_values(tok["alert"]), 10, 0.005)
        arrivals = fake.received(ok_only=False)
        at = next(i for i, r in enumerate(arrivals) if r.token == tok["alert"])
        behind = at - queued_at  # messages that reached the cloud after the alert was queued
        assert behind <= 2 * cloud.sender.workers, f"the alert waited behind {behind} messages"
        assert fake.wait_for(lambda: cloud.outbox.stats()["backlog"] == 0, 30)  # the rest follows
    finally:
        cloud.stop()
    assert len(fake.received("upload")) == 300
    print(f"\nalert sent after {behind} of the 600 low-priority messages queued before it")
