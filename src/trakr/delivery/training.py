"""Training-image capture and the latest-frame file, both fed by the pipeline's result sink.

:class:`TrainingCapture` (``enableTraining`` and the camera's ``train_en``) saves the *raw* frame
(no boxes drawn) at most once every ``train_time_pause`` seconds of capture time per camera, as
``<output>/training/<YYYY-MM-DD>/<stamp>_cam<id>.jpg`` with a YOLO-format label file next to it
(``<stamp>_cam<id>.txt``: one ``class_id cx cy w h`` line per detection, normalised to 0..1; an
empty file for a frame without detections, which YOLO trainers take as a negative example) and
``<output>/training/classes.txt`` (line *i* = name of class id *i*). ``Alert2Train`` also saves
the frame of every alert the same way (``_alert`` suffix), whatever the pause: the raw frame, not
the annotated evidence image, because drawn boxes would end up in the training set.

Each capture is queued in the outbox: an upload to ``train_storage_ip`` (image + the label text
and metadata) and a training event to ``train_url``; both rank lowest in the drop policy.

:class:`FrameWriter` (``enableFrame``) writes the latest annotated frame of any camera to
``frameFile`` (a relative path that must stay inside the output directory), atomically, at most every
``trakr.cloud.frame_interval_s`` seconds.

Example:
    >>> import numpy as np, supervision as sv
    >>> d = sv.Detections(xyxy=np.array([[10., 20, 30, 60]]), class_id=np.array([0]),
    ...                   data={"class_name": np.array(["person"])})
    >>> yolo_labels(d, (100, 200))
    '0 0.200000 0.200000 0.200000 0.200000\\n'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.config import SysConfig, relative_file_name
from trakr.evidence import annotate, encode_jpeg, write_atomic

log = logging.getLogger(__name__)


def yolo_labels(detections: sv.Detections, size: tuple[int, int]) -> str:
    """YOLO label text for ``detections`` in a frame of ``size=(w, h)``."""
    if len(detections) == 0:
        return ""
    w, h = size
    ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
    lines = []
    for (x0, y0, x1, y1), cid in zip(detections.xyxy, ids):
        x0, x1 = np.clip([x0, x1], 0, w)
        y0, y1 = np.clip([y0, y1], 0, h)
        if x1 <= x0 or y1 <= y0:
            continue
        lines.append(
            f"{int(cid)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
        )
    return "".join(line + "\n" for line in lines)


Enqueue = Callable[[str, Path, dict], None]
"""``enqueue(kind, image_path, metadata)``: called after each capture is on disk."""


class TrainingCapture:
    """Result sink that saves training images with YOLO labels (thread-safe)."""

    def __init__(self, get_config: Callable[[], SysConfig], output_dir: str | Path, enqueue: Enqueue | None = None):
        self.get_config = get_config
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / "training"
        self.enqueue = enqueue
        self._last: dict[int, float] = {}
        self._classes: dict[int, str] = {}
        self._lock = threading.Lock()
        self.captured = 0
        self._load_classes()

    def _load_classes(self) -> None:
        p = self.root / "classes.txt"
        if p.exists():
            for i, name in enumerate(p.read_text().splitlines()):
                if name and not name.startswith("class"):
                    self._classes[i] = name

    def _update_classes(self, detections: sv.Detections) -> None:
        if len(detections) == 0 or detections.class_id is None:
            return
        names = detections.data.get("class_name")
        new = False
        for i, cid in enumerate(detections.class_id):
            cid = int(cid)
            if cid not in self._classes and names is not None:
                self._classes[cid] = str(names[i])
                new = True
        if new:
            top = max(self._classes)
            text = "".join(self._classes.get(i, f"class{i}") + "\n" for i in range(top + 1))
            write_atomic(self.root / "classes.txt", text.encode())

    def __call__(self, af) -> None:
        """``af``: a :class:`trakr.pipeline.AnalysedFrame`."""
        cfg = self.get_config()
        cam, frame = af.camera, af.frame
        if not cfg.common.enable_training:
            return
        reasons = []
        if cfg.common.alert_2_train:
            reasons += [("alert", a) for a in af.alerts]
        if cam.train_en:
            with self._lock:
                last = self._last.get(cam.camera_id)
                due = last is None or frame.captured_at - last >= cam.train_time_pause or frame.captured_at < last
                if due:
                    self._last[cam.camera_id] = frame.captured_at
            if due:
                reasons.insert(0, ("periodic", None))
        if not reasons:
            return
        labels = yolo_labels(af.detections, frame.size)
        stamp = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(frame.captured_at))
            + f"-{int(frame.captured_at * 1000) % 1000:03d}"
        )
        day = time.strftime("%Y-%m-%d", time.localtime(frame.captured_at))
        jpeg = None
        for source, alert in reasons:
            suffix = "" if source == "periodic" else f"_alert_{alert.alert_id[:8]}"
            image = self.root / day / f"{stamp}_cam{cam.camera_id}{suffix}.jpg"
            if jpeg is None:
                jpeg = encode_jpeg(frame.image, cfg.trakr.output.jpeg_quality)
            with self._lock:
                self._update_classes(af.detections)
            write_atomic(image, jpeg)
            write_atomic(image.with_suffix(".txt"), labels.encode())
            self.captured += 1
            meta = {
                "camera_id": cam.camera_id,
                "camera_name": cam.name,
                "captured_at": frame.captured_at,
                "source": source,
                "objects": len(af.detections),
                "labels": labels,
                "alert_id": alert.alert_id if alert else None,
                "violation": alert.violation if alert else None,
            }
            if self.enqueue is not None:
                try:
                    self.enqueue("training", image, meta)
                except Exception:
                    log.exception("training: cannot queue %s", image.name)


class FrameWriter:
    """Result sink writing the latest annotated frame to ``frameFile`` (``enableFrame``)."""

    def __init__(self, get_config: Callable[[], SysConfig], output_dir: str | Path):
        self.get_config = get_config
        self.output_dir = Path(output_dir)
        self._last = 0.0
        self._lock = threading.Lock()
        self.written = 0

    def path(self, cfg: SysConfig) -> Path:
        """``frameFile`` under the output directory; never outside it, even through a symlink."""
        p = (self.output_dir / relative_file_name(cfg.common.frame_file)).resolve()
        if not p.is_relative_to(self.output_dir.resolve()):
            raise ValueError(f"frameFile {cfg.common.frame_file!r} leaves the output directory")
        return p

    def __call__(self, af) -> None:
        cfg = self.get_config()
        if not cfg.common.enable_frame:
            return
        now = time.monotonic()
        with self._lock:
            if self.written and now - self._last < cfg.trakr.cloud.frame_interval_s:
                return
            self._last = now
        path = self.path(cfg)
        ext = path.suffix.lower() if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp") else ".png"
        ok, buf = cv2.imencode(ext, annotate(af.frame.image, af.detections, af.polygons))
        if ok:
            write_atomic(path, buf.tobytes())
            self.written += 1
