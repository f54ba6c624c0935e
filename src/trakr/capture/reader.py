"""Camera readers: one supervised thread per camera, gating and publishing into its slot.

A reader opens its ``Address`` (:func:`~trakr.capture.sources.open_source`: PyAV for rtsp://,
http(s):// and files, OpenCV for USB indexes) with hard open/read timeouts, decodes every frame,
offers one every ``CamDelay`` seconds to the change gate on its luma plane, and converts to BGR
and publishes into the camera's latest-frame slot only the frames the gate passes.

Failures: a failed open or read is closed and retried with paced, jittered exponential backoff
(:func:`trakr.supervisor.backoff_delay`, which never overflows). After ``CamNotReachableLimit``
consecutive failed attempts the camera is reported ``down`` with the reason (``refused``,
``timeout``, ``unauthorised``, ``not found``, ``not a video``...); it is reported ``up`` again on
its first frame. A capture that decodes no frame for ``CamAliveLimit`` seconds is reopened. Each
state change is logged once (address redacted) and sent to the health sink. Anything unexpected
that a loop raises is logged with its traceback, counted, reported as ``down: error`` and the
loop restarted with backoff (:func:`trakr.supervisor.supervise`). :meth:`CameraReader.stop`
returns within a few seconds whatever the camera does; an open still in progress then ends by
its own timeout in the background.

Example:
    >>> from trakr.config import CameraConfig, CaptureOptions
    >>> from trakr.capture.slot import LatestFrameSlot
    >>> cam = CameraConfig(CameraId=9, Address="/nonexistent.mp4")
    >>> r = CameraReader(cam, LatestFrameSlot(9), CaptureOptions(backoff_min_s=0.01), not_reachable_limit=1)
    >>> r.start(); import time; time.sleep(0.5); r.stop()
    True
    >>> r.stats.state, r.stats.reason
    ('down', 'not found')
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Generator
from typing import Any

from trakr.capture.gate import SKIPPED, ChangeGate
from trakr.capture.reasons import END_OF_FILE, ENDED, ERROR, NO_FRAMES, CaptureFailure
from trakr.capture.slot import LatestFrameSlot
from trakr.capture.sources import Decoded, Source, open_source, source_kind
from trakr.capture.stats import ReaderStats
from trakr.config import CameraConfig, CaptureOptions
from trakr.logs import redact
from trakr.supervisor import backoff_delay, supervise
from trakr.types import CameraHealth, Frame, HealthSink

log = logging.getLogger(__name__)

__all__ = ["CameraReader", "ReaderStats", "source_kind"]

STOP_WAIT_S = 3.0
"""How long :meth:`CameraReader.stop` waits for the thread by default."""
MAX_TIMEOUT_S = 600.0
MAX_BACKOFF_S = 3600.0


def bounded(value: float, low: float, high: float, default: float) -> float:
    """``value`` clamped to ``[low, high]``; ``default`` for NaN or a non-number.

    >>> bounded(1e999, 0.1, 600, 5), bounded(float("nan"), 0.1, 600, 5), bounded(-3, 0.1, 600, 5)
    (600, 5, 0.1)
    """
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    if math.isnan(v):
        return default
    return min(max(v, low), high)


class CameraReader:
    """Reads one camera in its own supervised daemon thread until :meth:`stop`."""

    def __init__(
        self,
        cam: CameraConfig,
        slot: LatestFrameSlot,
        options: CaptureOptions,
        sample_period_s: float = 0.0,
        not_reachable_limit: int = 5,
        alive_limit_s: float = 30.0,
        on_health: HealthSink | None = None,
        gate: ChangeGate | None = None,
    ):
        self.cam = cam
        self.slot = slot
        self.options = options
        self.sample_period_s = sample_period_s
        self.not_reachable_limit = not_reachable_limit
        self.alive_limit_s = alive_limit_s
        self.on_health = on_health
        self.gate = gate if gate is not None else ChangeGate(enabled=False)
        self.kind = source_kind(cam.address)
        self.stats = ReaderStats()
        # Whatever the loader let through (1e7, inf, NaN), a reader works with sane numbers.
        self.open_timeout_s = bounded(options.open_timeout_s, 0.1, MAX_TIMEOUT_S, 5.0)
        self.read_timeout_s = bounded(options.read_timeout_s, 0.1, MAX_TIMEOUT_S, 5.0)
        self.backoff_min_s = bounded(options.backoff_min_s, 0.001, MAX_BACKOFF_S, 0.5)
        self.backoff_max_s = bounded(options.backoff_max_s, self.backoff_min_s, MAX_BACKOFF_S, 15.0)
        self._alive_s = bounded(alive_limit_s, 0.5, 1e9, 30.0)
        self._period_s = bounded(sample_period_s, 0.0, 1e9, 0.0)
        self._stop = threading.Event()
        self._thread = supervise(
            self._run,
            f"camera-{cam.camera_id}",
            self._stop,
            min_backoff_s=self.backoff_min_s,
            max_backoff_s=max(self.backoff_max_s, 1.0),
            start=False,
        )
        self._seq = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish without waiting (stop many readers at once, then join)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to finish and wait at most ``timeout`` s (default :data:`STOP_WAIT_S`).

        Returns whether it finished. One blocked in an open or read ends by that timeout in the
        background (a daemon thread holding no lock), so a hung camera never holds up shutdown.
        """
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(bounded(STOP_WAIT_S if timeout is None else timeout, 0.0, MAX_TIMEOUT_S, STOP_WAIT_S))
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def force_until(self, until: float, min_rate: float | None = None) -> None:
        """Have the gate pass this camera at least ``min_rate`` frames/s until wall time ``until``."""
        self.gate.force_until(self.cam.camera_id, until, min_rate)

    def snapshot_fields(self) -> dict[str, Any]:
        """Counters named like :class:`~trakr.types.CameraSnapshot`'s fields (without id, name,
        frames analysed): state, reason, capture fps, frames, drops, failures, gate decisions."""
        d = self.stats.snapshot()
        g = self.gate.stats_for(self.cam.camera_id)
        d.update(frames_dropped=self.slot.dropped, gate_seen=g.seen, gate_passed=g.passed, gate_reasons=dict(g.reasons))
        return d

    # -- health --------------------------------------------------------------------------------
    def _set_state(self, state: str, reason: str) -> None:
        if not self.stats.set_state(state, reason):
            return
        where = redact(self.cam.address)
        if state == "up":
            log.info("camera %s up (%s)", self.cam.label, where)
        else:
            log.warning("camera %s %s: %s (%s)", self.cam.label, state, reason, where)
        if self.on_health:
            try:
                self.on_health(CameraHealth(self.cam.camera_id, state, reason, time.time()))
            except Exception:  # a health sink must never kill a reader
                log.exception("health sink failed")

    def _failed(self, f: CaptureFailure, reconnect: bool = False) -> None:
        failures = self.stats.count_failure(f.detail or f.reason, reconnect)
        if failures >= self.not_reachable_limit:
            self._set_state("down", f.reason)
        delay = backoff_delay(failures, self.backoff_min_s, self.backoff_max_s)
        log.debug("camera %s: %s; retry in %.1fs", self.cam.label, redact(f), delay)
        self._stop.wait(delay * random.uniform(0.8, 1.2))

    # -- reading -------------------------------------------------------------------------------
    def _run(self) -> None:
        """The supervised target: anything unexpected is reported here, then re-raised to the
        supervisor, which logs the traceback, counts it and calls this again after a backoff."""
        try:
            self._loop()
        except Exception as e:
            detail = redact(f"{type(e).__name__}: {e}".splitlines()[0])[:300]
            self.stats.count_crash(detail)
            self._set_state("down", ERROR)
            raise

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                src = open_source(self.cam.address, self.open_timeout_s, self.read_timeout_s, self._alive_s)
            except CaptureFailure as f:
                self._failed(f)
                continue
            outcome: str | CaptureFailure
            try:
                outcome = self._read(src)
            except CaptureFailure as f:
                outcome = f
            finally:
                src.close()
            if self._stop.is_set():
                break
            if outcome == "eof":
                continue  # looped file: reopen at once, not a failure
            if outcome == END_OF_FILE:
                self._set_state("down", END_OF_FILE)
                self._stop.wait()  # a finished file stays finished (the thread stays alive)
                break
            self._failed(outcome if isinstance(outcome, CaptureFailure) else CaptureFailure(outcome), reconnect=True)

    def _read(self, src: Source) -> str:
        """Read until the source ends, fails (raises) or stop. Returns ``"eof"`` (loop a file),
        ``"end of file"``, ``"stream ended"`` or ``"no frames"``."""
        frames = src.frames()
        try:
            got = self._pump(src, frames)
        finally:
            frames.close()
        if self._stop.is_set():
            return ENDED
        if self.kind == "file" and got:
            if self.options.loop_files:
                return "eof"
            log.info("camera %s: end of file", self.cam.label)
            return END_OF_FILE
        return ENDED if got else NO_FRAMES

    def _pump(self, src: Source, frames: Generator[Decoded, None, None]) -> bool:
        """Gate and publish ``frames`` until they end or stop; whether any frame came."""
        cid = self.cam.camera_id
        st, gate, slot = self.stats, self.gate, self.slot
        realtime = self.kind == "file" and self.options.realtime_files and 0 < src.native_fps < 500
        frame_period = 1.0 / src.native_fps if realtime else 0.0
        next_due = time.monotonic()
        last_offer = -math.inf
        got = False
        for luma, stream_time, handle in frames:
            if self._stop.is_set():
                break
            if frame_period:  # a file at its native rate, like a live camera
                wait = next_due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                next_due = max(next_due + frame_period, time.monotonic() - frame_period)
            now_m = time.monotonic()
            if not got:
                got = True
                st.frames_arriving()
                self._set_state("up", "frames arriving")
                gate.forget(cid)  # a fresh connection starts from a fresh reference
            st.count_frame(now_m, stream_time)
            if now_m - last_offer < self._period_s:
                continue  # CamDelay: one frame per period is offered to the gate
            last_offer = now_m
            now = time.time()
            if gate.decide(cid, luma, now, src.limited_range) == SKIPPED:
                continue
            self._seq += 1
            slot.put(Frame(cid, src.bgr(handle), now, self._seq))  # colour only for passed frames
            st.count_published()
        return got
