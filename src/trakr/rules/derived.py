"""Derived detections: second looks at tracked objects that add rows the rules can trigger on.

A :class:`Deriver` sees each analysed frame after tracking (detections carry ``tracker_id``) and
returns extra rows, for example a ``nohelmet`` row for a person with no helmet on the head (PPE
association), a classifier's verdict on a person crop, or ``unknown_face`` for a face that matches
nobody enrolled. A derived row is an ordinary detection: its ``class_name`` is the trigger, its
box the subject's (so a zone places it by the person's foot point) and its ``tracker_id`` the
subject's track, so the event engine gives it one event per (track, ROI, trigger) like any
class. :func:`with_derived` appends the rows, filling any ``data`` key one side lacks.

Example:
    >>> import numpy as np, supervision as sv
    >>> class NoHelmetForAll:
    ...     def derive(self, at, image, detections):
    ...         people = detections[detections.data["class_name"] == "person"]
    ...         return sv.Detections(xyxy=people.xyxy, confidence=people.confidence,
    ...                              tracker_id=people.tracker_id,
    ...                              data={"class_name": np.array(["nohelmet"] * len(people))})
    >>> tracked = sv.Detections(xyxy=np.array([[0., 0, 10, 30]]), confidence=np.array([0.9]),
    ...                         tracker_id=np.array([4]), data={"class_name": np.array(["person"]),
    ...                                                          "track_class": np.array(["person"])})
    >>> out = with_derived(tracked, [NoHelmetForAll().derive(0.0, None, tracked)])
    >>> out.data["class_name"].tolist(), out.tracker_id.tolist(), out.data["track_class"].tolist()
    (['person', 'nohelmet'], [4, 4], ['person', ''])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import supervision as sv


class Deriver(Protocol):
    """A second look at a camera's tracked detections (called in capture-time order, one camera)."""

    def derive(self, at: float, image: np.ndarray | None, detections: sv.Detections) -> sv.Detections:
        """Extra rows for the frame captured at ``at`` (``image`` BGR, may be ``None`` in tests)."""
        ...


def _fill(dets: sv.Detections, keys: dict[str, np.ndarray]) -> sv.Detections:
    """``dets`` with every key of ``keys`` present in ``data`` (missing ones filled empty-like)."""
    n = len(dets)
    data = dict(dets.data)
    for key, like in keys.items():
        if key not in data:  # same dtype and row shape (a region key holds an (N, 4) array)
            fill = np.zeros((n, *like.shape[1:]), dtype=like.dtype)
            if like.dtype.kind == "O":
                fill.fill(None)
            data[key] = fill
    conf = dets.confidence if dets.confidence is not None else np.ones(n)
    cls = dets.class_id if dets.class_id is not None else np.full(n, -1)
    tid = dets.tracker_id if dets.tracker_id is not None else np.zeros(n, dtype=int)
    return sv.Detections(xyxy=dets.xyxy, confidence=conf, class_id=cls, tracker_id=tid, data=data)


def with_derived(tracked: sv.Detections, derived: Sequence[sv.Detections]) -> sv.Detections:
    """``tracked`` followed by every non-empty set of ``derived`` rows, as one :class:`sv.Detections`."""
    extra = [d for d in derived if len(d)]
    if not extra:
        return tracked
    parts = [tracked, *extra]
    keys: dict[str, np.ndarray] = {}
    for p in parts:
        for k, v in p.data.items():
            keys.setdefault(k, np.asarray(v))
    return sv.Detections.merge([_fill(p, keys) for p in parts if len(p) or p is tracked])
