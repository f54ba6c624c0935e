"""Alert policy: which violations become alerts.

:class:`AlertPolicy` applies ``enableAlert`` and the camera's ``alert_en``, at most one alert per
(camera, ROI, violation) every ``alert_time_pause`` seconds of capture time, and no repeat for
objects that have not moved (a parked van does not alert every pause; it alerts again only after
``stationary_realert_s``).

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.types import Violation
    >>> pol = AlertPolicy(pause_s={1: 10.0})
    >>> v = Violation(1, None, "person", sv.Detections(xyxy=np.array([[0., 0, 10, 10]])))
    >>> [pol.allow(v, t) for t in (0.0, 5.0, 11.0)]
    [True, False, False]
"""

from __future__ import annotations

import threading

import numpy as np
import supervision as sv

from trakr.types import Violation


class AlertPolicy:
    """Throttle and de-duplicate violations into alerts (thread-safe)."""

    def __init__(
        self,
        pause_s: dict[int, float],
        enabled: dict[int, bool] | None = None,
        stationary_iou: float = 0.7,
        stationary_realert_s: float = 600.0,
    ):
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
