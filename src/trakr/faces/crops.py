"""Face crops as alert evidence: written beside the alert's evidence image, under ``alerts/``,
so the same retention deletes them; never kept for anything else.

:func:`save_face_crop` is called by the pipeline before an alert is stored; for an alert on a
face trigger it writes the (padded) face region of the raw frame and records its path in
``alert.extra["face_image"]``, which the cloud sink uploads to the alert image store.

Example:
    >>> import tempfile, numpy as np
    >>> from trakr.types import Alert
    >>> a = Alert("ab12cd34ef", 3, "door", "gate", "unknown_face", 1.7e9, 1.7e9, "", [
    ...     {"class_name": "unknown_face", "xyxy": [0, 0, 100, 300], "region": [40, 20, 80, 70]}], (320, 240))
    >>> out = tempfile.mkdtemp()
    >>> save_face_crop(out, a, np.zeros((240, 320, 3), np.uint8))
    True
    >>> a.extra["face_image"].endswith("_cam3_unknown_face_ab12cd34_face.jpg")
    True
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trakr.evidence import encode_jpeg, safe_name, write_atomic
from trakr.faces.options import is_face_trigger
from trakr.types import Alert, local_day

log = logging.getLogger(__name__)

PAD = 0.3
"""Margin around the face box, as a share of its size."""


def face_crop(image: np.ndarray, region: list[float]) -> np.ndarray | None:
    """The face ``region`` (x0, y0, x1, y1) of ``image`` with a margin, or ``None`` if empty."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = region
    px, py = PAD * (x1 - x0), PAD * (y1 - y0)
    a, b = int(max(0, x0 - px)), int(max(0, y0 - py))
    c, d = int(min(w, x1 + px)), int(min(h, y1 + py))
    return image[b:d, a:c] if c - a >= 2 and d - b >= 2 else None


def save_face_crop(output_dir: str | Path, alert: Alert, image: np.ndarray, jpeg_quality: int = 90) -> bool:
    """Write the face crop of a face alert; whether one was written (a disk error is logged)."""
    if not is_face_trigger(alert.violation):
        return False
    region = next((o["region"] for o in alert.objects if o.get("region")), None)
    crop = face_crop(image, region) if region is not None else None
    if crop is None:
        return False
    rel = (
        Path("alerts")
        / local_day(alert.captured_at)
        / f"{int(alert.captured_at * 1000)}_cam{int(alert.camera_id)}_{safe_name(alert.violation)}_{alert.alert_id[:8]}_face.jpg"
    )
    try:
        write_atomic(Path(output_dir) / rel, encode_jpeg(crop, jpeg_quality))
    except OSError as e:
        log.error("cannot write the face crop of alert %s: %s", alert.alert_id, e.strerror or e)
        return False
    alert.extra["face_image"] = str(rel)
    return True
