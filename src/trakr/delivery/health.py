"""Health telemetry: what the box reports about itself to ``common.test_url``.

Two kinds of report, both queued in the outbox (category ``health``):

* on change, at once: a camera going up or down (``camN_state camN_reason event=camera_up``),
  the inference backend going up or down (``inference_state event=inference_down``);
* every ``trakr.cloud.health_interval_s`` (default ``CamAliveLimit``) a status (``event=status``):
  camera states and capture fps, inference state, alerts, and the outbox: backlog (total and per
  category), bytes, oldest message, drops/rejects/expiries per category, and the channels whose
  destination refuses us (``outbox_blocked_channels``, channel -> HTTP status).

The pipeline is read only through ``snapshot()`` (:class:`trakr.types.PipelineSnapshot`). A
camera that is not up reports 0 fps, whatever it did before. The inference state is the
backend's own health when it knows it (the Redis backend knows its server), else it follows the
pipeline's counters: batches done -> up, only errors -> down.

Example:
    >>> next_inference_state("unknown", "unknown", batches=3, errors=0)
    'up'
    >>> next_inference_state("up", "unknown", batches=0, errors=2)
    'down'
    >>> next_inference_state("up", "down", batches=5, errors=0)  # the backend knows best
    'down'
    >>> camera_fps("down", 90.6)
    0.0
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from trakr.config import SysConfig
from trakr.delivery.messages import health_message
from trakr.delivery.outbox import Outbox
from trakr.delivery.sender import Sender
from trakr.types import CameraHealth, PipelineSnapshot

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Anything with a typed snapshot: :class:`trakr.pipeline.Pipeline`."""

    def snapshot(self) -> PipelineSnapshot: ...


def next_inference_state(previous: str, backend: str, batches: int, errors: int) -> str:
    """The inference state after ``batches`` successful and ``errors`` failed detector calls."""
    if backend in ("up", "down"):
        return backend
    if batches > 0:
        return "up"
    if errors > 0:
        return "down"
    return previous


def camera_fps(state: str, fps: float) -> float:
    """The capture rate to report: 0 unless the camera is up."""
    return round(float(fps), 2) if state == "up" else 0.0


class HealthReporter:
    """Builds and queues health telemetry; :meth:`run` is the periodic loop (a supervised thread)."""

    def __init__(
        self,
        get_config: Callable[[], SysConfig],
        outbox: Outbox,
        sender: Sender,
        source: SnapshotSource | None = None,
    ):
        self.get_config = get_config
        self.outbox = outbox
        self.sender = sender
        self.source = source
        self.inference_state = "unknown"
        self._last_batches = self._last_errors = 0
        self._lock = threading.Lock()

    def queue(self, values: dict, at: float | None = None) -> None:
        msg = health_message(values, self.get_config(), at)
        if msg is not None:
            self.outbox.put(msg.key, msg.channel, msg.category, msg.payload)

    def camera_changed(self, h: CameraHealth) -> None:
        """Pipeline health sink: a camera's state change, queued at once."""
        self.queue(
            {
                f"cam{h.camera_id}_state": h.state,
                f"cam{h.camera_id}_reason": h.reason,
                "event": f"camera_{h.state}",
                "camera_id": h.camera_id,
            },
            h.at,
        )

    def check_inference(self, snap: PipelineSnapshot) -> bool:
        """Update :attr:`inference_state` from a snapshot; ``True`` if it changed."""
        with self._lock:
            state = next_inference_state(
                self.inference_state,
                snap.detector_health,
                snap.batches - self._last_batches,
                snap.detector_errors - self._last_errors,
            )
            self._last_batches, self._last_errors = snap.batches, snap.detector_errors
            changed = state != self.inference_state
            self.inference_state = state
        return changed

    def status_values(self, snap: PipelineSnapshot | None = None) -> dict:
        """The periodic status report (``snap``: the pipeline now, if there is one)."""
        cfg = self.get_config()
        v: dict = {
            "event": "status",
            "config_version": cfg.common.config_version,
            "inference_state": self.inference_state,
        }
        st = self.outbox.stats()
        v.update(
            outbox_backlog=st["backlog"],
            outbox_bytes=st["bytes"],
            outbox_oldest_s=round(st["oldest_age_s"], 1),
            outbox_blocked_channels=self.sender.blocked(),
        )
        for category, n in sorted(st["backlog_by_category"].items()):
            v[f"outbox_backlog_{category}"] = n
        for name, n in st.items():
            if name.startswith(("dropped.", "rejected.", "expired.")):
                v["outbox_" + name.replace(".", "_")] = n
        if snap is not None:
            for cid, cam in sorted(snap.cameras.items()):
                v[f"cam{cid}_state"] = cam.state
                v[f"cam{cid}_fps"] = camera_fps(cam.state, cam.capture_fps)
                if cam.state != "up" and cam.reason:
                    v[f"cam{cid}_reason"] = cam.reason
            up = snap.cameras_up
            v.update(
                cameras_up=up,
                cameras_down=len(snap.cameras) - up,
                alerts_total=snap.alerts,
                alerts_pending_disk=snap.alerts_pending_disk,
                thread_restarts=sum(snap.thread_restarts.values()),
            )
        return v

    def _inference_event(self) -> None:
        self.queue({"inference_state": self.inference_state, "event": f"inference_{self.inference_state}"})

    def run(self, stop: threading.Event) -> None:
        """Check inference every second, report status every interval, until ``stop``."""
        next_at = time.monotonic() + 1.0
        while not stop.wait(1.0):
            snap = self.source.snapshot() if self.source is not None else None
            if snap is not None and self.check_inference(snap):
                self._inference_event()
            if time.monotonic() >= next_at:
                cfg = self.get_config()
                next_at = time.monotonic() + (cfg.trakr.cloud.health_interval_s or cfg.common.cam_alive_limit)
                self.queue(self.status_values(snap))
