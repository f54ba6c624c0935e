"""The values that flow through trakr, typed in one place.

A :class:`Frame` leaves capture; the detector turns it into ``sv.Detections``; rules turn those
into :class:`Violation` s; the alert policy turns violations into :class:`Alert` s; every analysed
frame reaches the result sinks as an :class:`AnalysedFrame`. Camera health changes travel as
:class:`CameraHealth`. Observers (status table, metrics, cloud health, bench) read one
:class:`PipelineSnapshot`, never another object's counters.

Example:
    >>> import numpy as np, time
    >>> f = Frame(camera_id=3, image=np.zeros((4, 6, 3), np.uint8), captured_at=time.time(), seq=1)
    >>> f.size
    (6, 4)
    >>> iso_utc(0.25)
    '1970-01-01T00:00:00.250Z'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from trakr.config import CameraConfig


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: the one time format trakr writes."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def local_stamp(t: float) -> str:
    """Epoch seconds as a sortable local-time file stamp, ``YYYYmmdd-HHMMSS-mmm``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{int(t * 1000) % 1000:03d}"


def local_day(t: float) -> str:
    """Epoch seconds as the local ``YYYY-mm-dd`` used for day folders."""
    return time.strftime("%Y-%m-%d", time.localtime(t))


@dataclass(slots=True)
class Frame:
    """A BGR image from one camera, stamped with its wall-clock capture time."""

    camera_id: int
    image: np.ndarray
    captured_at: float
    """Wall-clock time (``time.time()``) when the reader got the frame."""
    seq: int
    """Per-camera frame counter assigned by the reader."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.image.shape[1], self.image.shape[0]


@dataclass
class CameraHealth:
    """A camera's health changed."""

    camera_id: int
    state: str
    """``"up"`` or ``"down"``."""
    reason: str
    at: float


HealthSink = Callable[[CameraHealth], None]


@dataclass
class Violation:
    """Detections that broke one trigger in one zone of one camera."""

    camera_id: int
    roi: str | None
    """ROI name, or ``None`` for the camera-wide zone."""
    violation: str
    detections: sv.Detections


@dataclass
class Alert:
    """One alert: the record written as JSON and sent to every sink."""

    alert_id: str
    camera_id: int
    camera_name: str
    roi: str | None
    violation: str
    captured_at: float
    """Capture time of the frame (epoch seconds)."""
    created_at: float
    recommendation: str
    objects: list[dict]
    """``[{"class_name", "confidence", "xyxy"}]`` in frame pixels."""
    frame_size: tuple[int, int]
    speaker: str | None = None
    """Speaker address for this ROI/camera, if announcements are on."""
    evidence_image: str | None = None
    """Evidence JPEG path relative to the output directory."""
    record_path: str | None = None
    """JSON record path relative to the output directory."""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        d["captured_at_iso"] = iso_utc(self.captured_at)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Alert:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["frame_size"] = tuple(d["frame_size"])
        return cls(**d)


AlertSink = Callable[[Alert, Path], None]
"""Called with each stored alert and the output directory (e.g. the cloud outbox)."""


@dataclass
class AnalysedFrame:
    """A frame after detection and rules: what result sinks receive."""

    frame: Frame
    camera: CameraConfig
    detections: sv.Detections
    violations: list[Violation]
    """The violations alerted in this frame: ``violations[i]`` is the one of ``alerts[i]``."""
    alerts: list[Alert]
    polygons: list[tuple[str | None, np.ndarray]]
    done_at: float
    events: list = field(default_factory=list)
    """Event records (:class:`trakr.rules.events.EventRecord`) that ended with this frame."""


@dataclass
class BatchResult:
    """One detector call: what batch listeners (metrics, bench) receive."""

    frames: list[Frame]
    batch_size: int
    infer_s: float
    done_at: float


ResultSink = Callable[[AnalysedFrame], None]
BatchSink = Callable[[BatchResult], None]


@dataclass(frozen=True)
class CameraSnapshot:
    """One camera's state and counters at one moment (from :meth:`Pipeline.snapshot`)."""

    camera_id: int
    name: str
    state: str
    """``"starting"``, ``"up"`` or ``"down"``."""
    reason: str
    """Why it is in that state (``"refused"``, ``"timeout"``, ``"unauthorised"``...)."""
    capture_fps: float
    """Smoothed capture rate; 0 while the camera is not up."""
    frames_read: int
    frames_published: int
    frames_dropped: int
    """Frames replaced in the latest-frame slot before the batcher took them."""
    gate_seen: int
    gate_passed: int
    gate_reasons: dict[str, int]
    """Gate decisions by reason (``motion``, ``tracked``, ``keyframe``, ``skipped``...)."""
    frames_analysed: int
    reconnects: int
    failures: int
    last_frame_at: float | None
    last_error: str


@dataclass(frozen=True)
class PipelineSnapshot:
    """Everything an observer (status line, metrics, cloud health, bench, console) reads."""

    at: float
    cameras: dict[int, CameraSnapshot]
    batches: int
    frames_analysed: int
    detector_errors: int
    alerts: int
    output_skipped: int
    inflight: int
    batch_size: int
    detector: str
    """Backend name, e.g. ``"onnxruntime"``."""
    detector_health: str
    """``"up"``, ``"down"`` or ``"unknown"``."""
    detector_precision: str
    """e.g. ``"fp32"``, ``"bf16"``; ``""`` when the backend does not say."""
    alerts_pending_disk: int
    """Alerts kept in memory because the output directory refused them (full or read-only disk)."""
    alerts_suppressed: int
    """Violations the alert policy held back (pause, same objects)."""
    thread_restarts: dict[str, int]
    threads_alive: bool
    """Every long-lived thread of the pipeline is running (watchdog pings only while true)."""

    @property
    def cameras_up(self) -> int:
        return sum(c.state == "up" for c in self.cameras.values())
