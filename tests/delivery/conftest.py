"""Fixtures of the delivery tests: a fake ThingsBoard (a real HTTP server on 127.0.0.1), a site
config pointing every channel at it, alerts and evidence to send."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import supervision as sv
from fake_thingsboard import FakeThingsBoard

from trakr.config import SysConfig, parse_config
from trakr.types import Alert

TOKENS = {
    "alert": "ALERTtok3n1",
    "roi": "ROItok3n2",
    "train": "TRAINtok3n3",
    "health": "HEALTHtok3n4",
    "attr": "ATTRtok3n5",
}
DETS = sv.Detections(
    xyxy=np.array([[4.0, 6.0, 20.0, 40.0]]),
    confidence=np.array([0.9]),
    class_id=np.array([0]),
    data={"class_name": np.array(["person"])},
)
IMAGE = np.full((48, 64, 3), 80, np.uint8)


@pytest.fixture
def fake() -> Iterator[FakeThingsBoard]:
    with FakeThingsBoard() as server:
        yield server


@pytest.fixture
def tok() -> dict[str, str]:
    """Device token of each ThingsBoard device of the site (``alert``, ``roi``, ``train``, ...)."""
    return dict(TOKENS)


@pytest.fixture
def evidence() -> tuple[np.ndarray, sv.Detections]:
    """An image and its detections, for ``AlertStore.save``."""
    return IMAGE, DETS


@pytest.fixture
def cloud_raw(fake: FakeThingsBoard) -> Callable[..., dict]:
    """``cloud_raw(version="1", cameras=None, **trakr)``: a raw site config sending everything to
    the fake server, with short retry delays."""

    def make(version: str = "1", cameras: list | None = None, **trakr: dict) -> dict:
        trakr.setdefault("outbox", {}).update({"retry_min_s": 0.05, "retry_max_s": 0.3})
        trakr.setdefault("cloud", {}).setdefault("http_timeout_s", 3)
        return {
            "common": {
                "config_version": version,
                "alert_url": fake.url(TOKENS["alert"]),
                "roi_ip": fake.url(TOKENS["roi"]),
                "train_url": fake.url(TOKENS["train"]),
                "test_url": fake.url(TOKENS["health"]),
                "cloud_status_ip": fake.url(TOKENS["attr"], "attributes"),
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

    return make


def _config_of(raw: dict) -> SysConfig:
    rep = parse_config(raw)
    assert rep.ok and rep.config is not None, rep.problems
    return rep.config


@pytest.fixture
def config_of() -> Callable[[dict], SysConfig]:
    """``config_of(raw)``: the parsed config (the test fails on any problem)."""
    return _config_of


def _make_alert(i: int, violation: str = "person", roi: str | None = None, speaker: str | None = None) -> Alert:
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


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    """``make_alert(i, violation="person", roi=None, speaker=None)``: a fresh alert of camera 1."""
    return _make_alert
