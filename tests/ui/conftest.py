"""Fixtures of the console tests: one real ``trakr run`` (4 RTSP cameras, the real model, a fake
ThingsBoard as its cloud) with its console on a free 127.0.0.1 port, shared by the API and browser
tests; and a headless Chromium from Debian's ``chromium`` package driven by Playwright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fake_thingsboard import FakeThingsBoard
from helpers import free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ALERT_TOKEN = "ALERTtok3nSECRET9"
ROI_TOKEN = "ROItok3nSECRET8"
CAM_PASSWORD = "CamPassw0rdSECRET"
WALKWAY = ["0.0,0.33", "0.75,0.25", "1.0,0.45", "1.0,0.85", "0.55,0.65", "0.0,0.45"]
OUTSIDE = ["1046,280", "796,191", "957,90", "1152,154"]  # the seed's sample camera 1: off a 768x576 frame


@dataclass
class LiveTrakr:
    """A running ``trakr run`` with its console."""

    url: str
    config_path: Path
    output: Path
    fake: FakeThingsBoard
    proc: subprocess.Popen
    log: Path
    alert_token: str = ALERT_TOKEN
    secrets: tuple[str, ...] = (CAM_PASSWORD, ALERT_TOKEN, ROI_TOKEN)
    """Strings in the config that no page or API answer may show."""

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def api(self, path: str, **kw):
        r = self.get(path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def site_config(rtsp_urls: list[str], fake: FakeThingsBoard, output: Path) -> dict:
    """A site's config in the legacy format, with keys trakr does not know (they must survive)."""
    cam1 = rtsp_urls[1].replace("rtsp://", f"rtsp://viewer:{CAM_PASSWORD}@")
    return {
        "site_notes": "keep this top-level key",
        "common": {
            "config_version": "7.3.1",
            "ClientName": "console-test",
            "batch_size": 4,
            "CamNotReachableLimit": 2,
            "CamDelay": 0.2,
            "LoggingLevel": "INFO",
            "alert_url": fake.url(ALERT_TOKEN),
            "roi_ip": fake.url(ROI_TOKEN),
            "alert_storage_ip": f"{fake.base}/upload/alerts",
        },
        "trakr": {
            "detector": {"imgsz": 320},
            "capture": {"open_timeout_s": 3, "read_timeout_s": 3, "backoff_min_s": 0.3, "backoff_max_s": 2},
            "output": {"directory": str(output)},
            "outbox": {"retry_min_s": 0.2, "retry_max_s": 1},
            "ui": {"preview_fps": 5},
        },
        "cameras": [
            {
                "CameraId": 0,
                "CamName": "yard-cam",
                "Address": rtsp_urls[0],
                "Detection": "NA",
                "alert_time_pause": 2,
                "vendor_note": "keep me",
                "roi_config": {
                    "roi_config": {
                        "walkway": {"points": WALKWAY, "detections": "person"},
                        "gate": {
                            "points": ["0.02,0.02", "0.1,0.02", "0.1,0.08"],
                            "detections": "car",
                            "colour": "red",
                        },
                    }
                },
            },
            {"CameraId": 1, "CamName": "door", "Address": cam1, "Detection": "person", "alert_time_pause": 5},
            {"CameraId": 2, "CamName": "road", "Address": rtsp_urls[2], "Detection": "person", "alert_time_pause": 5},
            {
                "CameraId": 3,
                "CamName": "dock",
                "Address": rtsp_urls[3],
                "Detection": "person",
                "alert_time_pause": 5,
                "points": OUTSIDE,
            },
        ],
    }


@pytest.fixture(scope="session")
def live_trakr(rtsp_server, tmp_path_factory) -> Iterator[LiveTrakr]:
    """``trakr run --config site.json --ui-port P`` on the 4 RTSP sample cameras, until the session ends."""
    root = tmp_path_factory.mktemp("console")
    output = root / "out"
    fake = FakeThingsBoard().start()
    config_path = root / "sysconfig.json"
    config_path.write_text(json.dumps(site_config(rtsp_server.urls(), fake, output), indent=2))
    port = free_port()
    log = root / "trakr.log"
    env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp|analyzeduration;100000"}
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trakr.cli", "run", "--config", str(config_path), "--ui-port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    live = LiveTrakr(f"http://127.0.0.1:{port}", config_path, output, fake, proc, log)

    def ready() -> bool:
        assert proc.poll() is None, f"trakr exited {proc.returncode}:\n{live.log_text()}"
        try:
            cams = httpx.get(live.url + "/api/cameras", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return len(cams) == 4 and all(c["state"] == "up" and c["frame_size"] for c in cams)

    try:
        assert wait_until(ready, 90, step=0.5), f"console not ready:\n{live.log_text()}"
        yield live
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        fake.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Debian's headless Chromium under Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium package (scripts/setup)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where page screenshots go: ``$TRAKR_SCREENSHOTS`` (e.g. docs/screenshots) or a temp folder."""
    target = os.environ.get("TRAKR_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
