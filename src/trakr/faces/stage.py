"""The face stage: a :class:`~trakr.rules.derived.Deriver` that names tracked people.

It looks only at tracked ``person`` rows whose foot point is inside a zone listing a face
trigger (``unknown_face`` or ``face:<name>``), and only at a few moments of each track:

- the first time the person is seen there (at most ``max_looks_per_frame`` people a frame);
- while no usable face was found: again after ``retry_s``, backing off to ``retry_max_s``;
- once a face was seen: again only when a clearly better face can be expected (the person's box
  grew by ``better_ratio``: nearer to the camera), and for an unknown face also every
  ``retry_max_s`` (the person may have turned to the camera). A new look replaces the verdict
  only if its face is better (size x frontal pose).

A look crops the person's head region, detects faces (SCRFD), keeps the largest whose centre is
in the person's box, and skips it if it is under ``min_face_px`` or blurry: small faces are never
guessed. The face is aligned and embedded (ArcFace) and matched against the gallery. From then on,
every frame the track is seen gets a derived row: ``face:<name>`` or ``unknown_face`` with
``sub_label`` (the name), ``similarity``, ``region`` (the face box, following the person) and
``region_label``. The models are loaded once per process and option set (:func:`engine_for`),
shared by every camera.

Example:
    >>> import numpy as np, supervision as sv
    >>> from trakr.config import CameraConfig
    >>> cam = CameraConfig(CameraId=1, Address="0", faces=True, roi_config={
    ...     "gate": {"points": "NA", "detections": ["unknown_face", "face:Asha Rao"]}})
    >>> face_zones(cam, roi_enabled=True)[0].name
    'gate'
    >>> face_zones(CameraConfig(CameraId=2, Address="0", Detection="person"), True)
    []
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.config import CameraConfig, SysConfig
from trakr.faces.arcface import ArcFaceEmbedder
from trakr.faces.gallery import Gallery
from trakr.faces.models import BUNDLED_LICENCE, FaceDetector, FaceEmbedder, FaceModelError
from trakr.faces.options import FACE_PREFIX, UNKNOWN_FACE, FaceOptions, is_face_trigger
from trakr.faces.scrfd import ScrfdDetector
from trakr.rules.zones import ANCHOR, CameraRules, Zone, scale_polygon

log = logging.getLogger(__name__)

FORGET_S = 60.0
"""A track not seen for this long is forgotten."""


def gallery_path(config: SysConfig) -> Path:
    """Where the gallery lives: ``trakr.faces.gallery_path``, else ``<output>/faces.db`` (beside the outbox)."""
    f = config.trakr.faces
    return Path(f.gallery_path) if f.gallery_path else Path(config.trakr.output.directory) / "faces.db"


def check_licence(options: FaceOptions) -> None:
    """Refuse the bundled models unless the site acknowledged their licence (FaceModelError)."""
    if options.detector_model and options.embedder_model:
        return
    if not options.accept_noncommercial_models:
        raise FaceModelError(
            f"trakr.faces.accept_noncommercial_models is false: {BUNDLED_LICENCE}. Set "
            "trakr.faces.accept_noncommercial_models: true to acknowledge this, or set "
            "trakr.faces.detector_model and trakr.faces.embedder_model to ONNX models you may use"
        )


@dataclass
class FaceEngine:
    """The models and gallery every camera's face stage shares."""

    detector: FaceDetector
    embedder: FaceEmbedder
    gallery: Gallery
    options: FaceOptions
    lock: threading.Lock
    reloaded_at: float = float("-inf")

    def match(self, at: float, embeddings: np.ndarray) -> list[tuple[str | None, float]]:
        with self.lock:
            if at - self.reloaded_at >= self.options.reload_s or at < self.reloaded_at:
                self.gallery.refresh()
                self.reloaded_at = at
            return self.gallery.match(embeddings, self.options.threshold)


