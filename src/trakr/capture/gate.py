"""Change gate: pass a frame only when enough of it changed since the last frame passed.

Each camera keeps a small blurred grayscale copy of the last frame it passed. A new frame passes
when the fraction of pixels whose grey level moved by more than ``pixel_threshold`` is at least
``area_threshold``, or when ``keyframe_s`` seconds went by since the last pass (so a standing
violation keeps being seen). Defaults are measured on the real clip (see ``docs/gate.md``).

Example:
    >>> import numpy as np
    >>> from trakr.types import Frame
    >>> gate = ChangeGate(area_threshold=0.01, keyframe_s=60)
    >>> still = np.zeros((120, 160, 3), np.uint8)
    >>> moved = still.copy(); moved[40:80, 40:80] = 255
    >>> [gate.check(Frame(0, img, t, t)) for t, img in enumerate([still, still, moved])]
    [True, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from trakr.types import Frame


@dataclass
class GateStats:
    """Counts per camera."""

    seen: int = 0
    passed: int = 0
    keyframes: int = 0

    @property
    def pass_rate(self) -> float:
        return self.passed / self.seen if self.seen else 0.0


class ChangeGate:
    """Per-camera motion gate; not thread-safe (one consumer calls it)."""

    def __init__(
        self,
        width: int = 160,
        pixel_threshold: int = 25,
        area_threshold: float = 0.02,
        keyframe_s: float = 5.0,
        enabled: bool = True,
    ):
        self.width = width
        self.pixel_threshold = pixel_threshold
        self.area_threshold = area_threshold
        self.keyframe_s = keyframe_s
        self.enabled = enabled
        self._last: dict[int, tuple[np.ndarray, float]] = {}
        self.stats: dict[int, GateStats] = {}

    def _small(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        height = max(1, round(h * self.width / w))
        small = cv2.resize(image, (self.width, height), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(small, (5, 5), 0)

    def changed_fraction(self, a: np.ndarray, b: np.ndarray) -> float:
        """Fraction of pixels that differ by more than the pixel threshold."""
        diff = cv2.absdiff(a, b)
        return float(np.count_nonzero(diff > self.pixel_threshold)) / diff.size

    def check(self, frame: Frame) -> bool:
        """True if ``frame`` should go to the detector; updates the reference when it passes."""
        st = self.stats.setdefault(frame.camera_id, GateStats())
        st.seen += 1
        if not self.enabled:
            st.passed += 1
            return True
        small = self._small(frame.image)
        last = self._last.get(frame.camera_id)
        passed = False
        if last is None or last[0].shape != small.shape:
            passed = True
        elif self.changed_fraction(small, last[0]) >= self.area_threshold:
            passed = True
        elif frame.captured_at - last[1] >= self.keyframe_s:
            passed = True
            st.keyframes += 1
        if passed:
            st.passed += 1
            self._last[frame.camera_id] = (small, frame.captured_at)
        return passed

    def forget(self, camera_id: int) -> None:
        """Drop a camera's reference (after a reconnect or a config change)."""
        self._last.pop(camera_id, None)
