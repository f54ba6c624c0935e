"""Events: one per (tracked object, ROI, rule), alerted once, closed after a grace time.

:class:`CameraEvents` is the rules stage of one camera with memory. Call
:meth:`CameraEvents.update` once per analysed frame, in capture-time order; it tracks the
detections (:class:`~trakr.rules.tracking.CameraTracker`), checks them against the camera's zones
(:class:`~trakr.rules.zones.CameraRules`) and rules, and returns :class:`EventUpdate` s:

- ``"alert"``: an event started and should be alerted now, with a :class:`~trakr.types.Violation`
  holding the detections of its object(s) in this frame;
- ``"end"``: an event closed, with its :class:`EventRecord` (track ids, start, end, duration,
  best evidence frame).

Rules and their subjects (what one event is about):

=====================  =========================  ============================================
rule (``violation``)   subject                    holds while
=====================  =========================  ============================================
a class (``person``)   one track                  its foot point is in a zone listing the class
``social_distancing``  a pair of tracks           two people in the zone are too close
``dwell``              one track                  it has been in the ROI for ``seconds``
``occupancy``          the ROI                    more than ``max_objects`` are in the ROI
``line_crossing``      one track and a direction  it crossed the line (an instant)
=====================  =========================  ============================================

An event starts when its rule has held for ``min_frames`` analysed frames (and ``seconds``, for
dwell); it ends when the rule has not held for ``grace_s`` (object out, or lost). A vehicle
trigger (``car``, ``truck``...) counts as one rule, so a van whose label flickers is one event.

``alert_time_pause`` (per camera): an event of an object that was in the same (ROI, rule) event
less than ``alert_time_pause`` seconds before it started is recorded but not alerted (reason
``"pause"``): an object is alerted again only after it has been away that long. Independently,
a camera raises at most ``max_alerts_per_minute`` alerts in any minute of capture time; an event
over the cap waits (reason ``"cap"``) and is alerted as soon as the cap allows, if still present.

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.config import CameraConfig
    >>> cam = CameraConfig(CameraId=1, Address="0", roi_config={
    ...     "walkway": {"points": ["0,0.5", "1,0.5", "1,1", "0,1"], "detections": "person"}})
    >>> ev = CameraEvents(cam, id_factory=iter(["e1", "e2"]).__next__)
    >>> def person(y):
    ...     return sv.Detections(xyxy=np.array([[100.0, y - 80, 140, y]]), confidence=np.array([0.8]),
    ...                          class_id=np.array([0]), data={"class_name": np.array(["person"])})
    >>> for t, y in [(0.0, 230), (0.2, 250), (0.4, 260), (0.6, 270), (0.8, 230), (3.0, 230)]:
    ...     for u in ev.update(t, (640, 480), person(y)).updates:
    ...         print(t, u.kind, u.event_id, u.violation.roi, u.violation.violation, u.track_ids)
    0.2 alert e1 walkway person (1,)
    3.0 end e1 walkway person (1,)
    >>> rec = ev.records[-1]; (rec.started_at, rec.ended_at, rec.duration, rec.alerted_at)
    (0.2, 0.6, 0.4, 0.2)
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import supervision as sv

from trakr.config import CameraConfig
from trakr.evidence import annotate, encode_jpeg, make_caption, objects_of, pairs_of, safe_name, write_atomic
from trakr.rules.derived import Deriver, with_derived
from trakr.rules.geometry import FOOT, GroundPlane, close_pairs_m, close_pairs_px, line_zone, take
from trakr.rules.options import EventOptions
from trakr.rules.tracking import CameraTracker
from trakr.rules.zones import SOCIAL_DISTANCING, CameraRules
from trakr.types import Alert, Violation, iso_utc, local_day

DWELL, OCCUPANCY, LINE_CROSSING = "dwell", "occupancy", "line_crossing"
_RECORDS_KEPT = 200


@dataclass
class EventRecord:
    """A finished event: what happened, to which track(s), when, and its best evidence."""

    event_id: str
    camera_id: int
    roi: str | None
    """ROI (or line) name; ``None`` for the camera-wide zone."""
    rule: str
    """The rule's key, e.g. ``"person"``, ``"vehicle"``, ``"dwell:loiter"``, ``"line:gate:in"``."""
    violation: str
    track_ids: tuple[int, ...]
    started_at: float
    """When the rule started to hold (capture time, epoch seconds)."""
    ended_at: float
    """When it last held."""
    alerted_at: float | None
    suppressed: str | None
    """Why it was not alerted: ``"pause"``, ``"cap"`` or ``"disabled"``; ``None`` if alerted."""
    frames: int
    best_at: float
    best_detections: sv.Detections
    best_image: np.ndarray | None = None
    """The frame of the best evidence (not copied: frames are never written to after capture)."""
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return round(self.ended_at - self.started_at, 3)

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "camera_id": self.camera_id,
            "roi": self.roi,
            "rule": self.rule,
            "violation": self.violation,
            "track_ids": list(self.track_ids),
            "started_at": self.started_at,
            "started_at_iso": iso_utc(self.started_at),
            "ended_at": self.ended_at,
            "duration_s": self.duration,
            "alerted_at": self.alerted_at,
            "suppressed": self.suppressed,
            "frames": self.frames,
            "best_at": self.best_at,
            "extra": self.extra,
        }