def open_models(options: FaceOptions) -> tuple[FaceDetector, FaceEmbedder]:
    """The detector and embedder of ``options`` (bundled ones only after the acknowledgement)."""
    check_licence(options)
    if not (options.detector_model and options.embedder_model):
        log.warning("faces: %s; acknowledged by trakr.faces.accept_noncommercial_models", BUNDLED_LICENCE)
    det = ScrfdDetector(
        options.detector_model, options.detector_size, options.detector_confidence, threads=options.threads
    )
    emb = ArcFaceEmbedder(options.embedder_model, threads=options.threads)
    return det, emb


_ENGINES: dict[tuple, FaceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(config: SysConfig) -> FaceEngine:
    """The shared :class:`FaceEngine` of ``config`` (models opened once, whatever the camera count)."""
    o = config.trakr.faces
    path = gallery_path(config)
    key = (o.model_dump_json(exclude={"threshold", "better_ratio", "retry_s", "retry_max_s", "reload_s"}), str(path))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            det, emb = open_models(o)
            engine = FaceEngine(det, emb, Gallery(path, emb.model_id), o, threading.Lock())
            _ENGINES[key] = engine
            n = len(engine.gallery.entries())
            log.info("faces: models %s + %s, gallery %s (%d people)", det.model_path.name, emb.model_id, path, n)  # type: ignore[attr-defined]
        engine.options = o  # matching options apply live
        return engine


def face_zones(cam: CameraConfig, roi_enabled: bool) -> list[Zone]:
    """The camera's zones (camera-wide first, then ROIs) that list a face trigger."""
    return [z for z in CameraRules(cam, roi_enabled=roi_enabled).zones if any(is_face_trigger(t) for t in z.triggers)]


def face_quality(face_px: float, keypoints: np.ndarray) -> float:
    """Face size times frontal pose (1 = nose between the eyes, less as the head turns).

    >>> kps = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], float)
    >>> face_quality(100, kps), face_quality(100, kps + [[0, 0], [0, 0], [15, 0], [0, 0], [0, 0]])
    (100.0, 62.5)
    """
    left, right, nose = keypoints[0], keypoints[1], keypoints[2]
    eye_dist = max(float(np.linalg.norm(right - left)), 1e-6)
    yaw = abs(float(nose[0] - (left[0] + right[0]) / 2)) / eye_dist
    return float(face_px) * float(np.clip(1.0 - yaw, 0.2, 1.0))


@dataclass
class Verdict:
    """What one look at a person found."""

    name: str | None
    similarity: float
    score: float
    quality: float
    face_rel: np.ndarray
    """Face box relative to the person box: (x0, y0, x1, y1) in units of the box's width/height."""


@dataclass
class _Track:
    seen_at: float
    looked_at: float = float("-inf")
    misses: int = 0
    box_h: float = 0.0
    """Person box height at the look that gave the verdict (or the last look)."""
    verdict: Verdict | None = None
    stale: bool = False
    """The track came back after a gap: look again, and trust the new look over the old verdict."""


class FaceStage:
    """Face recognition for one camera (called by its event engine, in capture-time order)."""

    def __init__(self, cam: CameraConfig, engine: FaceEngine, roi_enabled: bool = True, max_looks_per_frame: int = 4):
        self.cam, self.engine, self.max_looks = cam, engine, max_looks_per_frame
        self.zones = face_zones(cam, roi_enabled)
        self._pixel: dict[tuple[int, int], list[sv.PolygonZone | None]] = {}
        self.tracks: dict[int, _Track] = {}
        self.counts = {"looks": 0, "faces": 0, "small": 0, "blurry": 0, "named": 0, "unknown": 0}

    def _in_zones(self, size: tuple[int, int], dets: sv.Detections) -> np.ndarray:
        if size not in self._pixel:
            self._pixel[size] = [
                sv.PolygonZone(scale_polygon(z.polygon, size), triggering_anchors=(ANCHOR,)) if z.polygon else None
                for z in self.zones
            ]
        mask = np.zeros(len(dets), bool)
        for pz in self._pixel[size]:
            mask |= pz.trigger(dets) if pz is not None else True
        return mask

    def _due(self, t: _Track, at: float, box_h: float) -> bool:
        o = self.engine.options
        since = at - t.looked_at
        if t.stale:
            return True
        if t.verdict is None:
            return since >= min(o.retry_s * 2.0**t.misses, o.retry_max_s)
        if since < o.retry_s:
            return False
        # a clearly bigger face, or a periodic check (the tracker may have swapped two people)
        return box_h >= o.better_ratio * t.box_h or since >= o.retry_max_s

    def derive(self, at: float, image: np.ndarray | None, detections: sv.Detections) -> sv.Detections:
        n = len(detections)
        if image is None or n == 0 or detections.tracker_id is None or not self.zones:
            return _rows(np.zeros((0, 4)), [], [], [], [], [])
        h, w = image.shape[:2]
        names = detections.data.get("class_name", np.array([""] * n))
        ids = detections.tracker_id
        person = (names == "person") & (ids > 0)
        eligible = person & self._in_zones((w, h), detections)
        boxes = detections.xyxy
        heights = boxes[:, 3] - boxes[:, 1]
        for r in np.flatnonzero(person):
            t = self.tracks.setdefault(int(ids[r]), _Track(at))
            if at - t.seen_at > self.engine.options.retry_s:  # back after a gap (a re-linked track):
                t.stale = True  # maybe someone else now; the next look decides, whatever its quality
            t.seen_at = at
        # who is due a look: never looked first, then the largest boxes
        due = [r for r in np.flatnonzero(eligible) if self._due(self.tracks[int(ids[r])], at, float(heights[r]))]
        due.sort(key=lambda r: (self.tracks[int(ids[r])].looked_at > -math.inf, -heights[r]))
        for r in due[: self.max_looks]:
            self._look(at, image, boxes[r], self.tracks[int(ids[r])])
        for tid in [k for k, t in self.tracks.items() if at - t.seen_at > FORGET_S or at < t.seen_at - FORGET_S]:
            del self.tracks[tid]
        rows = [r for r in np.flatnonzero(person) if self.tracks[int(ids[r])].verdict is not None]
        verdicts = [self.tracks[int(ids[r])].verdict for r in rows]
        out_boxes = boxes[rows] if rows else np.zeros((0, 4))
        regions = [_place(v.face_rel, boxes[r]) for r, v in zip(rows, verdicts) if v is not None]
        return _rows(
            out_boxes,
            [int(ids[r]) for r in rows],
            [v.name for v in verdicts if v is not None],
            [v.similarity for v in verdicts if v is not None],
            [v.score for v in verdicts if v is not None],
            regions,
        )

    def _look(self, at: float, image: np.ndarray, box: np.ndarray, track: _Track) -> None:
        o = self.engine.options
        track.looked_at = at
        self.counts["looks"] += 1
        v = self.look(image, box, at)
        if track.stale:
            track.stale, track.verdict = False, None
        if v is None:
            track.misses += 1
            if track.verdict is None:
                track.box_h = float(box[3] - box[1])
            return
        track.misses = 0
        if track.verdict is None or v.quality > track.verdict.quality:
            track.verdict, track.box_h = v, float(box[3] - box[1])
            self.counts["named" if v.name else "unknown"] += 1
            log.debug(
                "camera %s: face %s (similarity %.2f, %d px)",
                self.cam.label,
                v.name or "unknown",
                v.similarity,
                int(v.quality),
            )
        elif o.better_ratio > 1:
            track.box_h = max(track.box_h, float(box[3] - box[1]) / o.better_ratio)

    def look(self, image: np.ndarray, box: np.ndarray, at: float = 0.0) -> Verdict | None:
        """Detect, check, embed and match the face of the person in ``box`` (``None``: no usable face)."""
        o, e = self.engine.options, self.engine
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        if min(bw, bh) < o.min_face_px:
            self.counts["small"] += 1
            return None
        # the head is in the top of a standing person, in the middle of a portrait: top min(h, 1.5 w)
        cy1 = y0 + min(bh, max(0.5 * bh, 1.5 * bw))
        pad = 0.1 * bw
        cx0, cy0 = int(max(0, x0 - pad)), int(max(0, y0 - pad))
        cx1, cy1i = int(min(w, x1 + pad)), int(min(h, cy1 + pad))
        crop = image[cy0:cy1i, cx0:cx1]
        faces = e.detector.detect(crop)
        if not len(faces):
            return None
        fb = faces.xyxy + np.array([cx0, cy0, cx0, cy0], np.float32)
        centre = (fb[:, :2] + fb[:, 2:]) / 2
        inside = (centre[:, 0] >= x0) & (centre[:, 0] <= x1) & (centre[:, 1] >= y0) & (centre[:, 1] <= y1)
        if not inside.any():
            return None
        side = np.minimum(fb[:, 2] - fb[:, 0], fb[:, 3] - fb[:, 1])
        i = int(np.argmax(np.where(inside, side, -1)))
        self.counts["faces"] += 1
        if side[i] < o.min_face_px:
            self.counts["small"] += 1
            return None
        kps = faces.data["keypoints"][i] + np.array([cx0, cy0], np.float32)
        emb, aligned = e.embedder.embed(image, kps[None])
        sharp = float(cv2.Laplacian(cv2.cvtColor(aligned[0], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())
        if sharp < o.min_sharpness:
            self.counts["blurry"] += 1
            return None
        name, sim = e.match(at, emb)[0]
        rel = (fb[i] - np.array([x0, y0, x0, y0], np.float32)) / np.array([bw, bh, bw, bh], np.float32)
        score = float(faces.confidence[i]) if faces.confidence is not None else 1.0
        return Verdict(name, sim, score, face_quality(side[i], kps), rel)


def _place(rel: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A face box kept relative to its person box, placed on the person's current box."""
    x0, y0, x1, y1 = box
    return np.array([x0, y0, x0, y0]) + rel * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])


def trigger_of(name: str | None) -> str:
    """``face:<name>`` for an enrolled person, else ``unknown_face``."""
    return f"{FACE_PREFIX}{name}" if name else UNKNOWN_FACE


def _rows(
    boxes: np.ndarray,
    ids: list[int],
    names: list[str | None],
    sims: list[float],
    scores: list[float],
    regions: list[np.ndarray],
) -> sv.Detections:
    k = len(ids)
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(k, 4),
        confidence=np.asarray(scores, np.float32).reshape(k),
        class_id=np.full(k, -1),
        tracker_id=np.asarray(ids, int).reshape(k),
        data={
            "class_name": np.array([trigger_of(n) for n in names], dtype=str).reshape(k),
            "sub_label": np.array([n or "" for n in names], dtype=str).reshape(k),
            "similarity": np.asarray(sims, np.float32).reshape(k),
            "region": np.asarray(regions, np.float32).reshape(k, 4),
            "region_label": np.array([n or "unknown" for n in names], dtype=str).reshape(k),
        },
    )


def make_face_stage(config: SysConfig, cam: CameraConfig) -> FaceStage | None:
    """The face stage of ``cam``, or ``None`` when the camera has faces off or no face trigger."""
    zones = face_zones(cam, config.common.roi_en)
    if not zones:
        return None
    if not cam.faces:
        log.warning(
            'camera %s lists face triggers but faces are off for it (set "faces": true on the camera)', cam.label
        )
        return None
    return FaceStage(cam, engine_for(config), roi_enabled=config.common.roi_en)
