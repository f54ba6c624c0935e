"""The unit that flows from capture to rules: one decoded image with where and when it came from.

Example:
    >>> import numpy as np, time
    >>> f = Frame(camera_id=3, image=np.zeros((4, 6, 3), np.uint8), captured_at=time.time(), seq=1)
    >>> f.size
    (6, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Frame:
    """A BGR image from one camera, stamped with its wall-clock capture time."""

    camera_id: int
    image: np.ndarray
    captured_at: float
    """Wall-clock time (``time.time()``) when the reader got the frame."""
    seq: int
    """Per-camera frame counter assigned by the reader."""
    keyframe: bool = field(default=False)
    """Set by the change gate when the frame passed only because of the keyframe timer."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.image.shape[1], self.image.shape[0]
