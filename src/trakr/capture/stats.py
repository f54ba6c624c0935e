"""Counters of one camera reader, shared between its thread and observers under one lock.

The capture rate is measured over a window of recent frames (:data:`FPS_WINDOW_S`), never from
one interval: a burst of buffered frames right after connecting does not read as 100+ fps (for
streams that carry timestamps, the rate on their clock bounds it), a stalled camera's
rate falls as its frames age out of the window, and a camera that is not ``up`` reports 0.

Example:
    >>> st = ReaderStats()
    >>> st.set_state("up", "frames arriving")
    True
    >>> for i in range(10):  # ten buffered frames arrive within 9 ms, stamped 0.1 s apart
    ...     st.count_frame(now=100.0 + i * 0.001, stream_time=i * 0.1 if i else None)
    >>> round(st.fps_at(100.009), 1)
    10.0
    >>> st.set_state("down", "timeout"), st.fps_at(100.01)
    (True, 0.0)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

FPS_WINDOW_S = 5.0
"""Frames older than this do not count towards the capture rate."""
FPS_WINDOW_FRAMES = 512
MAX_STREAM_LEAD_S = 2.0
"""Stream time may exceed wall time over the window by this much (a buffered burst); more is a
timestamp jump, and wall time alone is used."""


@dataclass
class ReaderStats:
    """State and counters of one reader; every change goes through a method, under ``lock``."""

    state: str = "starting"
    """``"starting"``, ``"up"`` or ``"down"``."""
    reason: str = "starting"
    """Why it is in that state: ``"refused"``, ``"timeout"``, ``"frames arriving"``..."""
    frames_read: int = 0
    """Frames decoded."""
    frames_published: int = 0
    """Frames that passed the gate and were put into the latest-frame slot."""
    reconnects: int = 0
    failures: int = 0
    """Consecutive failed attempts (0 once frames arrive)."""
    crashes: int = 0
    """Unexpected exceptions in the reader (each logged with its traceback and restarted)."""
    last_frame_at: float | None = None
    """Wall-clock time of the last decoded frame."""
    last_error: str = ""
    """The last failure, in one redacted line."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _window: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW_FRAMES), repr=False, compare=False)

    def set_state(self, state: str, reason: str) -> bool:
        """Set state and reason; ``True`` if the state changed (the caller logs and reports it)."""
        with self.lock:
            changed = state != self.state
            self.state, self.reason = state, reason
            if changed:
                self._window.clear()
            return changed

    def count_frame(self, now: float | None = None, stream_time: float | None = None) -> None:
        """One decoded frame received at monotonic ``now`` (stream clock ``stream_time`` if known)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self.frames_read += 1
            self.last_frame_at = time.time()
            self._window.append((now, stream_time))

    def count_published(self) -> None:
        with self.lock:
            self.frames_published += 1

    def count_failure(self, detail: str, reconnect: bool = False) -> int:
        """One failed attempt; returns the consecutive failures so far."""
        with self.lock:
            self.failures += 1
            self.reconnects += reconnect
            self.last_error = detail
            return self.failures

    def count_crash(self, detail: str) -> None:
        with self.lock:
            self.crashes += 1
            self.last_error = detail

    def frames_arriving(self) -> None:
        """The first frame after an open: consecutive failures start over."""
        with self.lock:
            self.failures = 0

    @property
    def fps(self) -> float:
        """Capture rate (frames/s) over the recent window; 0 unless ``up``."""
        return self.fps_at(time.monotonic())

    def fps_at(self, now: float) -> float:
        with self.lock:
            w = self._window
            while w and now - w[0][0] > FPS_WINDOW_S:
                w.popleft()
            if self.state != "up" or len(w) < 2:
                return 0.0
            wall = w[-1][0] - w[0][0]
            # over the frames' own span while they keep coming; stretched by a stall, so it decays
            span = max(wall, now - w[0][0] - wall / (len(w) - 1))
            rate = (len(w) - 1) / span if span > 0 else 0.0
            # frames that carry stream time: their rate on the stream's clock bounds a burst
            first = next((i for i, (_, s) in enumerate(w) if s is not None), None)
            last = w[-1][1]
            if first is not None and last is not None and len(w) - first >= 2:
                s_span = last - w[first][1]
                if 0 < s_span <= now - w[first][0] + MAX_STREAM_LEAD_S:
                    rate = min(rate, (len(w) - first - 1) / s_span)
            return rate

    def snapshot(self) -> dict:
        """The counters as a dict of :class:`~trakr.types.CameraSnapshot` field names."""
        fps = self.fps
        with self.lock:
            return {
                "state": self.state,
                "reason": self.reason,
                "capture_fps": fps,
                "frames_read": self.frames_read,
                "frames_published": self.frames_published,
                "reconnects": self.reconnects,
                "failures": self.failures,
                "last_frame_at": self.last_frame_at,
                "last_error": self.last_error,
            }
