"""Evidence: annotated images and alert records on local disk.

:class:`AlertStore` writes each alert as an annotated evidence JPEG (boxes, labels, ROI polygons)
and a JSON record into ``<output>/alerts/<YYYY-MM-DD>/``, each written to a temporary file and
renamed, image first, so a reader (or the cloud sender) never sees half a file. The JSON record is
the single source for everything sent later.

Example:
    >>> import numpy as np, supervision as sv
    >>> d = sv.Detections(xyxy=np.array([[2., 2, 8, 9]]), confidence=np.array([0.9]),
    ...                   data={"class_name": np.array(["person"])})
    >>> objects_of(d)
    [{'class_name': 'person', 'confidence': 0.9, 'xyxy': [2.0, 2.0, 8.0, 9.0]}]
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.types import Alert, AlertSink, local_day

log = logging.getLogger(__name__)


SUB_LABEL, SIMILARITY, REGION, REGION_LABEL = "sub_label", "similarity", "region", "region_label"
"""Optional ``Detections.data`` keys a second look (:mod:`trakr.rules.derived`) may set on its rows:
an identity (``sub_label``, e.g. an enrolled person's name) and its ``similarity``, and a
``region`` (N x 4 xyxy, frame px) the rule looked at with its ``region_label`` (e.g. the head
region where no helmet was found). They go into the alert record and onto the evidence image."""


def objects_of(detections: sv.Detections) -> list[dict]:
    """One record per detection: class, confidence, box, and the optional second-look fields.

    >>> d = sv.Detections(xyxy=np.array([[0.0, 0, 10, 30]]), confidence=np.array([0.9]),
    ...                   tracker_id=np.array([7]), data={"class_name": np.array(["unknown_face"]),
    ...                   "sub_label": np.array([""]), "similarity": np.array([0.21])})
    >>> objects_of(d)
    [{'class_name': 'unknown_face', 'confidence': 0.9, 'xyxy': [0.0, 0.0, 10.0, 30.0], 'track_id': 7, 'similarity': 0.21}]
    """
    n = len(detections)
    names = detections.data.get("class_name", np.array([""] * n))
    conf = detections.confidence if detections.confidence is not None else np.ones(n)
    out = []
    for i, (box, c, name) in enumerate(zip(detections.xyxy, conf, names)):
        obj: dict = {
            "class_name": str(name),
            "confidence": round(float(c), 3),
            "xyxy": [round(float(x), 1) for x in box],
        }
        if detections.tracker_id is not None and int(detections.tracker_id[i]) > 0:
            obj["track_id"] = int(detections.tracker_id[i])
        for key in (SUB_LABEL, REGION_LABEL):
            if key in detections.data and str(detections.data[key][i]):
                obj[key] = str(detections.data[key][i])
        if SIMILARITY in detections.data and float(detections.data[SIMILARITY][i]) != 0.0:
            obj[SIMILARITY] = round(float(detections.data[SIMILARITY][i]), 3)
        if REGION in detections.data and np.any(detections.data[REGION][i]):
            obj[REGION] = [round(float(x), 1) for x in detections.data[REGION][i]]
        out.append(obj)
    return out


# ----------------------------------------------------------------------------- evidence drawing

Rect = tuple[int, int, int, int]
"""``x0, y0, x1, y1`` in image px (``x1``/``y1`` exclusive)."""

FONT = cv2.FONT_HERSHEY_SIMPLEX
ROI_COLOR = sv.Color.YELLOW
REGION_COLOR = sv.Color(255, 0, 255)
PAIR_COLOR = sv.Color.RED
HEADER_ALPHA = 0.65
PALETTE = sv.ColorPalette.DEFAULT


@dataclass(frozen=True)
class Caption:
    """What the evidence header says: which camera, when (local time), which rule, where."""

    camera_id: int
    camera_name: str = ""
    captured_at: float | None = None
    violation: str = ""
    rule: str = ""
    roi: str | None = None
    detail: str = ""
    """Rule details, e.g. ``1.20 m apart`` or ``4 > 3 objects``."""
    track_ids: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        cam = f"Camera {self.camera_id}" + (f" '{self.camera_name}'" if self.camera_name else "")
        first = cam + (f"  |  {local_time(self.captured_at)}" if self.captured_at is not None else "")
        where = f"ROI '{self.roi}'" if self.roi else "camera zone"
        what = [f"{self.violation or self.rule} in {where}"]
        if self.rule and self.rule != self.violation:
            what.append(f"rule {self.rule}")
        if self.detail:
            what.append(self.detail)
        if self.track_ids:
            what.append("track " + " ".join(f"#{t}" for t in self.track_ids))
        return [first, "  |  ".join(what)]


def local_time(t: float) -> str:
    """Epoch seconds as readable local time with milliseconds and zone, e.g. ``2024-05-01 14:03:22.123 CEST``."""
    lt = time.localtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f".{int(t * 1000) % 1000:03d} " + time.strftime("%Z", lt)


def _distance_text(extra: dict) -> str:
    if "distance_m" in extra:
        return f"{float(extra['distance_m']):.2f} m"
    if "distance_px" in extra:
        return f"{float(extra['distance_px']):.0f} px"
    return ""


def make_caption(
    camera_id: int, camera_name: str, at: float | None, violation: str, roi: str | None, extra: dict
) -> Caption:
    """A header from an alert's or event's fields (``extra``: ``rule``, ``track_ids``, distances...)."""
    detail = ""
    if dist := _distance_text(extra):
        detail = f"{dist} apart"
    elif "count" in extra:
        detail = f"{extra['count']} > {extra.get('max_objects', '?')} objects"
    elif "direction" in extra:
        detail = f"crossed {extra.get('line', '')} {extra['direction']}".replace("  ", " ")
    elif "seconds" in extra:
        detail = f"inside > {float(extra['seconds']):g} s"
    tracks = tuple(int(t) for t in extra.get("track_ids", ()))
    return Caption(camera_id, camera_name, at, violation, str(extra.get("rule", "")), roi, detail, tracks)


def caption_of(alert: Alert) -> Caption:
    """The header of an alert's evidence image."""
    return make_caption(alert.camera_id, alert.camera_name, alert.captured_at, alert.violation, alert.roi, alert.extra)


def _overlaps(cands: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """For each candidate rect (K x 4), whether it intersects any placed rect (P x 4)."""
    if len(placed) == 0:
        return np.zeros(len(cands), dtype=bool)
    c, p = cands[:, None, :], placed[None, :, :]
    hit = (c[..., 0] < p[..., 2]) & (p[..., 0] < c[..., 2]) & (c[..., 1] < p[..., 3]) & (p[..., 1] < c[..., 3])
    return np.asarray(hit.any(axis=1), dtype=bool)


def place_labels(
    anchors: Sequence[Sequence[float] | np.ndarray],
    sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    reserved: Sequence[Rect] = (),
    avoid: Sequence[Sequence[float] | np.ndarray] = (),
    below_first: Sequence[bool] = (),
) -> list[Rect | None]:
    """Greedy label layout: one rect per ``(w, h)`` label, inside the image, overlapping no other
    label and no ``reserved`` rect; ``None`` for a label with no room left.

    Each label tries above its anchor box, below it, inside its top and bottom edges, then beside
    it (all clamped to the image; ``below_first`` swaps the first two), then the free place nearest
    to the box. Places that also keep
    clear of the ``avoid`` boxes (other objects) win when one is near (within 3 label heights).

    >>> place_labels([[10, 40, 50, 90], [12, 42, 52, 92]], [(40, 12), (40, 12)], (100, 100))
    [(10, 28, 50, 40), (12, 88, 52, 100)]
    """
    W, H = image_size
    shun = [np.asarray(b, dtype=float) for b in avoid]
    placed: list[Rect] = [tuple(int(v) for v in r) for r in reserved]  # type: ignore[misc]
    out: list[Rect | None] = []
    for k, (box, (w, h)) in enumerate(zip(anchors, sizes)):
        w, h = int(w), int(h)
        if w > W or h > H or w <= 0 or h <= 0:
            out.append(None)
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        prefs = np.array(
            [
                (x1, y1 - h),
                (x1, y2),
                (x1, y1),
                (x1, y2 - h),
                (x2 - w, y1 - h),
                (x2 - w, y2),
                (x2, y1),
                (x1 - w, y1),
            ]
        )
        if k < len(below_first) and below_first[k]:
            prefs[[0, 1]] = prefs[[1, 0]]
        prefs[:, 0] = prefs[:, 0].clip(0, W - w)
        prefs[:, 1] = prefs[:, 1].clip(0, H - h)
        sx, sy = max(2, w // 8), max(2, h // 2)
        gx, gy = np.meshgrid(np.arange(0, W - w + 1, sx), np.arange(0, H - h + 1, sy))
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        grid = grid[np.argsort(np.hypot(grid[:, 0] - x1, grid[:, 1] - (y1 - h)), kind="stable")]
        corners = np.concatenate([prefs, grid])
        cands = np.concatenate([corners, corners + [w, h]], axis=1)
        free = ~_overlaps(cands, np.array(placed).reshape(-1, 4))
        if not free.any():
            out.append(None)
            continue
        others = [b for b in shun if not np.array_equal(b, box)]
        clear = free & ~_overlaps(cands, np.array(others, dtype=float).reshape(-1, 4))
        near = np.hypot(corners[:, 0] - x1, corners[:, 1] - (y1 - h)) <= 3 * h
        near[: len(prefs)] = True
        best = clear & near
        pick = int(np.argmax(best)) if best.any() else int(np.argmax(free))
        rect: Rect = tuple(int(v) for v in cands[pick])  # type: ignore[assignment]
        placed.append(rect)
        out.append(rect)
    return out


@dataclass
class Drawn:
    """An evidence image and where its texts went."""

    image: np.ndarray
    header: Rect | None
    labels: list[Rect]
    """Every label drawn (boxes, ROIs, regions, pair distances), in drawing order."""
    texts: list[str]


def _text_size(text: str, scale: float, thickness: int) -> tuple[int, int, int]:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    return tw, th, base


def _fit(text: str, scale: float, thickness: int, max_w: int) -> str:
    while len(text) > 4 and _text_size(text, scale, thickness)[0] > max_w:
        text = text[:-4] + "..."
    return text


def _put(img: np.ndarray, text: str, rect: Rect, color: sv.Color, bg: sv.Color, scale: float, thick: int, pad: int):
    x0, y0, x1, y1 = rect
    img = sv.draw_filled_rectangle(img, sv.Rect(x0, y0, x1 - x0, y1 - y0), bg)
    _, th, base = _text_size(text, scale, thick)
    cv2.putText(img, text, (x0 + pad, y0 + pad + th), FONT, scale, color.as_bgr(), thick, cv2.LINE_AA)
    return img


def draw_evidence(
    image: np.ndarray,
    detections: sv.Detections,
    polygons: Sequence[tuple[str | None, np.ndarray]] = (),
    caption: Caption | None = None,
    pairs: Sequence[tuple[int, int, str]] = (),
) -> Drawn:
    """Draw the evidence on a copy of ``image``: ROI polygons, boxes labelled ``#track class conf``
    (and ``sub_label``), ``region`` boxes with their ``region_label``, offending ``pairs`` (row
    ``a``, row ``b``, distance text) joined foot to foot, and a ``caption`` header. Every text is
    placed by :func:`place_labels`: inside the image, none covering another."""
    out = image.copy()
    H, W = out.shape[:2]
    scale = float(np.clip(H / 1200, 0.4, 1.4))
    thick = 1 if scale < 0.8 else 2
    pad = max(2, round(4 * scale))
    line_w = max(2, round(3 * scale))
    n = len(detections)
    xyxy = detections.xyxy if n else np.zeros((0, 4))

    # header: a translucent band at the top, or at the bottom when more of the objects are at the top
    header: Rect | None = None
    head_lines: list[str] = []
    if caption is not None:
        hs = scale * 1.15
        head_lines = [_fit(t, hs, thick, W - 2 * pad) for t in caption.lines()]
        lh = max(_text_size(t, hs, thick)[1] + _text_size(t, hs, thick)[2] for t in head_lines) + pad
        band_h = min(H, lh * len(head_lines) + pad)
        top_cover = float(np.clip(band_h - xyxy[:, 1], 0, None).sum()) if n else 0.0
        bottom_cover = float(np.clip(xyxy[:, 3] - (H - band_h), 0, None).sum()) if n else 0.0
        y0 = 0 if top_cover <= bottom_cover else H - band_h
        header = (0, y0, W, y0 + band_h)
        out = sv.draw_filled_rectangle(out, sv.Rect(0, y0, W, band_h), sv.Color.BLACK, opacity=HEADER_ALPHA)
        for i, t in enumerate(head_lines):
            th = _text_size(t, hs, thick)[1]
            cv2.putText(out, t, (pad, y0 + pad + i * lh + th), FONT, hs, (255, 255, 255), thick, cv2.LINE_AA)

    # what to label: (anchor box, text, text colour, background colour)
    todo: list[tuple[Sequence[float] | np.ndarray, str, sv.Color, sv.Color]] = []
    for name, poly in polygons:
        out = sv.draw_polygon(out, np.asarray(poly, dtype=np.int64), color=ROI_COLOR, thickness=line_w)
        if name:
            (px0, py0), (px1, py1) = np.asarray(poly).min(axis=0), np.asarray(poly).max(axis=0)
            todo.append(((px0, py0 + 1, px1, py1), f"ROI {name}", sv.Color.BLACK, ROI_COLOR))
    tids = detections.tracker_id if n and detections.tracker_id is not None else np.zeros(n, dtype=int)
    names = detections.data.get("class_name", np.array([""] * n)) if n else np.array([])
    conf = detections.confidence if n and detections.confidence is not None else np.ones(n)
    subs = detections.data.get(SUB_LABEL) if n else None
    for i in range(n):
        tid = int(tids[i])
        color = PALETTE.by_idx(tid) if tid > 0 else sv.Color.WHITE
        x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy[i])
        out = sv.draw_rectangle(out, sv.Rect(x1, y1, x2 - x1, y2 - y1), color, line_w)
        text = (f"#{tid} " if tid > 0 else "") + f"{names[i]} {float(conf[i]):.2f}"
        if subs is not None and str(subs[i]):
            text += f" {subs[i]}"
        todo.append((xyxy[i], text, sv.Color.BLACK, color))
    if n and REGION in detections.data:
        labels = detections.data.get(REGION_LABEL)
        for i, reg in enumerate(np.asarray(detections.data[REGION], dtype=float).reshape(n, -1)):
            if reg.size != 4 or not np.any(reg):
                continue
            rx1, ry1, rx2, ry2 = (int(round(v)) for v in reg)
            out = sv.draw_rectangle(out, sv.Rect(rx1, ry1, rx2 - rx1, ry2 - ry1), REGION_COLOR, line_w)
            text = str(labels[i]) if labels is not None and str(labels[i]) else "region"
            todo.append((reg, text, sv.Color.WHITE, REGION_COLOR))
    for a, b, text in pairs:
        if not (0 <= a < n and 0 <= b < n):
            continue
        fa = ((xyxy[a, 0] + xyxy[a, 2]) / 2, xyxy[a, 3])
        fb = ((xyxy[b, 0] + xyxy[b, 2]) / 2, xyxy[b, 3])
        pa, pb = sv.Point(int(fa[0]), int(fa[1])), sv.Point(int(fb[0]), int(fb[1]))
        out = sv.draw_line(out, pa, pb, PAIR_COLOR, line_w + 1)
        for p in (pa, pb):
            cv2.circle(out, (int(p.x), int(p.y)), line_w + 3, PAIR_COLOR.as_bgr(), -1)
        mx, my = (fa[0] + fb[0]) / 2, (fa[1] + fb[1]) / 2
        low = max(fa[1], fb[1]) + line_w + 3  # under the line and the feet, not over them
        todo.append(((mx - 1, my - 1, mx + 1, low), text, sv.Color.WHITE, PAIR_COLOR))

    sizes = []
    texts = []
    for _, text, _, _ in todo:
        text = _fit(text, scale, thick, W - 2 * pad)
        tw, th, base = _text_size(text, scale, thick)
        texts.append(text)
        sizes.append((tw + 2 * pad, th + base + 2 * pad))
    below = [t[3] is PAIR_COLOR for t in todo]
    rects = place_labels(
        [t[0] for t in todo], sizes, (W, H), [header] if header else [], avoid=list(xyxy), below_first=below
    )
    drawn: list[Rect] = []
    drawn_texts: list[str] = []
    for (anchor, _, fg, bg), text, rect in zip(todo, texts, rects):
        if rect is None:
            continue
        ax0, ay0, ax1, ay1 = (float(v) for v in anchor)
        cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
        nx, ny = float(np.clip(cx, ax0, ax1)), float(np.clip(cy, ay0, ay1))
        lx, ly = float(np.clip(nx, rect[0], rect[2] - 1)), float(np.clip(ny, rect[1], rect[3] - 1))
        if np.hypot(nx - lx, ny - ly) > 3:  # moved away from its object: a leader line to it
            out = sv.draw_line(out, sv.Point(int(lx), int(ly)), sv.Point(int(nx), int(ny)), bg, 1)
        out = _put(out, text, rect, fg, bg, scale, thick, pad)
        drawn.append(rect)
        drawn_texts.append(text)
    return Drawn(out, header, drawn, [*head_lines, *drawn_texts])


def pairs_of(alert_extra: dict, detections: sv.Detections) -> list[tuple[int, int, str]]:
    """The offending pair of a social-distancing event (its two rows) with its distance text."""
    text = _distance_text(alert_extra)
    return [(0, 1, text)] if text and len(detections) == 2 else []


def annotate(
    image: np.ndarray,
    detections: sv.Detections,
    polygons: Sequence[tuple[str | None, np.ndarray]] = (),
    caption: Caption | None = None,
    pairs: Sequence[tuple[int, int, str]] = (),
) -> np.ndarray:
    """The evidence image (:func:`draw_evidence`) of ``detections`` on a copy of ``image``."""
    return draw_evidence(image, detections, polygons, caption, pairs).image


def safe_name(text: str, limit: int = 64) -> str:
    """``text`` as one file-name component: letters, digits, ``-`` and ``_`` only.

    >>> safe_name("../etc/passwd"), safe_name("NO-Hardhat"), safe_name("")
    ('___etc_passwd', 'NO-Hardhat', '_')
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(text))[:limit] or "_"


_written = 0
_written_lock = threading.Lock()


def bytes_written() -> int:
    """Bytes written by :func:`write_atomic` in this process (the retention janitor watches it)."""
    return _written


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    global _written
    with _written_lock:
        _written += len(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class AlertStore:
    """Writes alerts (evidence JPEG + JSON record) under ``output_dir`` and notifies sinks."""

    def __init__(self, output_dir: str | Path, jpeg_quality: int = 85, sinks: list[AlertSink] | None = None):
        self.output_dir = Path(output_dir)
        self.jpeg_quality = jpeg_quality
        self.sinks: list[AlertSink] = list(sinks or [])

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(
        self,
        alert: Alert,
        image: np.ndarray | None,
        detections: sv.Detections,
        polygons: Sequence[tuple[str | None, np.ndarray]] = (),
    ) -> Alert:
        """Store ``alert`` (and its annotated image if ``image`` is given), then call the sinks."""
        day = local_day(alert.captured_at)
        base = (
            Path("alerts")
            / day
            / f"{int(alert.captured_at * 1000)}_cam{int(alert.camera_id)}_{safe_name(alert.violation)}_{alert.alert_id[:8]}"
        )
        if image is not None:
            rel = base.with_suffix(".jpg")
            drawn = annotate(image, detections, polygons, caption_of(alert), pairs_of(alert.extra, detections))
            write_atomic(self.output_dir / rel, encode_jpeg(drawn, self.jpeg_quality))
            alert.evidence_image = str(rel)
        alert.record_path = str(base.with_suffix(".json"))
        write_atomic(self.output_dir / alert.record_path, json.dumps(alert.to_json(), indent=1).encode())
        for sink in self.sinks:  # the alert is on disk: a failing sink is logged, never un-stores it
            try:
                sink(alert, self.output_dir)
            except Exception:
                log.exception("alert sink failed for alert %s", alert.alert_id)
        return alert


def read_alerts(output_dir: str | Path) -> list[Alert]:
    """All stored alert records, oldest first."""
    recs = [Alert.from_json(json.loads(p.read_text())) for p in Path(output_dir).glob("alerts/*/*.json")]
    return sorted(recs, key=lambda a: (a.captured_at, a.created_at))
