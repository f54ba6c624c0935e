"""Geometry of the rules: image points to pixels, counting lines, ground-plane distances.

Points written with every coordinate <= 1 are normalised and scaled to the frame; larger values
are pixels (as for ROI polygons). A :class:`GroundPlane` maps image points to metres on the
ground through the perspective transform of four calibration points
(``cv2.getPerspectiveTransform``); people are placed by their foot point (bottom centre of the
box). Without a calibration, social distancing keeps the legacy pixel test (``|dx| <
sd_thresh_limit_x`` and ``|dy| < sd_thresh_limit_y``).

Example:
    >>> import numpy as np
    >>> plane = GroundPlane([(0, 100), (100, 100), (100, 0), (0, 0)], [(0, 0), (10, 0), (10, 10), (0, 10)])
    >>> plane.to_metres(np.array([[50.0, 50.0], [100.0, 100.0]]), (200, 200)).round(3)
    array([[ 5.,  5.],
           [10.,  0.]])
    >>> close_pairs_m(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]), 1.5)
    [(0, 1, 1.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np
import supervision as sv

FOOT = sv.Position.BOTTOM_CENTER
"""Where an object stands: the anchor used for zones, lines and distances."""


def take(detections: sv.Detections, rows: np.ndarray) -> sv.Detections:
    """The detections at integer ``rows`` (typed: supervision's indexing returns a union)."""
    return cast(sv.Detections, detections[rows]) if len(rows) else sv.Detections.empty()


def to_pixels(points: Sequence[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    """Float pixel coordinates for a frame of ``size=(w, h)``; normalised points are scaled."""
    arr = np.asarray(points, dtype=float)
    if arr.max() <= 1.0:
        arr = arr * np.asarray(size, dtype=float)
    return arr


def line_zone(points: Sequence[tuple[float, float]], size: tuple[int, int]) -> sv.LineZone:
    """supervision's counting line from A to B, triggered by objects' foot points.

    ``in`` counts a foot point going from the right of A->B (as seen in the image) to its left.
    """
    (ax, ay), (bx, by) = to_pixels(points, size)
    return sv.LineZone(start=sv.Point(ax, ay), end=sv.Point(bx, by), triggering_anchors=(FOOT,))


class GroundPlane:
    """Image -> ground-plane (metres) mapping from four point correspondences."""

    def __init__(self, image_points: Sequence[tuple[float, float]], world_points: Sequence[tuple[float, float]]):
        self.image_points = list(image_points)
        self.world = np.asarray(world_points, dtype=np.float32)
        self._h: dict[tuple[int, int], np.ndarray] = {}

    def homography(self, size: tuple[int, int]) -> np.ndarray:
        """3x3 perspective transform from pixels of a ``size`` frame to metres."""
        if size not in self._h:
            src = to_pixels(self.image_points, size).astype(np.float32)
            self._h[size] = cv2.getPerspectiveTransform(src, self.world)
        return self._h[size]

    def to_metres(self, points_px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``(N, 2)`` pixel points -> ``(N, 2)`` ground positions in metres."""
        if len(points_px) == 0:
            return np.zeros((0, 2))
        pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, self.homography(size).astype(np.float64)).reshape(-1, 2)


def _upper_pairs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.nonzero(np.triu(mask, k=1))
    return i, j


def close_pairs_m(points_m: np.ndarray, min_m: float) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, metres)``, ``i < j``, of ground points closer than ``min_m``."""
    if len(points_m) < 2:
        return []
    d = np.linalg.norm(points_m[:, None, :] - points_m[None, :, :], axis=-1)
    i, j = _upper_pairs(d < min_m)
    return [(int(a), int(b), round(float(d[a, b]), 3)) for a, b in zip(i, j)]


def close_pairs_px(anchors: np.ndarray, limit_x: float, limit_y: float) -> list[tuple[int, int, float]]:
    """Legacy pixel test as pairs ``(i, j, pixels)``: ``|dx| < limit_x`` and ``|dy| < limit_y``.

    >>> close_pairs_px(np.array([[0.0, 0.0], [30.0, 10.0], [100.0, 0.0]]), 40, 20)
    [(0, 1, 31.623)]
    """
    if len(anchors) < 2:
        return []
    delta = np.abs(anchors[:, None, :] - anchors[None, :, :])
    i, j = _upper_pairs((delta[..., 0] < limit_x) & (delta[..., 1] < limit_y))
    dist = np.linalg.norm(anchors[i] - anchors[j], axis=-1) if len(i) else np.zeros(0)
    return [(int(a), int(b), round(float(d), 3)) for a, b, d in zip(i, j, dist)]
