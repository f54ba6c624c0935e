"""Cross-camera batcher: gated frames from all cameras, fair, up to ``batch_size``, on a deadline.

The batcher owns the cameras' latest-frame slots. :meth:`Batcher.next_batch` scans the slots
round-robin from where the previous batch stopped (so with more cameras than ``batch_size`` every
camera gets its turn), takes each waiting frame, runs it through the change gate, and returns
when the batch is full or ``deadline_s`` after its first frame. A batch holds at most one frame
per camera: the slot only keeps the newest frame anyway.

Example:
    >>> import numpy as np
    >>> from trakr.types import Frame
    >>> from trakr.capture.gate import ChangeGate
    >>> b = Batcher(batch_size=2, deadline_s=0.01, gate=ChangeGate(enabled=False))
    >>> slots = [b.add_camera(i) for i in range(3)]
    >>> for i, s in enumerate(slots):
    ...     s.put(Frame(i, np.zeros((8, 8, 3), np.uint8), 0.0, 0))
    >>> [f.camera_id for f in b.next_batch(timeout=1)], [f.camera_id for f in b.next_batch(timeout=1)]
    ([0, 1], [2])
"""

from __future__ import annotations

import threading
import time

from trakr.capture.gate import ChangeGate
from trakr.capture.slot import LatestFrameSlot
from trakr.types import Frame


class Batcher:
    """Collects gated frames from per-camera slots into batches (thread-safe)."""

    def __init__(self, batch_size: int, deadline_s: float, gate: ChangeGate):
        self.batch_size = batch_size
        self.deadline_s = deadline_s
        self.gate = gate
        self._cond = threading.Condition()
        self._version = 0  # bumped on every put, so a put between scan and wait is not missed
        self._scan_lock = threading.Lock()
        self._slots: dict[int, LatestFrameSlot] = {}
        self._order: list[int] = []
        self._rr = 0
        self._closed = False
        self.batches = 0
        self.frames = 0

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
            self.gate.forget(camera_id)

    @property
    def slots(self) -> dict[int, LatestFrameSlot]:
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
    def _scan(self, batch: list[Frame]) -> None:
        with self._scan_lock:
            n = len(self._order)
            if not n:
                return
            start = self._rr % n
            taken = {f.camera_id for f in batch}
            for k in range(n):
                if len(batch) >= self.batch_size:
                    break
                cam = self._order[(start + k) % n]
                if cam in taken:
                    continue
                frame = self._slots[cam].take()
                if frame is not None and self.gate.check(frame):
                    batch.append(frame)
                    taken.add(cam)
                    self._rr = (start + k + 1) % n

    def next_batch(self, timeout: float | None = None) -> list[Frame] | None:
        """Block until a batch is ready; ``None`` on timeout with nothing, or after ``close``."""
        t_end = None if timeout is None else time.monotonic() + timeout
        batch: list[Frame] = []
        first_at: float | None = None
        while True:
            with self._cond:
                version = self._version
            self._scan(batch)
            now = time.monotonic()
            if batch and first_at is None:
                first_at = now
            if len(batch) >= self.batch_size or (batch and now - first_at >= self.deadline_s):
                break
            if self._closed:
                break
            waits = []
            if first_at is not None:
                waits.append(first_at + self.deadline_s - now)
            if t_end is not None:
                if not batch and now >= t_end:
                    return None
                waits.append(t_end - now)
            with self._cond:
                if self._version == version and not self._closed:
                    self._cond.wait(max(0.0, min(waits)) if waits else None)
        if not batch:
            return None
        self.batches += 1
        self.frames += len(batch)
        return batch