@dataclass
class EventUpdate:
    """Something the pipeline acts on: an alert to raise now, or a finished event to record."""

    kind: Literal["alert", "end"]
    event_id: str
    violation: Violation
    """Camera, ROI, violation name and the detections of the event's object(s) in this frame
    (for ``"end"``: in its best frame)."""
    track_ids: tuple[int, ...]
    at: float
    """Capture time of the frame this update came from."""
    rule: str
    extra: dict = field(default_factory=dict)
    """Rule details: ``distance_m``/``distance_px`` of a pair, ``count``, ``direction``..."""
    record: EventRecord | None = None


@dataclass
class FrameEvents:
    """What :meth:`CameraEvents.update` returns for one frame."""

    detections: sv.Detections
    """The frame's detections with ``tracker_id`` and the track's class."""
    updates: list[EventUpdate]
    watching: bool
    """A tracked object is where a rule applies to it: analyse this camera at the tracked rate."""


@dataclass
class _Hit:
    """A rule holding for a subject in this frame."""

    key: tuple
    roi: str | None
    rule: str
    violation: str
    rows: np.ndarray
    hold_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class _Event:
    hit: _Hit
    first_at: float
    last_at: float
    frames: int = 0
    event_id: str | None = None
    alerted_at: float | None = None
    suppressed: str | None = None
    best_score: float = -1.0
    best_at: float = 0.0
    best: sv.Detections = field(default_factory=sv.Detections.empty)
    best_image: np.ndarray | None = None
    current: sv.Detections = field(default_factory=sv.Detections.empty)

    @property
    def started(self) -> bool:
        return self.event_id is not None


def _score(dets: sv.Detections, size: tuple[int, int]) -> float:
    """Evidence quality: mean confidence times the square root of the boxes' share of the frame."""
    if len(dets) == 0:
        return 0.0
    conf = float(np.mean(dets.confidence)) if dets.confidence is not None else 1.0
    return conf * float(np.sqrt(dets.box_area.sum() / (size[0] * size[1])))


