"""Speaker announcements (HTTP and local TTS) and training capture, through the cloud link to
tests/fake_thingsboard.py.
"""

from __future__ import annotations

import time

import cv2

from trakr.delivery.cloud import Cloud
from trakr.evidence import AlertStore
from trakr.types import Frame


def test_speaker_http_driver_sends_audio_key_code_throttled(fake, tmp_path, cloud_raw, config_of, make_alert, evidence):
    raw = cloud_raw(
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
    store.save(make_alert(0, "nohelmet", speaker=spk), None, evidence[1])
    store.save(make_alert(1, "nohelmet", speaker=spk), None, evidence[1])  # throttled
    store.save(make_alert(2, "novest", speaker=spk), None, evidence[1])
    store.save(make_alert(3, "person", speaker=spk), None, evidence[1])  # no audio_key: skipped
    assert fake.wait_for(lambda: len(fake.received("speaker")) >= 2, 5)
    time.sleep(0.2)
    cloud.stop()
    calls = fake.received("speaker")
    assert [c.query["code"] for c in calls] == ["m:1", "m:2"] and calls[0].query["cam"] == "1"
    assert calls[0].path == "/speaker/play" and calls[0].method == "GET"
    assert cloud.speaker.throttled == 1 and cloud.speaker.skipped == 1


def test_speaker_tts_driver_writes_wav_and_runs_player(fake, tmp_path, cloud_raw, config_of, make_alert):
    played = tmp_path / "played.wav"
    raw = cloud_raw(speaker={"driver": "tts", "player_command": ["cp", "{wav}", str(played)]})
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


def test_training_capture_labels_uploads_and_frame_file(
    fake, tmp_path, cloud_raw, config_of, make_alert, tok, evidence
):
    image, dets = evidence
    from trakr.types import AnalysedFrame

    raw = cloud_raw()
    raw["common"].update(enableFrame=True, frameFile="latest.png")
    cfg = config_of(raw)
    cloud = Cloud(cfg, tmp_path)
    cloud.start()
    cam = cfg.cameras[0]
    t0 = time.time()

    def af(dt, alerts=()):
        return AnalysedFrame(Frame(1, image, t0 + dt, 1), cam, dets, [], list(alerts), [], t0 + dt)

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
    assert fake.wait_for(lambda: len(fake.received("upload")) == 3 and len(fake.telemetry_values(tok["train"])) == 3, 5)
    up = fake.received("upload")[0]
    assert up.path == "/upload/TrainImageData/" and up.fields["labels"] == label and up.fields["source"] == "periodic"
    assert sorted(u.files["image"][0] for u in fake.received("upload")) == [p.name for p in images]
    frame = cv2.imread(str(tmp_path / "latest.png"))
    assert frame is not None and frame.shape == image.shape
    cloud.stop()
