"""PPE second looks: ``no<item>`` from positive-class models, and person-crop classifiers.

Two :class:`~trakr.rules.derived.Deriver` s, built per camera by :func:`ppe_derivers`:

- :class:`PpeAssociation` (a model that emits ``person`` and ``helmet``/``vest``... boxes):
  ``no<item>`` is a tracked person with no ``<item>`` box overlapping the item's body region of
  its box (``helmet``: the top 30 % and a little above, ``vest``: the torso; ``ppe.regions`` sets any item). An item
  box is worn when its overlap with the region is at least ``min_overlap`` of the smaller of the
  two (a small helmet inside a wide head region counts; a neighbour's helmet beside it does not).
- :class:`PpeClassifier` (two-stage): a :class:`~trakr.inference.crop_classifier.CropClassifier`
  classifies each tracked person at most once per ``interval_s``; between runs its verdict is
  cached; labels become triggers through the aliases (``detector.class_aliases`` with
  ``ppe.classifier.aliases`` over them).

Both report a violation only after it held ``hold_frames`` consecutive analysed frames of that
track (one frame's missed helmet is no alert), independent of ``events.min_frames``. A derived row
is the person's box and track with ``class_name`` = the trigger, ``region`` = the body region
looked at (or the crop) and ``region_label`` (``"no helmet"``); the evidence image draws it.

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.rules.ppe_options import PpeOptions
    >>> ppe = PpeAssociation({"nohelmet": "helmet"}, PpeOptions(hold_frames=2))
    >>> frame = sv.Detections(xyxy=np.array([[0., 0, 40, 100], [100, 0, 140, 100], [105, 2, 135, 22]]),
    ...     confidence=np.array([0.9, 0.9, 0.8]), tracker_id=np.array([1, 2, 3]),
    ...     data={"class_name": np.array(["person", "person", "helmet"])})
    >>> [ppe.derive(t, None, frame).tracker_id.tolist() for t in (0.0, 0.1)]  # held 2 frames
    [[], [1]]
    >>> out = ppe.derive(0.2, None, frame); out.data["class_name"].tolist(), out.data["region"][0].tolist()
    (['nohelmet'], [0.0, -15.0, 40.0, 30.0])
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import supervision as sv

from trakr.config import CameraConfig, SysConfig
from trakr.evidence import REGION, REGION_LABEL
from trakr.inference.classes import ClassMap, camera_triggers, emitted_as, normalise
from trakr.inference.crop_classifier import CropClassifier
from trakr.rules.derived import Deriver
from trakr.rules.ppe_options import CropClassifierOptions, PpeOptions, Region

log = logging.getLogger(__name__)


def body_regions(persons: np.ndarray, region: Region) -> np.ndarray:
    """The ``region`` (fractions) of each person box (N x 4 xyxy) in frame px.

    >>> body_regions(np.array([[10.0, 20, 30, 120]]), (0, 0.2, 1, 0.65)).tolist()
    [[10.0, 40.0, 30.0, 85.0]]
    """
    p = np.asarray(persons, dtype=float).reshape(-1, 4)
    w, h = (p[:, 2] - p[:, 0])[:, None], (p[:, 3] - p[:, 1])[:, None]
    x0, y0, x1, y1 = region
    return np.column_stack([p[:, :1] + x0 * w, p[:, 1:2] + y0 * h, p[:, :1] + x1 * w, p[:, 1:2] + y1 * h])


def worn(regions: np.ndarray, items: np.ndarray, min_overlap: float) -> np.ndarray:
    """For each region, whether an item box overlaps it by ``min_overlap`` of the smaller box's area.

    >>> worn(np.array([[0.0, 0, 40, 30]]), np.array([[5.0, 2, 35, 22], [60, 0, 90, 20]]), 0.3).tolist()
    [True]
    """
    r = np.asarray(regions, dtype=float).reshape(-1, 4)
    it = np.asarray(items, dtype=float).reshape(-1, 4)
    if len(r) == 0 or len(it) == 0:
        return np.zeros(len(r), dtype=bool)
    ix = np.clip(np.minimum(r[:, None, 2], it[None, :, 2]) - np.maximum(r[:, None, 0], it[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(r[:, None, 3], it[None, :, 3]) - np.maximum(r[:, None, 1], it[None, :, 1]), 0, None)
    area_r = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    area_i = (it[:, 2] - it[:, 0]) * (it[:, 3] - it[:, 1])
    smaller = np.maximum(np.minimum(area_r[:, None], area_i[None, :]), 1e-9)
    return ((ix * iy) / smaller >= min_overlap).any(axis=1)


class _Hold:
    """Consecutive analysed frames a violation held, per (track, trigger); stale tracks forgotten."""

    def __init__(self, frames: int, forget_s: float):
        self.frames, self.forget_s = frames, forget_s
        self._count: dict[tuple[int, str], int] = {}
        self._seen: dict[int, float] = {}

    def update(self, at: float, track: int, trigger: str, violated: bool) -> bool:
        """Count this frame's verdict; ``True`` while the violation has held ``frames`` frames."""
        self._seen[track] = at
        key = (track, trigger)
        n = self._count[key] = self._count.get(key, 0) + 1 if violated else 0
        return n >= self.frames

    def forget(self, at: float) -> list[int]:
        """Drop tracks unseen for ``forget_s``; the ids dropped."""
        gone = [t for t, seen in self._seen.items() if at - seen > self.forget_s]
        for t in gone:
            del self._seen[t]
        if gone:
            dropped = set(gone)
            self._count = {k: v for k, v in self._count.items() if k[0] not in dropped}
        return gone


