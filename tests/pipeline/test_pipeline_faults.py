"""The pipeline survives its own threads crashing and a disk that refuses writes, losing no alert.

Real parts: the sample clip as a file camera, the real YOLO11n model. Faults are injected from
the inside (a stage method that raises once; the alerts folder replaced by a plain file so every
write under it fails with a real OSError) and the test watches the pipeline's snapshot.
"""

from __future__ import annotations

import logging
import threading

from helpers import wait_until

from trakr.config import parse_config
from trakr.evidence import read_alerts
from trakr.pipeline import Pipeline
from trakr.supervisor import restarts


def _config(sample_clip, pause: float = 0.5):
    raw = {
        "common": {"batch_size": 1},
        "trakr": {"capture": {"loop_files": True}, "gate": {"enabled": False}, "detector": {"imgsz": 320}},
        "cameras": [
            {
                "CameraId": 1,
                "CamName": "walkway",
                "Address": str(sample_clip),
                "Detection": "person",
                "CamDelay": 0.2,
                "alert_time_pause": pause,
            }
        ],
    }
    rep = parse_config(raw)
    assert rep.ok, rep.problems
    return rep.config


def _raise_once(obj, name: str, fired: threading.Event):
    original = getattr(obj, name)

    def wrapper(*a, **kw):
        if not fired.is_set():
            fired.set()
            raise RuntimeError(f"injected crash in {name}")
        return original(*a, **kw)

    setattr(obj, name, wrapper)


def test_crashed_inference_and_output_threads_are_restarted_and_counted(sample_clip, tmp_path, caplog):
    p = Pipeline(_config(sample_clip), output_dir=tmp_path)
    before = restarts()
    p.start()
    try:
        assert wait_until(lambda: p.snapshot().frames_analysed >= 3, 60)
        inf_crash, out_crash = threading.Event(), threading.Event()
        _raise_once(p.batcher, "next_batch", inf_crash)
        _raise_once(p._out, "get", out_crash)
        assert wait_until(lambda: inf_crash.is_set() and out_crash.is_set(), 20)
        analysed = p.snapshot().frames_analysed
        alerts = p.snapshot().alerts
        assert wait_until(lambda: p.snapshot().frames_analysed >= analysed + 5, 60), "inference did not come back"
        assert wait_until(lambda: p.snapshot().alerts > alerts, 60), "output did not come back"
        snap = p.snapshot()
        assert snap.thread_restarts.get("inference", 0) == before.get("inference", 0) + 1
        assert snap.thread_restarts.get("output", 0) == before.get("output", 0) + 1
        assert snap.threads_alive
        assert "injected crash in next_batch" in caplog.text and "thread inference-0 crashed" in caplog.text
    finally:
        p.stop()
    assert not p.snapshot().threads_alive


def test_alerts_wait_in_memory_while_the_disk_refuses_then_all_are_stored(sample_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO, "trakr")
    p = Pipeline(_config(sample_clip, pause=0.3), output_dir=tmp_path)
    p.start()
    try:
        assert wait_until(lambda: p.snapshot().alerts >= 1, 60)
        (tmp_path / "alerts").rename(tmp_path / "alerts-before")
        (tmp_path / "alerts").write_text("not a directory")  # every alert write now fails with OSError
        assert wait_until(lambda: p.snapshot().alerts_pending_disk >= 3, 60)
        errors = [r for r in caplog.records if "cannot write alert" in r.getMessage()]
        assert 1 <= len(errors) <= 2, "one line when the disk starts failing, not one per alert"
        (tmp_path / "alerts").unlink()  # the disk is writable again
        assert wait_until(lambda: p.snapshot().alerts_pending_disk == 0, 30)
    finally:
        p.stop()
    snap = p.snapshot()
    stored = read_alerts(tmp_path)
    before = list((tmp_path / "alerts-before").glob("*/*.json"))
    assert snap.alerts == len(stored) + len(before) and snap.alerts_pending_disk == 0
    assert len(stored) >= 3
    assert all((tmp_path / a.evidence_image).exists() for a in stored if a.evidence_image)
    assert "every pending alert stored" in caplog.text
