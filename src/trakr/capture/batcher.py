"""Cross-camera batcher: frames from all cameras' slots, fair, up to ``batch_size``, sent early.

The batcher owns the cameras' latest-frame slots; the readers already gated what they put there.
:meth:`Batcher.next_batch` scans the slots round-robin from where the previous batch stopped (so
with more cameras than ``batch_size`` every camera gets its turn) and takes each waiting frame. A
batch goes as soon as no other camera can add to it: when it is full, or when a scan finds every
other slot empty (their frames already taken or none waiting). ``deadline_s`` only bounds how long
re-scans may keep adding frames that trickle in; nothing waits for a camera that has no frame. A
batch holds at most one frame per camera: the slot only keeps the newest frame anyway.

Example:
    >>> import numpy as np
    >>> from trakr.types import Frame
    >>> b = Batcher(batch_size=2, deadline_s=10.0)
    >>> slots = [b.add_camera(i) for i in range(3)]
    >>> for i, s in enumerate(slots):
    ...     s.put(Frame(i, np.zeros((8, 8, 3), np.uint8), 0.0, 0))
    >>> [f.camera_id for f in b.next_batch(timeout=1)], [f.camera_id for f in b.next_batch(timeout=1)]
    ([0, 1], [2])
"""

from __future__ import annotations

import threading
import time

from trakr.capture.slot import LatestFrameSlot
from trakr.types import Frame


class Batcher:
    """Collects frames from per-camera slots into batches (thread-safe)."""

    def __init__(self, batch_size: int, deadline_s: float):
        self.batch_size = batch_size
        self.deadline_s = deadline_s
        self._cond = threading.Condition()
        self._version = 0  # bumped on every put, so a put between scan and wait is not missed
        self._scan_lock = threading.Lock()
        self._slots: dict[int, LatestFrameSlot] = {}
        self._order: list[int] = []
        self._rr = 0
        self._closed = False

    # -- cameras -------------------------------------------------------------------------------
    def add_camera(self, camera_id: int) -> LatestFrameSlot:
        """Create (or return) the slot a camera reader writes into."""
        with self._scan_lock:
            if camera_id not in self._slots:
                self._slots[camera_id] = LatestFrameSlot(camera_id, self._bump)
                self._order.append(camera_id)
            return self._slots[camera_id]

    def remove_camera(self, camera_id: int) -> None:
        with self._scan_lock:
            self._slots.pop(camera_id, None)
            if camera_id in self._order:
                self._order.remove(camera_id)

    @property
    def slots(self) -> dict[int, LatestFrameSlot]:
        with self._scan_lock:
            return dict(self._slots)

    def close(self) -> None:
        """Wake every waiter; ``next_batch`` then returns what it has, or None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _bump(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    # -- batching ------------------------------------------------------------------------------
    def _scan(self, batch: list[Frame]) -> int:
        """Add every waiting frame of a camera not yet in ``batch`` (up to full); how many were added."""
        added = 0
        with self._scan_lock:
            n = len(self._order)
            if not n:
                return 0
            start = self._rr % n
            taken = {f.camera_id for f in batch}
            for k in range(n):
                if len(batch) >= self.batch_size:
                    break
                cam = self._order[(start + k) % n]
                if cam in taken:
                    continue
                frame = self._slots[cam].take()
                if frame is not None:
                    batch.append(frame)
                    taken.add(cam)
                    added += 1
                    self._rr = (start + k + 1) % n
        return added

    def next_batch(self, timeout: float | None = None) -> list[Frame] | None:
        """Block until a batch is ready; ``None`` on timeout with nothing, or after ``close``."""
        t_end = None if timeout is None else time.monotonic() + timeout
        batch: list[Frame] = []
        first_at: float | None = None
        while True:
            with self._cond:
                version = self._version
            added = self._scan(batch)
            now = time.monotonic()
            if batch:
                if first_at is None:
                    first_at = now
                # Full, or no other camera can add to it now (this scan found nothing new), or the
                # deadline bounds a trickle of re-scans: send.
                if len(batch) >= self.batch_size or not added or now - first_at >= self.deadline_s:
                    return batch
                continue  # frames came in during the scan: look once more before sending
            if self._closed:
                return None
            if t_end is not None and now >= t_end:
                return None
            with self._cond:
                if self._version == version and not self._closed:
                    self._cond.wait(None if t_end is None else max(0.0, t_end - now))
