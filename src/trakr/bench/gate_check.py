"""``trakr bench --gate-check``: what the change gate saves, and whether it costs an alert.

Every frame of the real clip is detected once; then two arms replay the same frames and the same
detections, each with its own rules and alert policy, capture time = stream time: the *ungated*
arm uses every frame, the *gated* arm only the frames the gate passes. An ungated alert (camera,
ROI, violation, time t) is *matched* when the gated arm raised the same (camera, ROI, violation)
within the camera's ``alert_time_pause`` of t. Other ``area_threshold`` values are compared the
same way (``sweep``), to show what a busier-scene setting would cost.

Example:
    >>> ungated = [(0, "walkway", "person", 1.0), (0, "walkway", "person", 9.0)]
    >>> gated = [(0, "walkway", "person", 1.4)]
    >>> [matched(a, gated, pause={0: 5.0}) for a in ungated]
    [True, False]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trakr.bench.figures import rnd
from trakr.bench.options import BenchOptions, bench_config
from trakr.bench.sources import local_detector

AlertTuple = tuple[int, Any, str, float]
"""``(camera, roi, violation, seconds into the clip)``."""

SKIP_TARGET = 0.5
"""The gate should skip at least half of the frames of the clip, and miss no person alert."""


@dataclass
class ArmCounts:
    ungated: int
    gated: int


@dataclass
class PersonAlerts:
    ungated: int
    gated: int
    missed: int


@dataclass
class GateSweep:
    """The gate check at another ``area_threshold``."""

    area_threshold: float
    skipped_fraction: float | None
    frames_analysed: int
    alerts: int
    person_alerts: int
    missed: int
    person_missed: int
    target_met: bool


AlertKey = list[Any]
"""``[camera, roi, violation, seconds into the clip]``."""


@dataclass
class GateCheck:
    """Gated vs ungated on the same frames and the same detections."""

    clip: str
    frames: int
    fps: float
    cameras: int
    imgsz: int
    gate_options: dict[str, Any]
    detect_seconds: float
    frames_analysed: ArmCounts
    skipped_fraction: float | None
    alerts: ArmCounts
    person_alerts: PersonAlerts
    missed: list[AlertKey]
    extra: list[AlertKey]
    matching: str
    gate_stats: dict[str, dict[str, Any]]
    target_met: bool
    sweep: list[GateSweep]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def matched(a: AlertTuple, pool: Sequence[AlertTuple], pause: dict[int, float]) -> bool:
    """``a`` is in ``pool``: same camera, ROI and violation within the camera's alert pause."""
    return any(g[:3] == a[:3] and abs(g[3] - a[3]) <= pause[a[0]] for g in pool)


def _person(alerts: Sequence[AlertTuple]) -> list[AlertTuple]:
    return [a for a in alerts if a[2] == "person"]


def gate_check(
    base: dict,
    opts: BenchOptions,
    detector: Any = None,
    max_frames: int | None = None,
    sweep_area: tuple[float, ...] = (0.02, 0.03, 0.05),
) -> GateCheck:
    """Gated vs ungated on every frame of the real clip (at most ``max_frames``)."""
    from trakr.capture.gate import ChangeGate
    from trakr.devtools.media import sample_clip_path
    from trakr.rules.policy import AlertPolicy
    from trakr.rules.zones import CameraRules
    from trakr.types import Frame

    clip = str(sample_clip_path())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(base, [clip] * max(1, len(base.get("cameras") or [1])), opts, Path(tmp))
    det = detector or local_detector(cfg)
    cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    images: list[np.ndarray] = []
    while max_frames is None or len(images) < max_frames:
        ok, img = cap.read()
        if not ok:
            break
        images.append(img)
    cap.release()
    t_det = time.perf_counter()
    bs = cfg.common.batch_size if isinstance(cfg.common.batch_size, int) else 4  # detections only: any size
    dets: list[Any] = []
    for i in range(0, len(images), bs):
        dets.extend(det.detect(images[i : i + bs]))
    t_det = time.perf_counter() - t_det
    t0 = 1_700_000_000.0
    gate_opts = cfg.trakr.gate.model_dump()
    gate_opts["enabled"] = True
    pause = {c.camera_id: c.alert_time_pause for c in cfg.cameras}

    def arm(gate_kw: dict | None) -> tuple[int, list[AlertTuple], dict[str, dict[str, Any]]]:
        gate = ChangeGate(**gate_kw) if gate_kw else None
        rules = {c.camera_id: CameraRules(c, roi_enabled=cfg.common.roi_en) for c in cfg.cameras}
        enabled = {c.camera_id: bool(cfg.common.enable_alert and c.alert_en) for c in cfg.cameras}
        policy = AlertPolicy(dict(pause), enabled)
        alerts: list[AlertTuple] = []
        analysed = 0
        for i, (img, d) in enumerate(zip(images, dets)):
            t = t0 + i / fps
            for cam in cfg.cameras:
                if gate is not None and not gate.check(Frame(cam.camera_id, img, t, i)):
                    continue
                analysed += 1
                for v in rules[cam.camera_id].evaluate((img.shape[1], img.shape[0]), d):
                    if policy.allow(v, t):
                        alerts.append((cam.camera_id, v.roi, v.violation, round(t - t0, 2)))
        stats = {
            str(k): asdict(s) | {"pass_rate": round(s.pass_rate, 3)} for k, s in (gate.stats if gate else {}).items()
        }
        return analysed, alerts, stats

    seen, ungated, _ = arm(None)

    def compare(analysed: int, gated: list[AlertTuple], area: float) -> tuple[GateSweep, list[AlertTuple]]:
        missed = [a for a in ungated if not matched(a, gated, pause)]
        skipped = 1 - analysed / seen if seen else None
        return (
            GateSweep(
                area_threshold=area,
                skipped_fraction=rnd(skipped, 3),
                frames_analysed=analysed,
                alerts=len(gated),
                person_alerts=len(_person(gated)),
                missed=len(missed),
                person_missed=len(_person(missed)),
                target_met=bool(skipped is not None and skipped >= SKIP_TARGET and not _person(missed)),
            ),
            missed,
        )

    analysed, gated, gate_stats = arm(gate_opts)
    main, missed = compare(analysed, gated, gate_opts["area_threshold"])
    sweep = []
    for area in sweep_area or ():
        if area != gate_opts["area_threshold"]:
            n, alerts, _ = arm({**gate_opts, "area_threshold": area})
            sweep.append(compare(n, alerts, area)[0])
    return GateCheck(
        clip=Path(clip).name,
        frames=len(images),
        fps=fps,
        cameras=len(cfg.cameras),
        imgsz=cfg.trakr.detector.imgsz,
        gate_options=gate_opts,
        detect_seconds=round(t_det, 1),
        frames_analysed=ArmCounts(ungated=seen, gated=analysed),
        skipped_fraction=main.skipped_fraction,
        alerts=ArmCounts(ungated=len(ungated), gated=len(gated)),
        person_alerts=PersonAlerts(ungated=len(_person(ungated)), gated=main.person_alerts, missed=main.person_missed),
        missed=[list(a) for a in missed],
        extra=[list(g) for g in gated if not matched(g, ungated, pause)],
        matching="an ungated alert is matched by a gated alert of the same camera, ROI and violation "
        "within the camera's alert_time_pause (stream time)",
        gate_stats=gate_stats,
        target_met=main.target_met,
        sweep=sweep,
    )
