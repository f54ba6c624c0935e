"""Live previews that cost nothing while nobody watches.

:meth:`Previewer.sink` is a pipeline result sink that only keeps a reference to each camera's
latest :class:`~trakr.types.AnalysedFrame` (one dict store, no copy, no encoding). JPEGs are made
in the console's request threads, only when a viewer asks, at most ``fps`` times per second per
camera and size however many viewers there are (they share the cached JPEG).

Example:
    >>> import numpy as np, supervision as sv, time
    >>> from trakr.config import CameraConfig
    >>> from trakr.types import AnalysedFrame, Frame
    >>> cam = CameraConfig(CameraId=1, Address="0")
    >>> dets = sv.Detections(xyxy=np.array([[10., 10, 40, 60]]), confidence=np.array([0.8]),
    ...                      data={"class_name": np.array(["person"])})
    >>> af = AnalysedFrame(Frame(1, np.zeros((90, 160, 3), np.uint8), time.time(), 7), cam, dets, [], [],
    ...                    [("door", np.array([[0, 0], [80, 0], [80, 80]]))], time.time())
    >>> p = Previewer(fps=5)
    >>> p.sink(af); p.encoded
    0
    >>> jpeg, frame = p.jpeg(1, width=80)
    >>> jpeg[:2] == b"\\xff\\xd8", frame.frame.seq, p.encoded
    (True, 7, 1)
    >>> p.jpeg(1, width=80)[0] is jpeg, p.encoded  # same frame: the cached JPEG, no new encode
    (True, 1)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import cv2
import numpy as np
import supervision as sv

from trakr.evidence import encode_jpeg
from trakr.rules.zones import scale_polygon
from trakr.types import AnalysedFrame

_INDEX = sv.ColorLookup.INDEX  # one colour for all: works with or without class ids
_BOX = sv.BoxAnnotator(color=sv.Color.from_hex("#3b82f6"), thickness=2, color_lookup=_INDEX)
_BOX_VIOLATION = sv.BoxAnnotator(color=sv.Color.RED, thickness=3, color_lookup=_INDEX)


def _scaled(dets: sv.Detections, scale: float) -> sv.Detections:
    if scale == 1.0 or len(dets) == 0:
        return dets
    return dataclasses.replace(dets, xyxy=dets.xyxy * scale)  # the pipeline's object is never modified


def labels_of(dets: sv.Detections) -> list[str]:
    """``#<track id> class confidence`` per detection (the track id once tracking sets one)."""
    names = dets.data.get("class_name", np.array([""] * len(dets)))
    conf = dets.confidence if dets.confidence is not None else np.ones(len(dets))
    ids = dets.tracker_id if dets.tracker_id is not None else [None] * len(dets)
    return [(f"#{int(t)} " if t is not None else "") + f"{n} {c:.2f}" for n, c, t in zip(names, conf, ids)]


def render(af: AnalysedFrame, width: int | None = None, annotated: bool = True) -> np.ndarray:
    """The frame scaled down to ``width`` (never up) with ROI polygons, boxes and labels drawn;
    detections that broke a rule are drawn in red."""
    img: Any = af.frame.image
    h, w = img.shape[:2]
    scale = min(1.0, width / w) if width else 1.0
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
    else:
        img = img.copy()
    if not annotated:
        return img
    text_scale = 0.35 + 0.25 * scale
    for name, poly in af.polygons:
        pts = (np.asarray(poly, dtype=float) * scale).round().astype(np.int64)
        img = sv.draw_polygon(img, pts, color=sv.Color.YELLOW, thickness=2)
        if name:  # left-aligned inside the polygon's box, outlined so it reads on any background
            x, y = pts.min(axis=0)
            org = (int(x) + 4, int(y) + int(18 * text_scale) + 4)
            cv2.putText(img, name, org, cv2.FONT_HERSHEY_SIMPLEX, text_scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, name, org, cv2.FONT_HERSHEY_SIMPLEX, text_scale, (0, 255, 255), 1, cv2.LINE_AA)
    for name, line in (getattr(af.camera, "lines", None) or {}).items():  # counting lines A -> B
        pts = getattr(line, "points", None)
        if not pts or len(pts) != 2:
            continue
        (ax, ay), (bx, by) = (scale_polygon(pts, af.frame.size) * scale).round().astype(int).tolist()
        cv2.arrowedLine(img, (ax, ay), (bx, by), (255, 0, 255), 2, cv2.LINE_AA, tipLength=0.03)
        cv2.putText(img, name, (ax + 4, ay - 6), cv2.FONT_HERSHEY_SIMPLEX, text_scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, name, (ax + 4, ay - 6), cv2.FONT_HERSHEY_SIMPLEX, text_scale, (255, 0, 255), 1, cv2.LINE_AA)
    dets = _scaled(af.detections, scale)
    if len(dets):
        img = _BOX.annotate(img, dets)
        img = sv.LabelAnnotator(
            color=sv.Color.from_hex("#3b82f6"), text_scale=text_scale, text_padding=2, color_lookup=_INDEX
        ).annotate(img, dets, labels=labels_of(dets))
    bad = [v.detections for v in af.violations if len(v.detections)]
    if bad:
        img = _BOX_VIOLATION.annotate(img, _scaled(sv.Detections.merge(bad), scale))
    return img


class Previewer:
    """Latest analysed frame per camera, and JPEGs of it made only for viewers, rate-capped."""

    def __init__(self, fps: float = 5.0, quality: int = 75):
        self.fps = fps
        self.quality = quality
        self._latest: dict[int, AnalysedFrame] = {}
        self._cache: dict[tuple[int, int, bool], tuple[float, int, bytes, AnalysedFrame]] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.encoded = 0
        """JPEGs encoded so far (stays 0 while nobody watches)."""

    # -- frame path: a reference, nothing else ----------------------------------------------------
    def sink(self, af: AnalysedFrame) -> None:
        """Pipeline result sink: remember ``af`` as its camera's latest frame."""
        self._latest[af.frame.camera_id] = af

    # -- viewers --------------------------------------------------------------------------------
    def latest(self, camera_id: int) -> AnalysedFrame | None:
        return self._latest.get(camera_id)

    def forget(self, keep: set[int]) -> None:
        """Drop the frames of cameras that are no longer configured."""
        for cid in list(self._latest):
            if cid not in keep:
                self._latest.pop(cid, None)

    def _lock(self, camera_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(camera_id, threading.Lock())

    def jpeg(
        self, camera_id: int, width: int | None = None, annotated: bool = True
    ) -> tuple[bytes, AnalysedFrame] | None:
        """The latest frame of ``camera_id`` as JPEG, or ``None`` before its first frame.

        A JPEG is encoded only when the frame is newer than the cached one and the last encode
        for this camera and size is at least ``1/fps`` old; otherwise the cached one is returned.
        """
        af = self._latest.get(camera_id)
        if af is None:
            return None
        key = (camera_id, int(width or 0), annotated)
        with self._lock(camera_id):
            cached = self._cache.get(key)
            now = time.monotonic()
            if cached is not None and (cached[3] is af or now - cached[0] < 1.0 / self.fps):
                return cached[2], cached[3]
            data = encode_jpeg(render(af, width, annotated), self.quality)
            self.encoded += 1
            self._cache[key] = (now, af.frame.seq, data, af)
            return data, af