class CameraEvents:
    """Tracking, rules and events of one camera (not thread-safe: one caller, time order)."""

    def __init__(
        self,
        cam: CameraConfig,
        options: EventOptions | None = None,
        *,
        roi_enabled: bool = True,
        alerts_enabled: bool = True,
        id_factory: Callable[[], str] | None = None,
        derivers: Sequence[Deriver] = (),
    ):
        self.cam = cam
        self.derivers = list(derivers)
        """Second looks after tracking (PPE association, crop classifiers, faces): their rows are triggers too."""
        self.options = options or EventOptions()
        self.rules = CameraRules(cam, roi_enabled=roi_enabled)
        self.tracker = CameraTracker(self.options)
        self.alerts_enabled = alerts_enabled
        self.new_id = id_factory or (lambda: uuid.uuid4().hex)
        self.pause_s = cam.alert_time_pause
        zone_names = [z.name for z in self.rules.zones]
        for kind, rules in (("dwell", cam.dwell), ("occupancy", cam.occupancy)):
            for name, rule in rules.items():
                if rule.roi not in zone_names:
                    have = ", ".join(str(n) for n in zone_names if n) or "none"
                    raise ValueError(
                        f"camera {cam.camera_id}: {kind}.{name}.roi = {rule.roi!r}: no such ROI in roi_config (have: {have})"
                    )
        self.plane = (
            GroundPlane(cam.calibration.image_points, cam.calibration.world_points) if cam.calibration else None
        )
        self._vehicles = set(self.options.vehicle_classes)
        self._lines: dict[tuple[str, tuple[int, int]], sv.LineZone] = {}
        self._open: dict[tuple, _Event] = {}
        self._last_end: dict[tuple, float] = {}
        self._alert_times: deque[float] = deque()
        self.records: deque[EventRecord] = deque(maxlen=_RECORDS_KEPT)
        """The most recent finished events (without their frames: :class:`EventUpdate` carries those)."""
        self.counts: dict[str, int] = {"alerts": 0, "events": 0, "pause": 0, "cap": 0, "disabled": 0}

    # -- public --------------------------------------------------------------------------------
    def update(
        self, at: float, size: tuple[int, int], detections: sv.Detections, image: np.ndarray | None = None
    ) -> FrameEvents:
        """Track ``detections`` of a ``size=(w, h)`` frame captured at ``at``; the event updates."""
        tracked = self.tracker.update(at, size, detections)
        if self.derivers:
            tracked = with_derived(tracked, [d.derive(at, image, tracked) for d in self.derivers])
        hits, watching = self._hits(at, size, tracked)
        updates = self._close(at, stale_only=True)
        for hit in hits:
            ev = self._open.get(hit.key)
            if ev is None:
                ev = self._open[hit.key] = _Event(hit, at, at)
            ev.hit.extra = hit.extra
            ev.last_at, ev.frames = at, ev.frames + 1
            ev.current = take(tracked, hit.rows)
            score = (float(len(hit.rows)) if hit.rule.startswith(OCCUPANCY) else 0.0) + _score(ev.current, size)
            if score > ev.best_score:
                ev.best_score, ev.best_at, ev.best, ev.best_image = score, at, ev.current, image
            if not ev.started and ev.frames >= self.options.min_frames and at - ev.first_at >= hit.hold_s:
                if (alert := self._start(ev, at)) is not None:
                    updates.append(alert)
        for ev in sorted(self._open.values(), key=lambda e: (e.first_at, str(e.hit.key))):
            if ev.suppressed == "cap" and ev.last_at == at and self._cap_allows(at):
                ev.suppressed = None  # the cap freed up while the object is still there: alert late
                updates.append(self._alert(ev, at))
        return FrameEvents(tracked, updates, watching or bool(self._open))

    def close(self, at: float | None = None) -> list[EventUpdate]:
        """End every open event now (camera removed, replay finished); their ``"end"`` updates."""
        return self._close(at if at is not None else float("inf"), stale_only=False)

    # -- events --------------------------------------------------------------------------------
    def _start(self, ev: _Event, at: float) -> EventUpdate | None:
        """Start ``ev``: its alert, or ``None`` with the reason it is not alerted."""
        ev.event_id = self.new_id()
        self.counts["events"] += 1
        last_end = self._last_end.get(ev.hit.key)
        if not self.alerts_enabled:
            ev.suppressed = "disabled"
        elif last_end is not None and ev.first_at - last_end < self.pause_s:
            ev.suppressed = "pause"
        elif not self._cap_allows(at):
            ev.suppressed = "cap"
        else:
            return self._alert(ev, at)
        self.counts[ev.suppressed] += 1
        return None

    def _alert(self, ev: _Event, at: float) -> EventUpdate:
        ev.alerted_at = at
        self._alert_times.append(at)
        self.counts["alerts"] += 1
        h = ev.hit
        assert ev.event_id is not None
        return EventUpdate(
            "alert",
            ev.event_id,
            Violation(self.cam.camera_id, h.roi, h.violation, ev.current),
            _subject(h.key),
            at,
            h.rule,
            dict(h.extra),
        )

    def _cap_allows(self, at: float) -> bool:
        cap = self.options.max_alerts_per_minute
        while self._alert_times and self._alert_times[0] <= at - 60.0:
            self._alert_times.popleft()
        return cap == 0 or len(self._alert_times) < cap

    def _close(self, at: float, stale_only: bool) -> list[EventUpdate]:
        out = []
        grace = self.options.grace_s
        for key, ev in sorted(self._open.items(), key=lambda kv: (kv[1].first_at, str(kv[0]))):
            if stale_only and at - ev.last_at <= grace:
                continue
            del self._open[key]
            if not ev.started:
                continue
            self._last_end[key] = ev.last_at
            h = ev.hit
            assert ev.event_id is not None
            rec = EventRecord(
                ev.event_id,
                self.cam.camera_id,
                h.roi,
                h.rule,
                h.violation,
                _subject(key),
                ev.first_at,
                ev.last_at,
                ev.alerted_at,
                ev.suppressed,
                ev.frames,
                ev.best_at,
                ev.best,
                ev.best_image,
                dict(h.extra),
            )
            self.records.append(replace(rec, best_image=None))  # the update carries the frame; no hoarding
            violation = Violation(self.cam.camera_id, h.roi, h.violation, ev.best)
            out.append(EventUpdate("end", ev.event_id, violation, rec.track_ids, ev.last_at, h.rule, rec.extra, rec))
        horizon = at - max(self.pause_s, grace)
        for key in [k for k, t in self._last_end.items() if t < horizon]:
            del self._last_end[key]
        return out

    # -- rules ---------------------------------------------------------------------------------
    def _family(self, trigger: str) -> str:
        return "vehicle" if trigger in self._vehicles else trigger

    def _hits(self, at: float, size: tuple[int, int], dets: sv.Detections) -> tuple[list[_Hit], bool]:
        hits: list[_Hit] = []
        n = len(dets)
        if n == 0:
            return hits, False
        names = dets.data["class_name"]
        ids = dets.tracker_id if dets.tracker_id is not None else np.zeros(n, dtype=int)
        # only confirmed objects start events: a box the tracker saw once (a duplicate or partial
        # detection of someone already tracked) is no one new; derived rows share their person's id
        confirmed = self.tracker.frames_seen(ids) >= self.options.confirm_frames
        watched = np.zeros(n, dtype=bool)
        inside: dict[str | None, np.ndarray] = {}
        for zone, pz in zip(self.rules.zones, self.rules._zones_for(size)):
            mask = pz.trigger(dets) if pz is not None else np.ones(n, dtype=bool)
            inside[zone.name] = mask & confirmed
            for trig in zone.triggers:
                if trig == SOCIAL_DISTANCING:
                    sel = mask & (names == "person")
                    watched |= sel
                    hits += self._pairs(zone.name, np.flatnonzero(sel & confirmed), dets, ids, size)
                    continue
                sel = mask & (names == trig)
                watched |= sel
                for r in np.flatnonzero(sel & confirmed):
                    hits.append(
                        _Hit(
                            ((int(ids[r]),), zone.name, self._family(trig)),
                            zone.name,
                            self._family(trig),
                            trig,
                            np.array([r]),
                        )
                    )
        for name, rule in self.cam.dwell.items():
            sel = inside[rule.roi] & np.isin(names, rule.detections)
            watched |= sel
            for r in np.flatnonzero(sel):
                key = ((int(ids[r]),), rule.roi, f"{DWELL}:{name}")
                hits.append(
                    _Hit(
                        key,
                        rule.roi,
                        key[2],
                        DWELL,
                        np.array([r]),
                        hold_s=rule.seconds,
                        extra={"seconds": rule.seconds},
                    )
                )
        for name, occ in self.cam.occupancy.items():
            sel = inside[occ.roi] & np.isin(names, occ.detections)
            watched |= sel
            if sel.sum() > occ.max_objects:
                extra = {"count": int(sel.sum()), "max_objects": occ.max_objects}
                hits.append(
                    _Hit(
                        ((), occ.roi, f"{OCCUPANCY}:{name}"),
                        occ.roi,
                        f"{OCCUPANCY}:{name}",
                        OCCUPANCY,
                        np.flatnonzero(sel),
                        extra=extra,
                    )
                )
        for name, line in self.cam.lines.items():
            rows = np.flatnonzero(np.isin(names, line.detections))
            watched[rows] = True
            lz = self._lines.get((name, size))
            if lz is None:
                lz = self._lines[(name, size)] = line_zone(line.points, size)
            crossed_in, crossed_out = lz.trigger(take(dets, rows))  # also with none: ages its memory
            for direction, crossed in (("in", crossed_in), ("out", crossed_out)):
                if line.direction not in (direction, "both"):
                    continue
                for r in rows[crossed]:
                    line_rule = f"line:{name}:{direction}"
                    hits.append(
                        _Hit(
                            ((int(ids[r]),), name, line_rule),
                            name,
                            line_rule,
                            LINE_CROSSING,
                            np.array([r]),
                            extra={"line": name, "direction": direction},
                        )
                    )
        return hits, bool(watched.any())

    def _pairs(
        self, roi: str | None, idx: np.ndarray, dets: sv.Detections, ids: np.ndarray, size: tuple[int, int]
    ) -> list[_Hit]:
        if len(idx) < 2:
            return []
        feet = take(dets, idx).get_anchors_coordinates(FOOT)
        if self.plane is not None and self.cam.sd_min_m is not None:
            pairs, unit = close_pairs_m(self.plane.to_metres(feet, size), self.cam.sd_min_m), "distance_m"
        else:
            pairs, unit = close_pairs_px(feet, self.cam.sd_thresh_limit_x, self.cam.sd_thresh_limit_y), "distance_px"
        out = []
        for a, b, d in pairs:
            ra, rb = int(idx[a]), int(idx[b])
            ta, tb = int(ids[ra]), int(ids[rb])
            if ta > tb:
                (ta, ra), (tb, rb) = (tb, rb), (ta, ra)
            out.append(
                _Hit(
                    ((ta, tb), roi, SOCIAL_DISTANCING),
                    roi,
                    SOCIAL_DISTANCING,
                    SOCIAL_DISTANCING,
                    np.array([ra, rb]),
                    extra={unit: d},
                )
            )
        return out


