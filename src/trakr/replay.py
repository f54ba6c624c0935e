"""Deterministic replay: a recorded clip through gate, detector, tracking, events and alert store.

``trakr replay CLIP --config FILE`` plays ``CLIP`` as one camera of the config (the first, or
``--camera ID``), frame by frame, on the clip's own timestamps (``pts``) instead of the wall
clock, as fast as the CPU allows, in one thread: the change gate decides on each frame's luma,
the configured detector runs on the frames it passes, :class:`~trakr.rules.events.CameraEvents`
tracks the detections and turns them into events, and every alert is written by
:class:`~trakr.evidence.AlertStore` as in a live run (``alerts/<day>/...json`` + evidence JPEG);
finished events go to ``events/<day>/`` with their best snapshot. Capture times are
``start_at + pts`` (default ``start_at`` 0, so the files land under ``1970-01-01``).

The same clip and config give the same alerts every run: event and alert ids are derived from
the clip name, camera and event number, not drawn at random. Sites tune ROIs and thresholds this
way, and the tests check alert quality with it.

Example:
    >>> from trakr.config import parse_config
    >>> from trakr.devtools.media import sample_clip_path
    >>> import tempfile
    >>> cfg = parse_config({"common": {}, "cameras": [{"CameraId": 5, "Address": "x.mp4", "Detection": "car:truck"}]}).config
    >>> r = replay(sample_clip_path(), cfg, tempfile.mkdtemp(), max_seconds=2)
    >>> r.frames, r.analysed > 0, [(a.violation, a.extra["track_ids"]) for a in r.alerts]
    (20, True, [('car', [3]), ('truck', [5])])
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trakr.capture.gate import SKIPPED, ChangeGate
from trakr.capture.sources import open_source
from trakr.config import CameraConfig, SysConfig, load_config
from trakr.evidence import AlertStore
from trakr.inference.base import Detector
from trakr.pipeline import gate_region, make_events, model_input, model_output
from trakr.rules.events import EventRecord, EventUpdate, alert_for, save_event
from trakr.types import Alert

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """What a replay did."""

    camera_id: int
    alerts: list[Alert]
    events: list[EventRecord]
    frames: int
    """Frames decoded."""
    analysed: int
    """Frames the gate passed to the detector."""
    gate_reasons: dict[str, int]
    clip_s: float
    """Clip time covered (last capture time minus first)."""
    wall_s: float
    output_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    """Events, alerts and why events were not alerted (``pause``, ``cap``, ``disabled``)."""


def _pick_camera(config: SysConfig, camera_id: int | None, problems: str = "") -> CameraConfig:
    for cam in config.cameras:
        if camera_id is None or cam.camera_id == camera_id:
            return cam
    have = ", ".join(str(c.camera_id) for c in config.cameras) or "none"
    wanted = "no usable camera" if camera_id is None else f"camera {camera_id} is not"
    raise ValueError(f"{wanted} in the config (usable cameras: {have}){problems}")


def replay(
    clip: str | Path,
    config: SysConfig | str | Path,
    output_dir: str | Path,
    *,
    camera_id: int | None = None,
    max_seconds: float | None = None,
    start_at: float = 0.0,
    detector: Detector | None = None,
) -> ReplayResult:
    """Play ``clip`` as one camera of ``config``; alerts and events are written under ``output_dir``.

    ``max_seconds`` stops after that much clip time. ``detector`` defaults to the configured one
    (it is closed at the end only if this function built it).
    """
    problems = ""
    if not isinstance(config, SysConfig):
        report = load_config(config)
        problems = "".join(f"\n  {p}" for p in report.errors)
        if report.config is None:
            raise ValueError(f"config {config} cannot be used:{problems}")
        config = report.config
    cam = _pick_camera(config, camera_id, problems)
    out = Path(output_dir)
    opts = config.trakr
    own_detector = detector is None
    if detector is None:
        from trakr.inference.factory import build_detector

        detector = build_detector(config)
    gate = ChangeGate(**opts.gate.model_dump())
    gate.set_region(cam.camera_id, gate_region(config, cam))
    store = AlertStore(out, opts.output.jpeg_quality)
    stem = hashlib.sha1(f"{Path(clip).name}:{cam.camera_id}".encode()).hexdigest()[:8]
    serial = iter(range(1, 1 << 62))
    events = make_events(
        config, cam, id_factory=lambda: hashlib.sha1(f"{stem}:{next(serial)}".encode()).hexdigest()[:32]
    )
    save_image = cam.sav_vio_img
    alerts: list[Alert] = []
    records: list[EventRecord] = []
    frames = analysed = 0
    first_t = last_t = None
    polygons: list = []
    t0 = time.perf_counter()

    def handle(updates: list[EventUpdate], image: np.ndarray | None, size: tuple[int, int]) -> None:
        for u in updates:
            if u.kind == "end":
                assert u.record is not None
                records.append(u.record)
                save_event(out, u.record, polygons, opts.output.jpeg_quality, cam.name)
                continue
            v = u.violation
            alert = alert_for(u, cam, config.recommendation(v.violation), size, u.at)
            alerts.append(store.save(alert, image if save_image else None, v.detections, polygons))

    src = open_source(str(clip), opts.capture.open_timeout_s, opts.capture.read_timeout_s)
    size = (0, 0)
    try:
        for index, (luma, stream_t, frame) in enumerate(src.frames()):
            clip_t = stream_t if stream_t is not None else index / (src.native_fps or 10.0)
            if max_seconds is not None and first_t is not None and clip_t + start_at - first_t >= max_seconds:
                break
            at = start_at + clip_t
            first_t = at if first_t is None else first_t
            last_t = at
            frames += 1
            if gate.decide(cam.camera_id, luma, at, src.limited_range) == SKIPPED:
                continue
            image = src.bgr(frame)
            size = (image.shape[1], image.shape[0])
            polygons = events.rules.polygons(size)
            model_in, offset = model_input(image, cam)
            dets = model_output(detector.detect([model_in])[0], offset, config)
            analysed += 1
            result = events.update(at, size, dets, image)
            if result.watching:  # keep looking at a tracked object, whatever the motion says
                gate.force_until(cam.camera_id, at + max(opts.events.grace_s, 1.0))
            handle(result.updates, image, size)
        handle(events.close(last_t), None, size)
    finally:
        src.close()
        if own_detector:
            detector.close()
    result_ = ReplayResult(
        camera_id=cam.camera_id,
        alerts=alerts,
        events=records,
        frames=frames,
        analysed=analysed,
        gate_reasons=dict(gate.stats_for(cam.camera_id).reasons),
        clip_s=round((last_t or 0.0) - (first_t or 0.0), 3),
        wall_s=round(time.perf_counter() - t0, 3),
        output_dir=out,
        counts=dict(events.counts),
    )
    log.info(
        "replay camera %s: %d frames, %d analysed, %d events, %d alerts in %.1f s",
        cam.label,
        frames,
        analysed,
        len(records),
        len(alerts),
        result_.wall_s,
    )
    return result_