def _floor(options: PpeOptions, name: str) -> float:
    conf = {normalise(k): v for k, v in options.min_confidence.items()}
    return float(conf.get(normalise(name), 0.0))


def _is(names: np.ndarray, name: str) -> np.ndarray:
    """Rows whose class is ``name``, ignoring case, spaces, ``-`` and ``_``."""
    uniq, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    key = normalise(name)
    return np.array([normalise(u) == key for u in uniq], dtype=bool)[inverse].reshape(-1)


def _persons(options: PpeOptions, dets: sv.Detections) -> np.ndarray:
    """Rows of ``dets`` that are persons big and sure enough to be judged."""
    if len(dets) == 0:
        return np.zeros(0, dtype=int)
    names = np.asarray(dets.data.get("class_name", np.array([""] * len(dets))))
    conf = dets.confidence if dets.confidence is not None else np.ones(len(dets))
    height = dets.xyxy[:, 3] - dets.xyxy[:, 1]
    sel = _is(names, options.person_class) & (conf >= _floor(options, options.person_class))
    return np.flatnonzero(sel & (height >= options.min_person_height_px))


def _rows(
    dets: sv.Detections, rows: list[int], triggers: list[str], regions: list[np.ndarray], labels: list[str], conf=None
) -> sv.Detections:  # noqa: ANN001
    """Derived rows: the persons ``rows`` of ``dets`` as ``triggers``, with their regions and labels."""
    idx = np.asarray(rows, dtype=int)
    tid = dets.tracker_id[idx] if dets.tracker_id is not None else np.zeros(len(idx), dtype=int)
    c = np.asarray(conf, dtype=float) if conf is not None else np.asarray(dets.confidence, dtype=float)[idx]
    return sv.Detections(
        xyxy=dets.xyxy[idx].astype(float).reshape(-1, 4),
        confidence=c,
        class_id=np.full(len(idx), -1),
        tracker_id=tid,
        data={
            "class_name": np.array(triggers, dtype=str),
            REGION: np.asarray(regions, dtype=float).reshape(-1, 4),
            REGION_LABEL: np.array(labels, dtype=str),
        },
    )


class PpeAssociation:
    """``no<item>`` for tracked persons with no ``<item>`` box on the item's body region."""

    def __init__(self, checks: dict[str, str], options: PpeOptions):
        self.checks = dict(checks)
        """Trigger -> item class as the model emits it, e.g. ``{"nohelmet": "helmet"}`` (names match
        ignoring case, spaces, ``-`` and ``_``)."""
        self.options = options
        self.hold = _Hold(options.hold_frames, options.forget_s)

    def derive(self, at: float, image: np.ndarray | None, detections: sv.Detections) -> sv.Detections:
        o = self.options
        people = _persons(o, detections)
        rows: list[int] = []
        triggers: list[str] = []
        regions: list[np.ndarray] = []
        labels: list[str] = []
        if len(people):
            names = np.asarray(detections.data["class_name"])
            conf = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            ids = detections.tracker_id if detections.tracker_id is not None else np.zeros(len(detections), dtype=int)
            for trigger, item in self.checks.items():
                items = detections.xyxy[_is(names, item) & (conf >= _floor(o, item))]
                reg = body_regions(detections.xyxy[people], o.region_of(item))
                on = worn(reg, items, o.min_overlap)
                for k, r in enumerate(people):
                    if self.hold.update(at, int(ids[r]), trigger, not on[k]):
                        rows.append(int(r))
                        triggers.append(trigger)
                        regions.append(reg[k])
                        labels.append(f"no {trigger[2:]}")
        self.hold.forget(at)
        return _rows(detections, rows, triggers, regions, labels)


