"""Multi-object tracking per camera: a stable track id for every detection.

:class:`CameraTracker` runs Roboflow's ``trackers`` ByteTrack (the successor of supervision's) on
the frame's capture times, so the irregular gaps a change gate makes are predicted over, not
counted as one frame each. On top of it:

- **Class groups.** Vehicles (``car``/``truck``/``bus``/``motorcycle`` by default) are tracked as
  one group, so a van the model calls ``car`` then ``truck`` keeps one identity; other classes
  are tracked each on their own, never matched to another class. A track's class is the one with
  the most accumulated confidence; it replaces ``data["class_name"]`` (the model's own label
  stays in ``data["detected_class"]``). Two boxes of one group on top of each other (IoU >= 0.6,
  e.g. the van detected as both ``car`` and ``truck``) are one object: they share its id.
- **Every detection gets an id** (``tracker_id`` >= 1), also in the frame where a track is born
  and ByteTrack has not confirmed it yet; the id carries over when it confirms.
- **Re-linking.** A new track that appears away from the frame edge, where a track lost less than
  ``relink_s`` ago was heading (within ``relink_distance`` object heights), or on top of where it
  was last seen, continues that object's id: a person walking out from behind a pillar or
  another person is the same person. An object that stood still (a parked car) is re-found at
  its place up to ``relink_still_s`` after it was lost.

Ids are unique per camera and never reused. Deterministic: the same detections at the same times
give the same ids.

Example:
    >>> import numpy as np, supervision as sv
    >>> t = CameraTracker()
    >>> def dets(x, name):
    ...     return sv.Detections(xyxy=np.array([[x, 100.0, x + 60, 140]]), confidence=np.array([0.9]),
    ...                          class_id=np.array([2]), data={"class_name": np.array([name])})
    >>> out = [t.update(i * 0.1, (640, 480), dets(200 + 2 * i, n)) for i, n in enumerate(["car", "truck", "car"])]
    >>> [int(o.tracker_id[0]) for o in out], [str(o.data["class_name"][0]) for o in out]
    ([1, 1, 1], ['car', 'car', 'car'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv
from scipy.optimize import linear_sum_assignment
from trackers import ByteTrackTracker

from trakr.rules.geometry import take
from trakr.rules.options import EventOptions

_NOMINAL_FPS = 10.0
"""Reference rate for ByteTrack's Kalman steps (elapsed seconds are converted at this rate)."""
_SAME_PLACE_IOU = 0.3
"""A new box overlapping a lost object's last box this much is that object, wherever it is."""
_STILL = 0.2
"""An object moving less than this many of its heights per second stands still."""
_NOT_A_MATCH = 1e6
_DUPLICATE_IOU = 0.6
"""Two boxes of one group overlapping this much are one object (a van detected as car and truck)."""


@dataclass
class _Track:
    """What the tracker remembers of one stable id."""

    group: str
    box: np.ndarray
    seen_at: float
    born_at: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    """Centre velocity in px/s (smoothed)."""
    votes: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    """Analysed frames this object was seen in (a re-linked track keeps counting)."""

    @property
    def label(self) -> str:
        return max(self.votes.items(), key=lambda kv: kv[1])[0]  # ties: the label seen first

    def observe(self, box: np.ndarray, at: float) -> None:
        dt = at - self.seen_at
        if dt > 0:
            v = (_centre(box) - _centre(self.box)) / dt
            self.velocity = 0.5 * self.velocity + 0.5 * v
        self.box, self.seen_at = box, at
        self.frames += 1

    def vote(self, name: str, conf: float) -> None:
        self.votes[name] = self.votes.get(name, 0.0) + conf


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def _height(box: np.ndarray) -> float:
    return max(1.0, float(box[3] - box[1]))