def _subject(key: tuple) -> tuple[int, ...]:
    return tuple(key[0])


def alert_for(
    update: EventUpdate, cam: CameraConfig, recommendation: str, size: tuple[int, int], created_at: float
) -> Alert:
    """The :class:`~trakr.types.Alert` of an ``"alert"`` update (its id is the event id)."""
    v = update.violation
    roi = cam.roi_config.get(v.roi) if v.roi else None
    return Alert(
        alert_id=update.event_id,
        camera_id=cam.camera_id,
        camera_name=cam.name,
        roi=v.roi,
        violation=v.violation,
        captured_at=update.at,
        created_at=created_at,
        recommendation=recommendation,
        objects=objects_of(v.detections),
        frame_size=size,
        speaker=roi.speaker_ip if roi and roi.speaker_ip else cam.speaker,
        extra={"event_id": update.event_id, "track_ids": list(update.track_ids), "rule": update.rule, **update.extra},
    )


def save_event(
    output_dir: Path, record: EventRecord, polygons: Sequence = (), jpeg_quality: int = 85, camera_name: str = ""
) -> Path:
    """Write a finished event as ``events/<day>/<ms>_cam<id>_<rule>_<id8>.json`` (+ ``.jpg`` of its best frame)."""
    base = (
        Path("events")
        / local_day(record.started_at)
        / f"{int(record.started_at * 1000)}_cam{int(record.camera_id)}_{safe_name(record.rule)}_{record.event_id[:8]}"
    )
    doc = record.to_json()
    doc["best_objects"] = objects_of(record.best_detections)
    if record.best_image is not None:
        rel = base.with_suffix(".jpg")
        extra = {**record.extra, "rule": record.rule, "track_ids": record.track_ids}
        caption = make_caption(record.camera_id, camera_name, record.best_at, record.violation, record.roi, extra)
        image = annotate(
            record.best_image, record.best_detections, list(polygons), caption, pairs_of(extra, record.best_detections)
        )
        write_atomic(output_dir / rel, encode_jpeg(image, jpeg_quality))
        doc["snapshot"] = str(rel)
    path = output_dir / base.with_suffix(".json")
    write_atomic(path, json.dumps(doc, indent=1).encode())
    return path
