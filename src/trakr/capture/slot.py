"""Latest-frame slot: one frame per camera, newest wins, drops counted.

The reader never waits for the consumer: :meth:`LatestFrameSlot.put` replaces an untaken frame
(and counts a drop). Memory is bounded to one frame per camera whatever the consumer's speed.

Example:
    >>> import numpy as np
    >>> from trakr.types import Frame
    >>> slot = LatestFrameSlot(camera_id=1)
    >>> for i in range(3):
    ...     slot.put(Frame(1, np.zeros((2, 2, 3), np.uint8), float(i), i))
    >>> slot.take().seq, slot.dropped
    (2, 2)
    >>> slot.take() is None
    True
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from trakr.types import Frame


class LatestFrameSlot:
    """Holds at most one :class:`Frame`; ``put`` overwrites, ``take`` empties."""

    def __init__(self, camera_id: int, on_put: Callable[[], None] | None = None):
        self.camera_id = camera_id
        self._frame: Frame | None = None
        self._lock = threading.Lock()
        self._on_put = on_put
        self.put_count = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        """Store ``frame``; an untaken older frame is dropped and counted."""
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.put_count += 1
        if self._on_put is not None:
            self._on_put()

    def take(self) -> Frame | None:
        """Return the newest frame and empty the slot (``None`` if empty)."""
        with self._lock:
            frame, self._frame = self._frame, None
            return frame

    def peek_time(self) -> float | None:
        """Capture time of the waiting frame, if any."""
        with self._lock:
            return None if self._frame is None else self._frame.captured_at
