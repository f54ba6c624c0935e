"""Alert policy and the local alert store.

:class:`AlertPolicy` decides which violations become alerts: ``enableAlert`` and the camera's
``alert_en``, at most one alert per (camera, ROI, violation) every ``alert_time_pause`` seconds of
capture time, and no repeat for objects that have not moved (a parked van does not alert every
pause; it alerts again only after ``stationary_realert_s``).

:class:`AlertStore` writes each alert as an annotated evidence JPEG (boxes, labels, ROI polygons)
and a JSON record into ``<output>/alerts/<YYYY-MM-DD>/``, each written to a temporary file and
renamed, image first, so a reader (or the cloud sender) never sees half a file. The JSON record is
the single source for everything sent later.

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.rules import Violation
    >>> pol = AlertPolicy(pause_s={1: 10.0})
    >>> v = Violation(1, None, "person", sv.Detections(xyxy=np.array([[0., 0, 10, 10]])))
    >>> [pol.allow(v, t) for t in (0.0, 5.0, 11.0)]
    [True, False, False]
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.rules import Violation


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
        d["captured_at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.captured_at)) + \
            f".{int(self.captured_at * 1000) % 1000:03d}Z"
        return d

    @classmethod
    def from_json(cls, d: dict) -> Alert:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["frame_size"] = tuple(d["frame_size"])
        return cls(**d)


def objects_of(detections: sv.Detections) -> list[dict]:
    names = detections.data.get("class_name", np.array([""] * len(detections)))
    conf = detections.confidence if detections.confidence is not None else np.ones(len(detections))
    return [{"class_name": str(n), "confidence": round(float(c), 3), "xyxy": [round(float(x), 1) for x in box]}
            for box, c, n in zip(detections.xyxy, conf, names)]


class AlertPolicy:
    """Throttle and de-duplicate violations into alerts (thread-safe)."""

    def __init__(self, pause_s: dict[int, float], enabled: dict[int, bool] | None = None,
                 stationary_iou: float = 0.7, stationary_realert_s: float = 600.0):
        self.pause_s = pause_s
        self.enabled = enabled or {}
        self.stationary_iou = stationary_iou
        self.stationary_realert_s = stationary_realert_s
        self._last: dict[tuple, tuple[float, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.suppressed = 0

    def allow(self, v: Violation, captured_at: float) -> bool:
        """True if ``v`` (seen at ``captured_at``) should become an alert now."""
        if not self.enabled.get(v.camera_id, True):
            return False
        key = (v.camera_id, v.roi, v.violation)
        with self._lock:
            last = self._last.get(key)
            if last is not None:
                since = captured_at - last[0]
                if since < self.pause_s.get(v.camera_id, 10.0):
                    self.suppressed += 1
                    return False
                if since < self.stationary_realert_s and self._same_objects(v.detections.xyxy, last[1]):
                    self.suppressed += 1
                    return False
            self._last[key] = (captured_at, v.detections.xyxy.copy())
            return True

    def _same_objects(self, boxes: np.ndarray, previous: np.ndarray) -> bool:
        """Every box matches a box of the previous alert: nothing new, nothing moved."""
        if len(boxes) == 0 or len(previous) == 0:
            return False
        iou = sv.box_iou_batch(boxes, previous)
        return bool((iou.max(axis=1) >= self.stationary_iou).all())

    def forget(self, camera_id: int) -> None:
        with self._lock:
            for k in [k for k in self._last if k[0] == camera_id]:
                del self._last[k]


def annotate(image: np.ndarray, detections: sv.Detections,
             polygons: list[tuple[str | None, np.ndarray]] = ()) -> np.ndarray:
    """Draw ROI polygons, boxes and ``class confidence`` labels on a copy of ``image``."""
    out = image.copy()
    for name, poly in polygons:
        out = sv.draw_polygon(out, poly, color=sv.Color.YELLOW, thickness=2)
        if name:
            x, y = poly.min(axis=0)
            out = sv.draw_text(out, name, sv.Point(int(x) + 4, int(y) + 12), text_color=sv.Color.YELLOW,
                               text_scale=0.5)
    if len(detections):
        conf = detections.confidence if detections.confidence is not None else np.ones(len(detections))
        labels = [f"{n} {c:.2f}" for n, c in zip(detections.data["class_name"], conf)]
        out = sv.BoxAnnotator(thickness=2).annotate(out, detections)
        out = sv.LabelAnnotator(text_scale=0.4, text_padding=3).annotate(out, detections, labels=labels)
    return out


def safe_name(text: str, limit: int = 64) -> str:
    """``text`` as one file-name component: letters, digits, ``-`` and ``_`` only.

    >>> safe_name("../etc/passwd"), safe_name("NO-Hardhat"), safe_name("")
    ('___etc_passwd', 'NO-Hardhat', '_')
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(text))[:limit] or "_"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


AlertSink = Callable[[Alert, Path], None]
"""Called with each stored alert and the output directory (e.g. the cloud outbox)."""


class AlertStore:
    """Writes alerts (evidence JPEG + JSON record) under ``output_dir`` and notifies sinks."""

    def __init__(self, output_dir: str | Path, jpeg_quality: int = 85, sinks: list[AlertSink] | None = None):
        self.output_dir = Path(output_dir)
        self.jpeg_quality = jpeg_quality
        self.sinks: list[AlertSink] = list(sinks or [])
        self.count = 0

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(self, alert: Alert, image: np.ndarray | None, detections: sv.Detections,
             polygons: list[tuple[str | None, np.ndarray]] = ()) -> Alert:
        """Store ``alert`` (and its annotated image if ``image`` is given), then call the sinks."""
        day = time.strftime("%Y-%m-%d", time.localtime(alert.captured_at))
        base = Path("alerts") / day / f"{int(alert.captured_at * 1000)}_cam{int(alert.camera_id)}_{safe_name(alert.violation)}_{alert.alert_id[:8]}"
        if image is not None:
            rel = base.with_suffix(".jpg")
            write_atomic(self.output_dir / rel, encode_jpeg(annotate(image, detections, polygons), self.jpeg_quality))
            alert.evidence_image = str(rel)
        alert.record_path = str(base.with_suffix(".json"))
        write_atomic(self.output_dir / alert.record_path, json.dumps(alert.to_json(), indent=1).encode())
        self.count += 1
        for sink in self.sinks:
            sink(alert, self.output_dir)
        return alert


def read_alerts(output_dir: str | Path) -> list[Alert]:
    """All stored alert records, oldest first."""
    recs = [Alert.from_json(json.loads(p.read_text())) for p in Path(output_dir).glob("alerts/*/*.json")]
    return sorted(recs, key=lambda a: (a.captured_at, a.created_at))
