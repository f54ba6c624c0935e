"""Camera readers: one thread per camera, writing into that camera's latest-frame slot.

A reader opens its ``Address`` (rtsp://, http(s):// MJPEG, a file path or a USB index) with
OpenCV's FFmpeg backend and hard open/read timeouts, grabs every frame (so a live stream never
backs up) and decodes/publishes one every ``CamDelay`` seconds. A failed capture is released and
reopened with paced, jittered exponential backoff; it never recovers by itself otherwise. After
``CamNotReachableLimit`` consecutive failed attempts the camera is reported ``down``; it is
reported ``up`` again on its first frame. A capture that delivers no frame for ``CamAliveLimit``
seconds is torn down and reopened. Health changes are logged once and sent to health sinks.

Example:
    >>> from trakr.config import CameraConfig, CaptureOptions
    >>> from trakr.capture.slot import LatestFrameSlot
    >>> cam = CameraConfig(CameraId=9, Address="/nonexistent.mp4")
    >>> r = CameraReader(cam, LatestFrameSlot(9), CaptureOptions(backoff_min_s=0.01), not_reachable_limit=1)
    >>> r.start(); import time; time.sleep(0.5); r.stop(); r.stats.state
    'down'
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from trakr.capture.slot import LatestFrameSlot
from trakr.config import CameraConfig, CaptureOptions
from trakr.logs import redact
from trakr.types import CameraHealth, Frame, HealthSink

log = logging.getLogger(__name__)

# TCP for RTSP (no UDP loss / firewall issues) and a short probe: opens in ~0.2 s instead of ~1 s.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;100000")
# A dead camera is reported once by trakr's own log, not every retry by OpenCV/FFmpeg on stderr.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass
class ReaderStats:
    """Counters of one reader (read by metrics and the status table)."""

    state: str = "starting"
    frames_read: int = 0
    frames_published: int = 0
    reconnects: int = 0
    failures: int = 0
    last_frame_at: float | None = None
    fps: float = 0.0
    """Exponentially smoothed capture rate (frames grabbed per second)."""


def source_kind(address: str) -> str:
    """``"usb"``, ``"file"`` or ``"stream"`` for an ``Address``."""
    a = address.strip()
    if a.isdigit():
        return "usb"
    if "://" in a and not a.startswith("file://"):
        return "stream"
    return "file"


class CameraReader:
    """Reads one camera in its own daemon thread until :meth:`stop`."""

    def __init__(
        self,
        cam: CameraConfig,
        slot: LatestFrameSlot,
        options: CaptureOptions,
        sample_period_s: float = 0.0,
        not_reachable_limit: int = 5,
        alive_limit_s: float = 30.0,
        on_health: HealthSink | None = None,
    ):
        self.cam = cam
        self.slot = slot
        self.options = options
        self.sample_period_s = sample_period_s
        self.not_reachable_limit = not_reachable_limit
        self.alive_limit_s = alive_limit_s
        self.on_health = on_health
        self.kind = source_kind(cam.address)
        self.stats = ReaderStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{cam.camera_id}", daemon=True)
        self._seq = 0
        self._cap: cv2.VideoCapture | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish without waiting (stop many readers at once, then join)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to finish and wait (at most about one read timeout)."""
        self._stop.set()
        self._thread.join(timeout if timeout is not None else self.options.read_timeout_s + 2)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- health --------------------------------------------------------------------------------
    def _set_state(self, state: str, reason: str) -> None:
        if self.stats.state == state:
            return
        self.stats.state = state
        where = redact(self.cam.address)
        if state == "up":
            log.info("camera %s up (%s)", self.cam.label, where)
        else:
            log.warning("camera %s down: %s (%s)", self.cam.label, reason, where)
        if self.on_health:
            try:
                self.on_health(CameraHealth(self.cam.camera_id, state, reason, time.time()))
            except Exception:  # a health sink must never kill a reader
                log.exception("health sink failed")

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        if self.stats.failures >= self.not_reachable_limit:
            self._set_state("down", reason)
        delay = min(self.options.backoff_min_s * 2 ** (self.stats.failures - 1), self.options.backoff_max_s)
        log.debug("camera %s: %s; retry in %.1fs", self.cam.label, reason, delay)
        self._stop.wait(delay * random.uniform(0.8, 1.2))

    # -- reading -------------------------------------------------------------------------------
    def _open(self) -> cv2.VideoCapture | None:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.options.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.options.read_timeout_s * 1000),
        ]
        address = self.cam.address.strip()
        if self.kind == "usb":
            cap = cv2.VideoCapture(int(address), cv2.CAP_ANY, params)
        else:
            if self.kind == "file":
                address = address.removeprefix("file://")
                if not Path(address).is_file():
                    return None
            cap = cv2.VideoCapture(address, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _run(self) -> None:
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self._failed("cannot open")
                continue
            self._cap = cap
            got_frame = self._read_loop(cap)
            cap.release()
            self._cap = None
            if self._stop.is_set():
                break
            if got_frame == "eof":
                continue  # looped file: reopen at once, not a failure
            self.stats.reconnects += 1
            self._failed("stream ended" if got_frame else "no frames")

    def _read_loop(self, cap: cv2.VideoCapture) -> bool | str:
        """Read until failure or stop. Returns ``"eof"`` for a looped file's end, else whether any
        frame was read."""
        fps = cap.get(cv2.CAP_PROP_FPS) if self.kind == "file" else 0.0
        frame_period = 1.0 / fps if self.kind == "file" and self.options.realtime_files and 0 < fps < 500 else 0.0
        next_due = time.monotonic()
        last_pub = 0.0
        got = False
        last_ok = time.monotonic()
        while not self._stop.is_set():
            if frame_period:
                wait = next_due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                next_due = max(next_due + frame_period, time.monotonic() - frame_period)
            if not cap.grab():
                if self.kind == "file" and got and self.options.loop_files:
                    return "eof"
                if self.kind == "file" and got:
                    log.info("camera %s: end of file", self.cam.label)
                    self._stop.wait(self.options.backoff_max_s)
                return got
            now_m = time.monotonic()
            if now_m - last_ok > self.alive_limit_s:
                return got  # frames stalled for CamAliveLimit: reconnect
            dt, last_ok = now_m - last_ok, now_m
            st = self.stats
            st.frames_read += 1
            if dt > 0:
                st.fps = 0.9 * st.fps + 0.1 * (1.0 / dt) if st.fps else 1.0 / dt
            if now_m - last_pub < self.sample_period_s:
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                continue
            last_pub = now_m
            if not got:
                got = True
                st.failures = 0
                self._set_state("up", "frames arriving")
            now = time.time()
            st.last_frame_at = now
            st.frames_published += 1
            self._seq += 1
            self.slot.put(Frame(self.cam.camera_id, image, now, self._seq))
        return got
