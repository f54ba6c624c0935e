"""Evidence: annotated images and alert records on local disk.

:class:`AlertStore` writes each alert as an annotated evidence JPEG (boxes, labels, ROI polygons)
and a JSON record into ``<output>/alerts/<YYYY-MM-DD>/``, each written to a temporary file and
renamed, image first, so a reader (or the cloud sender) never sees half a file. The JSON record is
the single source for everything sent later.

Example:
    >>> import numpy as np, supervision as sv
    >>> d = sv.Detections(xyxy=np.array([[2., 2, 8, 9]]), confidence=np.array([0.9]),
    ...                   data={"class_name": np.array(["person"])})
    >>> objects_of(d)
    [{'class_name': 'person', 'confidence': 0.9, 'xyxy': [2.0, 2.0, 8.0, 9.0]}]
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.types import Alert, AlertSink, local_day

log = logging.getLogger(__name__)


SUB_LABEL, SIMILARITY, REGION, REGION_LABEL = "sub_label", "similarity", "region", "region_label"
"""Optional ``Detections.data`` keys a second look (:mod:`trakr.rules.derived`) may set on its rows:
an identity (``sub_label``, e.g. an enrolled person's name) and its ``similarity``, and a
``region`` (N x 4 xyxy, frame px) the rule looked at with its ``region_label`` (e.g. the head
region where no helmet was found). They go into the alert record and onto the evidence image."""


def objects_of(detections: sv.Detections) -> list[dict]:
    """One record per detection: class, confidence, box, and the optional second-look fields.

    >>> d = sv.Detections(xyxy=np.array([[0.0, 0, 10, 30]]), confidence=np.array([0.9]),
    ...                   tracker_id=np.array([7]), data={"class_name": np.array(["unknown_face"]),
    ...                   "sub_label": np.array([""]), "similarity": np.array([0.21])})
    >>> objects_of(d)
    [{'class_name': 'unknown_face', 'confidence': 0.9, 'xyxy': [0.0, 0.0, 10.0, 30.0], 'track_id': 7, 'similarity': 0.21}]
    """
    n = len(detections)
    names = detections.data.get("class_name", np.array([""] * n))
    conf = detections.confidence if detections.confidence is not None else np.ones(n)
    out = []
    for i, (box, c, name) in enumerate(zip(detections.xyxy, conf, names)):
        obj: dict = {
            "class_name": str(name),
            "confidence": round(float(c), 3),
            "xyxy": [round(float(x), 1) for x in box],
        }
        if detections.tracker_id is not None and int(detections.tracker_id[i]) > 0:
            obj["track_id"] = int(detections.tracker_id[i])
        for key in (SUB_LABEL, REGION_LABEL):
            if key in detections.data and str(detections.data[key][i]):
                obj[key] = str(detections.data[key][i])
        if SIMILARITY in detections.data and float(detections.data[SIMILARITY][i]) != 0.0:
            obj[SIMILARITY] = round(float(detections.data[SIMILARITY][i]), 3)
        if REGION in detections.data and np.any(detections.data[REGION][i]):
            obj[REGION] = [round(float(x), 1) for x in detections.data[REGION][i]]
        out.append(obj)
    return out


def annotate(
    image: np.ndarray, detections: sv.Detections, polygons: Sequence[tuple[str | None, np.ndarray]] = ()
) -> np.ndarray:
    """Draw ROI polygons, boxes and ``class confidence`` labels on a copy of ``image``."""
    out = image.copy()
    for name, poly in polygons:
        out = sv.draw_polygon(out, poly, color=sv.Color.YELLOW, thickness=2)
        if name:
            x, y = poly.min(axis=0)
            out = sv.draw_text(out, name, sv.Point(int(x) + 4, int(y) + 12), text_color=sv.Color.YELLOW, text_scale=0.5)
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


_written = 0
_written_lock = threading.Lock()


def bytes_written() -> int:
    """Bytes written by :func:`write_atomic` in this process (the retention janitor watches it)."""
    return _written


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    global _written
    with _written_lock:
        _written += len(data)
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


class AlertStore:
    """Writes alerts (evidence JPEG + JSON record) under ``output_dir`` and notifies sinks."""

    def __init__(self, output_dir: str | Path, jpeg_quality: int = 85, sinks: list[AlertSink] | None = None):
        self.output_dir = Path(output_dir)
        self.jpeg_quality = jpeg_quality
        self.sinks: list[AlertSink] = list(sinks or [])

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(
        self,
        alert: Alert,
        image: np.ndarray | None,
        detections: sv.Detections,
        polygons: Sequence[tuple[str | None, np.ndarray]] = (),
    ) -> Alert:
        """Store ``alert`` (and its annotated image if ``image`` is given), then call the sinks."""
        day = local_day(alert.captured_at)
        base = (
            Path("alerts")
            / day
            / f"{int(alert.captured_at * 1000)}_cam{int(alert.camera_id)}_{safe_name(alert.violation)}_{alert.alert_id[:8]}"
        )
        if image is not None:
            rel = base.with_suffix(".jpg")
            write_atomic(self.output_dir / rel, encode_jpeg(annotate(image, detections, polygons), self.jpeg_quality))
            alert.evidence_image = str(rel)
        alert.record_path = str(base.with_suffix(".json"))
        write_atomic(self.output_dir / alert.record_path, json.dumps(alert.to_json(), indent=1).encode())
        for sink in self.sinks:  # the alert is on disk: a failing sink is logged, never un-stores it
            try:
                sink(alert, self.output_dir)
            except Exception:
                log.exception("alert sink failed for alert %s", alert.alert_id)
        return alert


def read_alerts(output_dir: str | Path) -> list[Alert]:
    """All stored alert records, oldest first."""
    recs = [Alert.from_json(json.loads(p.read_text())) for p in Path(output_dir).glob("alerts/*/*.json")]
    return sorted(recs, key=lambda a: (a.captured_at, a.created_at))