class PpeClassifier:
    """Two-stage PPE: a crop classifier's verdict per tracked person, refreshed every ``interval_s``."""

    def __init__(
        self, classifier: CropClassifier, options: PpeOptions, aliases: dict[str, str], triggers: Iterable[str]
    ):
        assert options.classifier is not None
        self.classifier, self.options, self.copts = classifier, options, options.classifier
        wanted = set(triggers)
        cm = ClassMap(aliases)
        self.label_triggers = [[t for t in cm.triggers(label) if t in wanted] for label in classifier.labels]
        """Per classifier label, the camera's triggers it stands for."""
        self.hold = _Hold(options.hold_frames, options.forget_s)
        self._verdicts: dict[int, tuple[float, dict[str, tuple[float, str]], np.ndarray]] = {}
        """Track -> (classified at, trigger -> (score, label), crop box)."""

    def _verdict(self, scores: np.ndarray) -> dict[str, tuple[float, str]]:
        c = self.copts
        assert c is not None
        picked = np.flatnonzero(scores >= c.min_score) if c.multi_label else [int(np.argmax(scores))]
        out: dict[str, tuple[float, str]] = {}
        for k in picked:
            if scores[k] < c.min_score:
                continue
            for t in self.label_triggers[k]:
                out[t] = (float(scores[k]), self.classifier.labels[k])
        return out

    def derive(self, at: float, image: np.ndarray | None, detections: sv.Detections) -> sv.Detections:
        c = self.copts
        assert c is not None
        people = _persons(self.options, detections)
        ids = detections.tracker_id if detections.tracker_id is not None else np.zeros(len(detections), dtype=int)
        due = [int(r) for r in people if at - self._verdicts.get(int(ids[r]), (-np.inf,))[0] >= c.interval_s]
        if due and image is not None:
            scores = self.classifier.classify(image, detections.xyxy[due])
            crops = body_regions(detections.xyxy[due], (-c.pad, -c.pad, 1 + c.pad, 1 + c.pad))
            for r, s, box in zip(due, scores, crops):
                self._verdicts[int(ids[r])] = (at, self._verdict(s), box)
        rows: list[int] = []
        triggers: list[str] = []
        regions: list[np.ndarray] = []
        labels: list[str] = []
        conf: list[float] = []
        all_triggers = sorted({t for ts in self.label_triggers for t in ts})
        for r in people:
            tid = int(ids[r])
            verdict = self._verdicts.get(tid)
            if verdict is None:
                continue
            _, found, box = verdict
            for t in all_triggers:
                if self.hold.update(at, tid, t, t in found):
                    score, label = found[t]
                    rows.append(int(r))
                    triggers.append(t)
                    regions.append(box)
                    labels.append(label)
                    conf.append(score)
        for tid in self.hold.forget(at):
            self._verdicts.pop(tid, None)
        return _rows(detections, rows, triggers, regions, labels, conf)


@lru_cache(maxsize=8)
def _model_names(path: str | None, mtime: float) -> tuple[str, ...]:
    from trakr.inference.base import class_names_from_metadata, model_file, model_metadata

    return tuple(class_names_from_metadata(model_metadata(model_file(path))))


def model_class_names(config: SysConfig) -> list[str] | None:
    """Class names of the configured detector model (``None`` when its file cannot be read)."""
    from trakr.inference.base import model_file

    try:
        path = model_file(config.trakr.detector.model_path)
        return list(_model_names(config.trakr.detector.model_path, path.stat().st_mtime))
    except Exception as e:  # reported once per camera build; association then needs ppe.association "on"
        log.warning("PPE: cannot read the model's class names (%s)", e)
        return None


_classifiers: dict[str, CropClassifier] = {}


def shared_classifier(opts: CropClassifierOptions) -> CropClassifier:
    """One :class:`CropClassifier` per distinct options, shared by every camera (sessions are thread-safe)."""
    key = json.dumps(opts.model_dump(), sort_keys=True)
    clf = _classifiers.get(key)
    if clf is None:
        clf = _classifiers[key] = CropClassifier.from_options(opts)
        log.info("PPE crop classifier %s: %d labels %s", clf.model_path.name, len(clf.labels), clf.labels)
    return clf


def association_checks(config: SysConfig, cam: CameraConfig, classifier_labels: Iterable[str] = ()) -> dict[str, str]:
    """Trigger -> item of the ``no<item>`` triggers of ``cam`` that association derives."""
    o, det = config.trakr.ppe, config.trakr.detector
    if o.association == "off":
        return {}
    wanted = [t for t in camera_triggers(cam) if t.startswith("no") and len(t) > 2]
    if o.association == "on":
        return {t: t[2:] for t in wanted}
    names = model_class_names(config)
    if names is None:
        return {}
    emitted = ClassMap(det.class_aliases, None, det.classes).mapped_names(names)
    aliases = {**det.class_aliases, **(o.classifier.aliases if o.classifier else {})}
    by_classifier = {t for label in classifier_labels for t in ClassMap(aliases).triggers(label)}
    if emitted_as(o.person_class, emitted) is None:
        return {}
    out = {}
    for t in wanted:
        item = emitted_as(t[2:], emitted)
        if item is not None and t not in emitted and t not in by_classifier:
            out[t] = item
    return out


def ppe_derivers(config: SysConfig, cam: CameraConfig) -> list[Deriver]:
    """The PPE derivers camera ``cam`` needs: association and/or the crop classifier."""
    o = config.trakr.ppe
    out: list[Deriver] = []
    clf = shared_classifier(o.classifier) if o.classifier is not None else None
    checks = association_checks(config, cam, clf.labels if clf else ())
    if checks:
        out.append(PpeAssociation(checks, o))
    if clf is not None and o.classifier is not None:
        aliases = {**config.trakr.detector.class_aliases, **o.classifier.aliases}
        deriver = PpeClassifier(clf, o, aliases, camera_triggers(cam))
        if any(deriver.label_triggers):
            out.append(deriver)
    return out
