"""Rules: which detections are violations, per camera, per ROI.

Each camera has a camera-wide zone (its ``points``/``ROI`` polygon, or the whole frame) checked
for the ``Detection`` triggers, and one zone per ``roi_config`` entry checked for that ROI's
``detections``. A detection is inside a zone when its bottom-centre anchor is (supervision's
``PolygonZone``). ``social_distancing`` flags person pairs closer than ``sd_thresh_limit_x`` and
``sd_thresh_limit_y`` pixels (anchor to anchor). Polygons written with all coordinates <= 1 are
normalised and scaled to each frame's size; larger values are pixels.

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.config import CameraConfig
    >>> cam = CameraConfig(CameraId=1, Address="0", Detection="person",
    ...                    roi_config={"walkway": {"points": ["0,0.5", "1,0.5", "1,1", "0,1"], "detections": "car"}})
    >>> dets = sv.Detections(xyxy=np.array([[10., 10, 50, 90], [60, 20, 90, 40]]),
    ...                      class_id=np.array([0, 2]), data={"class_name": np.array(["person", "car"])})
    >>> [(v.roi, v.violation, len(v.detections)) for v in CameraRules(cam).evaluate((100, 100), dets)]
    [(None, 'person', 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv

from trakr.config import CameraConfig
from trakr.types import Violation

SOCIAL_DISTANCING = "social_distancing"
ANCHOR = sv.Position.BOTTOM_CENTER


@dataclass
class Zone:
    name: str | None
    polygon: list[tuple[float, float]] | None
    triggers: list[str]


def scale_polygon(points: list[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    """Pixel polygon for a frame of ``size=(w, h)``; normalised points are scaled, pixels kept."""
    arr = np.asarray(points, dtype=float)
    if arr.max() <= 1.0:
        arr = arr * np.asarray(size, dtype=float)
    return arr.round().astype(np.int64)


def close_pairs(anchors: np.ndarray, limit_x: float, limit_y: float) -> np.ndarray:
    """Boolean mask of points that have a neighbour within ``limit_x`` and ``limit_y``."""
    if len(anchors) < 2:
        return np.zeros(len(anchors), dtype=bool)
    dx = np.abs(anchors[:, None, 0] - anchors[None, :, 0])
    dy = np.abs(anchors[:, None, 1] - anchors[None, :, 1])
    close = (dx < limit_x) & (dy < limit_y)
    np.fill_diagonal(close, False)
    return close.any(axis=1)


def _rows(detections: sv.Detections, rows: np.ndarray) -> sv.Detections:
    """``detections[rows]`` typed (supervision's indexing is annotated as a union)."""
    return cast(sv.Detections, detections[rows])


class CameraRules:
    """Evaluates one camera's triggers on its detections."""

    def __init__(self, cam: CameraConfig, roi_enabled: bool = True):
        self.camera_id = cam.camera_id
        self.sd_limits = (cam.sd_thresh_limit_x, cam.sd_thresh_limit_y)
        self.zones: list[Zone] = [Zone(None, cam.polygon if roi_enabled else None, list(cam.detection))]
        for name, roi in cam.roi_config.items():
            self.zones.append(Zone(name, roi.points if roi_enabled else None, list(roi.detections)))
        self._pixel_zones: dict[tuple[int, int], list[sv.PolygonZone | None]] = {}

    @property
    def triggers(self) -> set[str]:
        return {t for z in self.zones for t in z.triggers}

    def polygons(self, size: tuple[int, int]) -> list[tuple[str | None, np.ndarray]]:
        """Pixel polygons of the zones that have one, for drawing."""
        return [(z.name, pz.polygon) for z, pz in zip(self.zones, self._zones_for(size)) if pz is not None]

    def _zones_for(self, size: tuple[int, int]) -> list[sv.PolygonZone | None]:
        if size not in self._pixel_zones:
            self._pixel_zones[size] = [
                sv.PolygonZone(scale_polygon(z.polygon, size), triggering_anchors=(ANCHOR,)) if z.polygon else None
                for z in self.zones
            ]
        return self._pixel_zones[size]

    def evaluate(self, size: tuple[int, int], detections: sv.Detections) -> list[Violation]:
        """Violations in a frame of ``size=(w, h)``."""
        out: list[Violation] = []
        if len(detections) == 0:
            return out
        names = detections.data["class_name"]
        for zone, pz in zip(self.zones, self._zones_for(size)):
            if not zone.triggers:
                continue
            inside = pz.trigger(detections) if pz is not None else np.ones(len(detections), dtype=bool)
            for trig in zone.triggers:
                if trig == SOCIAL_DISTANCING:
                    persons = inside & (names == "person")
                    idx = np.flatnonzero(persons)
                    anchors = _rows(detections, idx).get_anchors_coordinates(ANCHOR) if len(idx) else np.zeros((0, 2))
                    sel = np.zeros(len(detections), dtype=bool)
                    sel[idx[close_pairs(anchors, *self.sd_limits)]] = True
                else:
                    sel = inside & (names == trig)
                if sel.any():
                    out.append(Violation(self.camera_id, zone.name, trig, _rows(detections, sel)))
        return out