class CameraTracker:
    """Tracks one camera's detections; call :meth:`update` once per analysed frame, in time order."""

    def __init__(self, options: EventOptions | None = None):
        self.options = options or EventOptions()
        self._vehicles = set(self.options.vehicle_classes)
        self._trackers: dict[str, ByteTrackTracker] = {}
        self._raw_to_id: dict[tuple[str, int], int] = {}
        self.tracks: dict[int, _Track] = {}
        """Stable id -> last state, for ids seen within the re-link window."""
        self._next_id = 1
        self._class_ids: dict[str, int] = {}
        self.relinked = 0
        self._prev_at = float("-inf")
        """How many new tracks were found to continue a lost object."""

    def frames_seen(self, track_ids: np.ndarray) -> np.ndarray:
        """For each id, the analysed frames its object was seen in (0 for an unknown id)."""
        return np.array([self.tracks[i].frames if i in self.tracks else 0 for i in track_ids.tolist()], dtype=int)

    def group_of(self, class_name: str) -> str:
        """The tracking group of a class: ``"vehicle"`` for the vehicle classes, else the class."""
        return "vehicle" if class_name in self._vehicles else class_name

    def _tracker(self, group: str) -> ByteTrackTracker:
        if group not in self._trackers:
            o = self.options
            self._trackers[group] = ByteTrackTracker(
                lost_track_buffer=max(1, round(o.lost_s * 30)),  # counted in 30 fps frames
                frame_rate=_NOMINAL_FPS,
                track_activation_threshold=0.0,  # every detection that passed the detector starts a track
                high_conf_det_threshold=0.0,
                minimum_consecutive_frames=2,
                minimum_iou_threshold=o.match_iou,
            )
        return self._trackers[group]

    def update(self, at: float, size: tuple[int, int], detections: sv.Detections) -> sv.Detections:
        """``detections`` of a frame captured at ``at`` (seconds), with ``tracker_id`` and the track's class."""
        n = len(detections)
        names = detections.data.get("class_name", np.array(["object"] * n)) if n else np.array([], dtype=str)
        conf = detections.confidence if detections.confidence is not None else np.ones(n)
        if detections.class_id is not None:
            for name, cid in zip(names, detections.class_id):
                self._class_ids.setdefault(str(name), int(cid))
        groups = np.array([self.group_of(str(x)) for x in names], dtype=object)
        raw = np.full(n, -1, dtype=int)
        primary = np.arange(n)  # a duplicate box points at the box it duplicates
        for group in sorted(set(groups.tolist()) | set(self._trackers)):
            rows = np.flatnonzero(groups == group)
            if len(rows) > 1:
                keep = sv.box_non_max_suppression(
                    np.column_stack([detections.xyxy[rows], conf[rows]]), iou_threshold=_DUPLICATE_IOU
                )
                if not keep.all():
                    iou = sv.box_iou_batch(detections.xyxy[rows[~keep]], detections.xyxy[rows[keep]])
                    primary[rows[~keep]] = rows[keep][iou.argmax(axis=1)]
                    rows = rows[keep]
            sub = take(detections, rows)
            sub.data["_row"] = rows
            res = self._tracker(group).update(sub, timestamp=at)
            if len(res):
                raw[res.data["_row"]] = res.tracker_id
        firsts = np.flatnonzero(primary == np.arange(n))
        ids: np.ndarray = np.zeros(n, dtype=int)
        ids[firsts] = self._assign(at, size, detections.xyxy[firsts], groups[firsts], raw[firsts])
        ids = ids[primary]
        for f in firsts:
            self.tracks[ids[f]].observe(detections.xyxy[f].copy(), at)
        for i in range(n):
            self.tracks[ids[i]].vote(str(names[i]), float(conf[i]))
        self._forget(at)
        self._prev_at = at
        out = take(detections, np.arange(n))
        out.tracker_id = ids
        if n:
            labels = np.array([self.tracks[i].label for i in ids])
            out.data["detected_class"] = np.asarray(names)
            out.data["class_name"] = labels
            if out.class_id is not None:
                out.class_id = np.array([self._class_ids.get(str(x), c) for x, c in zip(labels, out.class_id)])
        return out

    # -- ids -----------------------------------------------------------------------------------
    def _new_id(self, group: str, box: np.ndarray, at: float) -> int:
        sid = self._next_id
        self._next_id += 1
        self.tracks[sid] = _Track(group, box.copy(), at, at)
        return sid

    def _assign(
        self, at: float, size: tuple[int, int], boxes: np.ndarray, groups: np.ndarray, raw: np.ndarray
    ) -> np.ndarray:
        ids = np.zeros(len(boxes), dtype=int)
        taken: set[int] = set()
        fresh: list[int] = []
        for i in range(len(boxes)):
            sid = self._raw_to_id.get((groups[i], int(raw[i]))) if raw[i] >= 0 else None
            if sid is not None and sid not in taken and sid in self.tracks:
                ids[i] = sid
                taken.add(sid)
            else:
                fresh.append(i)
        if not fresh:
            return ids
        lost = [sid for sid, tr in self.tracks.items() if sid not in taken and tr.seen_at < at]
        cost = np.full((len(fresh), len(lost)), _NOT_A_MATCH)
        for a, i in enumerate(fresh):
            for b, sid in enumerate(lost):
                cost[a, b] = self._relink_cost(self.tracks[sid], boxes[i], groups[i], at, size)
        pairs: dict[int, int] = {}
        if lost:
            rows, cols = linear_sum_assignment(cost)
            pairs = {fresh[r]: lost[c] for r, c in zip(rows, cols) if cost[r, c] < _NOT_A_MATCH}
        for i in fresh:
            sid = pairs.get(i)
            if sid is None:
                sid = self._new_id(groups[i], boxes[i], at)
            elif self.tracks[sid].seen_at < self._prev_at:  # missed in at least one frame: re-found
                self.relinked += 1
            ids[i] = sid
            if raw[i] >= 0:  # this raw track is that object from now on; no other raw track is
                for key in [k for k, v in self._raw_to_id.items() if v == sid]:
                    del self._raw_to_id[key]
                self._raw_to_id[(groups[i], int(raw[i]))] = sid
        return ids

    def _relink_cost(self, track: _Track, box: np.ndarray, group: str, at: float, size: tuple[int, int]) -> float:
        """Cost of saying ``box`` is the lost ``track``; ``_NOT_A_MATCH`` when it cannot be."""
        o = self.options
        gap = at - track.seen_at
        still = float(np.linalg.norm(track.velocity)) < _STILL * _height(track.box)
        if track.group != group or gap > (max(o.relink_s, o.relink_still_s) if still else o.relink_s):
            return _NOT_A_MATCH
        w, h = size
        mx, my = o.edge_margin * w, o.edge_margin * h
        if (box[0] < mx or box[1] < my or box[2] > w - mx or box[3] > h - my) and gap > o.lost_s:
            return _NOT_A_MATCH  # at the edge after a while: something entering, not something reappearing
        expected = _centre(track.box) + track.velocity * gap
        if not (0 <= expected[0] <= w and 0 <= expected[1] <= h):
            return _NOT_A_MATCH  # it was walking out of the frame: it has left
        iou = float(sv.box_iou_batch(box[None], track.box[None])[0, 0])
        if iou >= _SAME_PLACE_IOU:  # where it was: flicker, or a still object seen again
            return 1.0 - iou
        if not 0.5 <= _height(box) / _height(track.box) <= 2.0:
            return _NOT_A_MATCH
        d = float(np.linalg.norm(_centre(box) - expected)) / max(_height(box), _height(track.box))
        return 1.0 + d if d <= o.relink_distance else _NOT_A_MATCH

    def _forget(self, at: float) -> None:
        keep = max(self.options.relink_s, self.options.relink_still_s)
        for sid in [s for s, tr in self.tracks.items() if at - tr.seen_at > keep]:
            del self.tracks[sid]
        alive = {(g, t.tracker_id) for g, trk in self._trackers.items() for t in trk.tracks}
        for key in [k for k in self._raw_to_id if k not in alive]:
            del self._raw_to_id[key]
