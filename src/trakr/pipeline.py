"""The data path wired together: readers → slots → gate → batcher → detector → rules → alerts.

Threads: one reader per camera; ``batch.max_inflight`` inference threads (at least
``redis.max_inflight`` with the Redis backend), each taking a batch,
running the detector and the rules; one output thread that stores alerts and evidence and calls
the result sinks. The frame path never waits on disk or network: inference threads only enqueue
to the output thread. Alerts are always enqueued; optional images (``save_all_*``) are skipped
(and counted) if the output thread falls behind.

Example:
    >>> from trakr.config import parse_config
    >>> from trakr.devtools.media import sample_clip_path
    >>> raw = {"common": {"batch_size": 2}, "trakr": {"capture": {"loop_files": True}},
    ...        "cameras": [{"CameraId": 1, "Address": str(sample_clip_path()), "Detection": "person"}]}
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> p = Pipeline(parse_config(raw).config, output_dir=out)
    >>> p.run(duration=4)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from trakr.capture.batcher import Batcher
from trakr.capture.gate import ChangeGate
from trakr.capture.reader import CameraReader
from trakr.config import CameraConfig, SysConfig
from trakr.evidence import AlertStore, annotate, bytes_written, encode_jpeg, objects_of, write_atomic
from trakr.faces.crops import save_face_crop
from trakr.inference.auto import BatchChoice, batch_size_for
from trakr.inference.base import Detector
from trakr.inference.classes import ClassMap
from trakr.logs import redact
from trakr.retention import RetentionJanitor
from trakr.rules.derived import Deriver
from trakr.rules.events import CameraEvents, alert_for, save_event
from trakr.rules.policy import AlertPolicy
from trakr.rules.ppe import ppe_derivers
from trakr.rules.zones import CameraRules, scale_polygon
from trakr.supervisor import restarts, supervise
from trakr.types import (
    Alert,
    AlertSink,
    AnalysedFrame,
    BatchResult,
    BatchSink,
    CameraHealth,
    CameraSnapshot,
    Frame,
    HealthSink,
    PipelineSnapshot,
    ResultSink,
    Violation,
)

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """Counters of the data path. Written by several inference threads: always under ``lock``."""

    batches: int = 0
    frames_analysed: int = 0
    detector_errors: int = 0
    alerts: int = 0
    output_skipped: int = 0
    alerts_pending_disk: int = 0
    """Alerts kept in memory because the output directory could not be written (full, read-only)."""
    alert_write_errors: int = 0
    analysed_per_camera: dict[int, int] = field(default_factory=dict)
    latencies: deque = field(default_factory=lambda: deque(maxlen=10000))
    """Recent capture→result latencies in seconds."""
    inflight: int = 0
    """Batches inside the detector right now (metrics)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_batch(self, frames: list[Frame], done: float) -> None:
        """One detector batch finished at ``done``: frames, latencies, per-camera counts."""
        with self.lock:
            self.batches += 1
            self.frames_analysed += len(frames)
            per_cam = self.analysed_per_camera
            for f in frames:
                self.latencies.append(done - f.captured_at)
                per_cam[f.camera_id] = per_cam.get(f.camera_id, 0) + 1

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (e.g. ``"detector_errors"``)."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


def model_input(image: np.ndarray, cam: CameraConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """The image the model sees, and its offset in the frame: the camera polygon's bounding box
    when ``ROI_crop_en`` is on, else the whole frame.

    >>> from trakr.config import CameraConfig
    >>> cam = CameraConfig(CameraId=1, Address="0", ROI=["0.5,0", "1,0", "1,1", "0.5,1"], ROI_crop_en=1)
    >>> crop, offset = model_input(np.zeros((100, 200, 3), np.uint8), cam)
    >>> crop.shape, offset
    ((100, 100, 3), (100, 0))
    """
    if not cam.roi_crop_en or not cam.polygon:
        return image, (0, 0)
    h, w = image.shape[:2]
    poly = scale_polygon(cam.polygon, (w, h))
    x0, y0 = (int(v) for v in np.clip(poly.min(axis=0), 0, None))
    x1, y1 = min(int(poly[:, 0].max()), w), min(int(poly[:, 1].max()), h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return image, (0, 0)
    return image[y0:y1, x0:x1], (x0, y0)


def to_frame(detections: sv.Detections, offset: tuple[int, int]) -> None:
    """Shift boxes found in a crop at ``offset`` back to frame coordinates (in place)."""
    if offset != (0, 0) and len(detections):
        detections.xyxy = detections.xyxy + np.array([*offset, *offset], dtype=detections.xyxy.dtype)


def model_output(detections: sv.Detections, offset: tuple[int, int], config: SysConfig) -> sv.Detections:
    """The detector's boxes for one frame as the rules see them: in frame coordinates (``offset``
    from :func:`model_input`), with ``detector.class_aliases`` / ``class_confidence`` / ``classes``
    applied (:mod:`trakr.inference.classes`). The pipeline and ``trakr replay`` both call this."""
    to_frame(detections, offset)
    return class_map(config).apply(detections)


def class_map(config: SysConfig) -> ClassMap:
    """The :class:`ClassMap` of ``config``'s detector options (built once per distinct options)."""
    d = config.trakr.detector
    key = (tuple(d.class_aliases.items()), tuple(d.class_confidence.items()), tuple(d.classes))
    cm = _CLASS_MAPS.get(key)
    if cm is None:
        cm = _CLASS_MAPS[key] = ClassMap(d.class_aliases, d.class_confidence, d.classes)
    return cm


_CLASS_MAPS: dict[tuple, ClassMap] = {}


def make_derivers(config: SysConfig, cam: CameraConfig) -> list[Deriver]:
    """The second looks (:mod:`trakr.rules.derived`) camera ``cam`` needs, from config."""
    derivers: list[Deriver] = []
    derivers += ppe_derivers(config, cam)  # PPE association / person-crop classifier (docs/ppe.md)
    from trakr.faces.stage import make_face_stage  # faces (docs/faces.md): models shared by all cameras

    if (faces := make_face_stage(config, cam)) is not None:
        derivers.append(faces)
    return derivers


def gate_region(config: SysConfig, cam: CameraConfig) -> Callable[[tuple[int, int]], list[np.ndarray] | None]:
    """Where the change gate looks on camera ``cam`` (:meth:`ChangeGate.set_region`): the pixel
    polygons of the zones its rules watch, per frame size; ``None`` (the whole frame) when a rule
    watches all of it (a zone without polygon, a counting line) or no rule is set."""
    rules = CameraRules(cam, roi_enabled=config.common.roi_en)
    used = {r.roi for r in cam.dwell.values()} | {r.roi for r in cam.occupancy.values()}

    def region(size: tuple[int, int]) -> list[np.ndarray] | None:
        if cam.lines:
            return None
        polygons = []
        for zone in rules.zones:
            if zone.triggers or zone.name in used:
                if zone.polygon is None:
                    return None
                polygons.append(scale_polygon(zone.polygon, size))
        return polygons or None

    return region


def make_events(config: SysConfig, cam: CameraConfig, id_factory: Callable[[], str] | None = None) -> CameraEvents:
    """Camera ``cam``'s tracker and event engine, with its derivers; the pipeline and replay share it."""
    return CameraEvents(
        cam,
        config.trakr.events,
        roi_enabled=config.common.roi_en,
        alerts_enabled=bool(config.common.enable_alert and cam.alert_en),
        id_factory=id_factory,
        derivers=make_derivers(config, cam),
    )


def _changed_options(old: SysConfig, new: SysConfig) -> list[str]:
    """Dotted ``trakr`` options whose value differs between two configs."""

    def leaves(d: dict, prefix: str = "") -> dict:
        out: dict = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = leaves(old.trakr.model_dump()), leaves(new.trakr.model_dump())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _notify(sinks: list, item, what: str) -> None:
    """Call every sink with ``item``; a failing sink is logged and never stops the pipeline."""
    for sink in sinks:
        try:
            sink(item)
        except Exception:
            log.exception("%s sink failed", what)


@dataclass
class PendingAlert:
    """An alert waiting to be written (the output directory refused it)."""

    alert: Alert
    image: np.ndarray | None
    detections: sv.Detections
    polygons: list[tuple[str | None, np.ndarray]]
    camera_label: str


class _Camera:
    """Everything the pipeline keeps per camera."""

    def __init__(self, cam: CameraConfig, reader: CameraReader, rules: CameraRules, events: CameraEvents | None = None):
        self.cam, self.reader, self.rules, self.events = cam, reader, rules, events
        self.last_saved: dict[str, float] = {}
        self.events_lock = threading.Lock()
        """Tracking needs frames in capture-time order: one inference thread at a time per camera."""
        self.last_tracked_at = float("-inf")


class Pipeline:
    """Runs the whole data path for a :class:`SysConfig` until :meth:`stop`."""

    MAX_PENDING_ALERTS = 500
    """Alerts kept in memory while the output directory cannot be written; the oldest go first."""
    DISK_RETRY_S = 2.0
    STOP_BUDGET_S = 4.0
    """:meth:`stop` returns within about this long, whatever the cameras do."""

    def __init__(
        self,
        config: SysConfig,
        detector: Detector | None = None,
        output_dir: str | Path | None = None,
        alert_sinks: Sequence[AlertSink] = (),
        result_sinks: Sequence[ResultSink] = (),
        health_sinks: Sequence[HealthSink] = (),
        batch_sinks: Sequence[BatchSink] = (),
    ):
        self.config = config
        opts = config.trakr
        self.output_dir = Path(output_dir or opts.output.directory)
        self.detector = detector
        self.gate = ChangeGate(**opts.gate.model_dump())
        configured = config.common.batch_size
        self.batcher = Batcher(configured if isinstance(configured, int) else 1, opts.batch.deadline_ms / 1000.0)
        self.batch_choice: BatchChoice | None = None
        """The batch size in use and where it came from (set by :meth:`start`; ``batch_size: auto`` measures)."""
        self.store = AlertStore(self.output_dir, opts.output.jpeg_quality, list(alert_sinks))
        self.policy = AlertPolicy({}, {})
        self.result_sinks: list[ResultSink] = list(result_sinks)
        self.health_sinks: list[HealthSink] = list(health_sinks)
        self.batch_sinks: list[BatchSink] = list(batch_sinks)
        self.stats = PipelineStats()
        self.health: dict[int, CameraHealth] = {}
        self._cameras: dict[int, _Camera] = {}
        self._cam_lock = threading.RLock()
        self._out: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._last_detector_error = 0.0
        self.janitor: RetentionJanitor | None = None
        self._pending_alerts: deque[PendingAlert] = deque()
        self._disk_failing = False
        self._disk_logged_at = 0.0
        self._retry_disk_at = 0.0

    # -- sinks ---------------------------------------------------------------------------------
    def add_alert_sink(self, sink: AlertSink) -> None:
        self.store.sinks.append(sink)

    def add_result_sink(self, sink: ResultSink) -> None:
        self.result_sinks.append(sink)

    def add_health_sink(self, sink: HealthSink) -> None:
        self.health_sinks.append(sink)

    def add_batch_sink(self, sink: BatchSink) -> None:
        self.batch_sinks.append(sink)

    def _on_health(self, h: CameraHealth) -> None:
        self.health[h.camera_id] = h
        _notify(self.health_sinks, h, "health")

    # -- cameras -------------------------------------------------------------------------------
    def _make_camera(self, cam: CameraConfig) -> _Camera:
        c = self.config
        slot = self.batcher.add_camera(cam.camera_id)
        reader = CameraReader(
            cam,
            slot,
            c.trakr.capture,
            sample_period_s=cam.cam_delay or 0.0,
            not_reachable_limit=c.common.cam_not_reachable_limit,
            alive_limit_s=c.common.cam_alive_limit,
            on_health=self._on_health,
            gate=self.gate,
        )
        self._set_policy(cam)
        self.gate.set_region(cam.camera_id, gate_region(c, cam))
        return _Camera(cam, reader, CameraRules(cam, roi_enabled=c.common.roi_en), self._make_events(cam))

    def _make_events(self, cam: CameraConfig) -> CameraEvents | None:
        """The camera's tracker and event engine (``None`` with ``trakr.events.enabled`` off: legacy per-frame policy)."""
        return make_events(self.config, cam) if self.config.trakr.events.enabled else None

    def _set_policy(self, cam: CameraConfig) -> None:
        self.policy.pause_s[cam.camera_id] = cam.alert_time_pause
        self.policy.enabled[cam.camera_id] = bool(self.config.common.enable_alert and cam.alert_en)

    def cameras(self) -> dict[int, _Camera]:
        with self._cam_lock:
            return dict(self._cameras)

    def reader_stats(self) -> dict[int, tuple[CameraConfig, object]]:
        return {cid: (c.cam, c.reader.stats) for cid, c in self.cameras().items()}

    LIVE_OPTIONS = (
        "detector.confidence", "detector.iou", "gate.", "batch.deadline_ms", "capture.", "output.jpeg_quality",
        "output.save_all_interval_s", "output.max_disk_mb", "output.retention_days",
        # read by the cloud link from the current config at each use:
        "outbox.retry_min_s", "outbox.retry_max_s", "outbox.speaker_max_age_s", "outbox.reconcile_days",
        "cloud.", "speaker.",
    )  # fmt: skip
    """``trakr`` options :meth:`apply_config` applies live (a prefix ending in ``.`` = the whole section)."""

    def apply_config(self, new: SysConfig) -> list[str]:
        """Switch to ``new`` without a restart: cameras added, removed or changed; rules rebuilt; every
        live ``trakr`` option applied. Returns the changed options that only take effect after a
        restart (also logged), so a config push can report them."""
        restart = [k for k in _changed_options(self.config, new) if not k.startswith(self.LIVE_OPTIONS)]
        with self._cam_lock:
            fresh = {c.camera_id: c for c in new.cameras}
            self.config = new
            t = new.trakr
            if isinstance(new.common.batch_size, int):
                self.batcher.batch_size = new.common.batch_size
            elif self.batch_choice is not None and self.batch_choice.source != "config":
                self.batcher.batch_size = self.batch_choice.batch_size  # 'auto' again: the measured size
            self.batcher.deadline_s = t.batch.deadline_ms / 1000.0
            if self.detector is not None:
                self.detector.set_thresholds(t.detector.confidence, t.detector.iou)
            self._apply_gate_options()
            self.store.jpeg_quality = t.output.jpeg_quality
            if self.janitor is not None:
                self.janitor.max_disk_mb, self.janitor.retention_days = t.output.max_disk_mb, t.output.retention_days
            for cid in set(self._cameras) - set(fresh):
                self._remove_camera(cid)
            for cid, cam in fresh.items():
                entry = self._cameras.get(cid)
                if entry is None:
                    self._add_camera(cam)
                elif (
                    entry.cam.address != cam.address
                    or (cam.cam_delay or 0.0) != entry.reader.sample_period_s
                    or entry.reader.options != t.capture
                ):
                    self._remove_camera(cid)  # the stream or how it is read changed: reopen it
                    self._add_camera(cam)
                else:  # rules, ROIs or policy only: keep the stream open
                    with entry.events_lock:  # new ROIs and rules: tracks and events start over
                        entry.cam = cam
                        entry.rules = CameraRules(cam, roi_enabled=new.common.roi_en)
                        entry.events = self._make_events(cam)
                    self._set_policy(cam)
                    self.gate.set_region(cid, gate_region(new, cam))
        if restart:
            log.warning("config applied; these options take effect after a restart: %s", ", ".join(restart))
        log.info("config applied: %d cameras", len(new.cameras))
        return restart

    def _apply_gate_options(self) -> None:
        g = self.config.trakr.gate
        for name, value in g.model_dump().items():
            setattr(self.gate, name, value)

    def _add_camera(self, cam: CameraConfig) -> None:
        entry = self._make_camera(cam)
        self._cameras[cam.camera_id] = entry
        if self._started:
            entry.reader.start()

    def _remove_camera(self, cid: int) -> None:
        entry = self._cameras.pop(cid, None)
        if entry is None:
            return
        entry.reader.request_stop()  # it exits within one read timeout; never block a config change
        self.batcher.remove_camera(cid)
        self.policy.forget(cid)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the detector if none was given, start readers, inference and output threads."""
        if self.detector is None:
            from trakr.inference.factory import build_detector

            self.detector = build_detector(self.config)
        self.batch_choice = batch_size_for(self.config.common.batch_size, self.detector)
        self.batcher.batch_size = self.batch_choice.batch_size
        with self._cam_lock:
            for cam in self.config.cameras:
                self._cameras[cam.camera_id] = self._make_camera(cam)
            for entry in self._cameras.values():
                entry.reader.start()
            self._started = True
        opts = self.config.trakr
        threads = opts.batch.max_inflight
        if opts.detector.backend == "redis":  # keep the backend's in-flight allowance busy
            threads = max(threads, opts.redis.max_inflight)
        for i in range(threads):
            self._spawn(self._inference_loop, f"inference-{i}")
        self._spawn(self._output_loop, "output")
        out = self.config.trakr.output
        self.janitor = RetentionJanitor(self.output_dir, out.max_disk_mb, out.retention_days, written=bytes_written)
        self.janitor.start()
        log.info(
            "pipeline started: %d cameras, batch %d, detector %s",
            len(self._cameras),
            self.batcher.batch_size,
            type(self.detector).__name__,
        )

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        """Start a supervised thread: if ``target`` raises, it is logged, counted and restarted."""
        self._threads.append(supervise(target, name, self._stop))

    def snapshot(self) -> PipelineSnapshot:
        """One consistent, typed view of the pipeline for every observer."""
        with self.stats.lock:
            st = self.stats
            analysed = dict(st.analysed_per_camera)
            counts = (st.batches, st.frames_analysed, st.detector_errors, st.alerts, st.output_skipped, st.inflight)
            pending = st.alerts_pending_disk
        cams: dict[int, CameraSnapshot] = {}
        for cid, entry in sorted(self.cameras().items()):
            cams[cid] = CameraSnapshot(
                camera_id=cid,
                name=entry.cam.name,
                frames_analysed=analysed.get(cid, 0),
                **entry.reader.snapshot_fields(),
            )
        det = self.detector
        return PipelineSnapshot(
            at=time.time(),
            cameras=cams,
            batches=counts[0],
            frames_analysed=counts[1],
            detector_errors=counts[2],
            alerts=counts[3],
            output_skipped=counts[4],
            inflight=counts[5],
            batch_size=self.batcher.batch_size,
            detector=det.backend if det is not None else "none",
            detector_health=det.health if det is not None else "unknown",
            detector_precision=det.precision if det is not None else "",
            alerts_pending_disk=pending,
            alerts_suppressed=self.policy.suppressed,
            thread_restarts=restarts(),
            threads_alive=self.threads_alive(),
        )

    def threads_alive(self) -> bool:
        """Every long-lived thread (inference, output, camera readers) is running."""
        if not self._started or self._stop.is_set():
            return False
        return all(t.is_alive() for t in self._threads) and all(c.reader.alive for c in self.cameras().values())

    def stop(self) -> None:
        """Stop readers, finish the batch in progress, write every pending alert, release all."""
        if self._stop.is_set():
            return
        self._stop.set()
        readers = [c.reader for c in self.cameras().values()]
        for r in readers:
            r.request_stop()
        self.batcher.close()
        deadline = time.monotonic() + self.STOP_BUDGET_S  # systemd/docker kill after 10 s: stop well before
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        for r in readers:  # a reader stuck in an open is a daemon thread: left to its own timeout
            r.stop(timeout=max(0.1, deadline - time.monotonic()))
        if self._pending_alerts:
            self._retry_disk_at = 0.0
            self._retry_pending_alerts()
            if self._pending_alerts:
                log.error("%d alert(s) could not be written before stopping", len(self._pending_alerts))
        if self.detector is not None:
            self.detector.close()
        if self.janitor is not None:
            self.janitor.stop()
        log.info("pipeline stopped: %d frames analysed, %d alerts", self.stats.frames_analysed, self.stats.alerts)

    def run(self, duration: float | None = None) -> None:
        """``start``, wait for ``duration`` seconds (or until :meth:`stop` from elsewhere), ``stop``."""
        self.start()
        try:
            self._stop.wait(duration)
        finally:
            self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- inference -----------------------------------------------------------------------------
    def _model_input(self, frame: Frame, entry: _Camera | None) -> tuple[np.ndarray, tuple[int, int]]:
        return (frame.image, (0, 0)) if entry is None else model_input(frame.image, entry.cam)

    def _inference_loop(self) -> None:
        while True:
            batch = self.batcher.next_batch(timeout=0.5)
            if batch is None:
                if self._stop.is_set():
                    return
                continue
            cams = self.cameras()
            inputs = [self._model_input(f, cams.get(f.camera_id)) for f in batch]
            detector = self.detector
            assert detector is not None, "start() opens the detector"
            t0 = time.perf_counter()
            self.stats.add("inflight")
            try:
                results = detector.detect([img for img, _ in inputs])
            except Exception as e:  # a failing backend must not kill the pipeline
                self.stats.add("detector_errors")
                if time.monotonic() - self._last_detector_error > 30:
                    log.error("detector failed: %s", redact(e))
                    self._last_detector_error = time.monotonic()
                continue
            finally:
                self.stats.add("inflight", -1)
            infer_s = time.perf_counter() - t0
            done = time.time()
            self.stats.count_batch(batch, done)
            for frame, (_, offset), dets in zip(batch, inputs, results):
                dets = model_output(dets, offset, self.config)
                entry = cams.get(frame.camera_id)
                if entry is not None:
                    self._judge(frame, entry, dets, done)
            br = BatchResult(batch, self.batcher.batch_size, infer_s, done)
            _notify(self.batch_sinks, br, "batch")

    def _judge(self, frame: Frame, entry: _Camera, dets: sv.Detections, done: float) -> None:
        cam = entry.cam
        records: list = []
        if entry.events is not None:
            dets, violations, alerts, records = self._judge_events(frame, entry, dets, done)
        else:
            violations, alerts = self._judge_frame(frame, entry, dets, done)
        job = AnalysedFrame(frame, cam, dets, violations, alerts, entry.rules.polygons(frame.size), done, records)
        if alerts or records or self._out.qsize() < 64:
            self._out.put(job)
        else:
            self.stats.add("output_skipped")

    def _judge_events(
        self, frame: Frame, entry: _Camera, dets: sv.Detections, done: float
    ) -> tuple[sv.Detections, list[Violation], list[Alert], list]:
        """Track, update events; an alert per event start (``violations[i]`` belongs to ``alerts[i]``)."""
        events = entry.events
        assert events is not None
        with entry.events_lock:
            if frame.captured_at < entry.last_tracked_at:  # a late batch of another thread: too old to track
                return dets, [], [], []
            entry.last_tracked_at = frame.captured_at
            fe = events.update(frame.captured_at, frame.size, dets, frame.image)
        if fe.watching:  # keep looking at a tracked object where a rule applies, whatever the motion says
            self.gate.force_until(entry.cam.camera_id, frame.captured_at + max(self.config.trakr.events.grace_s, 1.0))
        violations, alerts, records = [], [], []
        for u in fe.updates:
            if u.kind == "end":
                records.append(u.record)
                continue
            alerts.append(alert_for(u, entry.cam, self.config.recommendation(u.violation.violation), frame.size, done))
            violations.append(u.violation)
        return fe.detections, violations, alerts, records

    def _judge_frame(
        self, frame: Frame, entry: _Camera, dets: sv.Detections, done: float
    ) -> tuple[list[Violation], list[Alert]]:
        """Legacy per-frame rules and timer policy (``trakr.events.enabled: false``)."""
        cam = entry.cam
        alerted, alerts = [], []
        for v in entry.rules.evaluate(frame.size, dets):
            if self.policy.allow(v, frame.captured_at):
                roi = cam.roi_config.get(v.roi) if v.roi else None
                speaker = roi.speaker_ip if roi and roi.speaker_ip else cam.speaker
                alerted.append(v)
                alerts.append(
                    Alert(
                        alert_id=AlertStore.new_id(),
                        camera_id=cam.camera_id,
                        camera_name=cam.name,
                        roi=v.roi,
                        violation=v.violation,
                        captured_at=frame.captured_at,
                        created_at=done,
                        recommendation=self.config.recommendation(v.violation),
                        objects=objects_of(v.detections),
                        frame_size=frame.size,
                        speaker=speaker,
                    )
                )
        return alerted, alerts

    # -- output --------------------------------------------------------------------------------
    def _output_loop(self) -> None:
        while True:
            try:
                job: AnalysedFrame = self._out.get(timeout=0.5)
            except queue.Empty:
                self._retry_pending_alerts()
                if self._stop.is_set() and not any(
                    t.is_alive() for t in self._threads if t.name.startswith("inference")
                ):
                    return
                continue
            self._retry_pending_alerts()
            try:
                self._write(job)
            except Exception:
                log.exception("output failed for camera %s", job.camera.camera_id)

    def _write(self, job: AnalysedFrame) -> None:
        cam = job.camera
        for alert, v in zip(job.alerts, job.violations):
            image = job.frame.image if cam.sav_vio_img else None
            if image is not None and cam.faces:  # the face crop as evidence, beside the alert's image
                save_face_crop(self.output_dir, alert, image, self.config.trakr.output.jpeg_quality)
            self._store_alert(PendingAlert(alert, image, v.detections, job.polygons, cam.label))
        try:
            self._save_all(job)
            for record in job.events:
                save_event(
                    self.output_dir, record, job.polygons, self.config.trakr.output.jpeg_quality, job.camera.name
                )
        except OSError as e:
            self._disk_error("save_all images and event records", e)
        _notify(self.result_sinks, job, "result")

    def _store_alert(self, p: PendingAlert) -> bool:
        """Write an alert; if the disk refuses (full, read-only), keep it in memory and retry later."""
        try:
            self.store.save(p.alert, p.image, p.detections, p.polygons)
        except OSError as e:
            self._disk_error("alert", e)
            with self.stats.lock:
                self.stats.alert_write_errors += 1
                if len(self._pending_alerts) >= self.MAX_PENDING_ALERTS:
                    dropped = self._pending_alerts.popleft()
                    log.error(
                        "alert %s of camera %s lost: %d alerts already wait for the disk",
                        dropped.alert.alert_id,
                        dropped.camera_label,
                        self.MAX_PENDING_ALERTS,
                    )
                self._pending_alerts.append(p)
                self.stats.alerts_pending_disk = len(self._pending_alerts)
            return False
        self.stats.add("alerts")
        a = p.alert
        log.info(
            "alert camera %s %s%s: %d object(s) -> %s",
            p.camera_label,
            a.violation,
            f" in {a.roi}" if a.roi else "",
            len(a.objects),
            a.record_path,
        )
        return True

    def _retry_pending_alerts(self) -> None:
        if not self._pending_alerts or time.monotonic() < self._retry_disk_at:
            return
        self._retry_disk_at = time.monotonic() + self.DISK_RETRY_S
        while self._pending_alerts:
            with self.stats.lock:
                p = self._pending_alerts.popleft()
                self.stats.alerts_pending_disk = len(self._pending_alerts)
            if not self._store_alert(p):
                with self.stats.lock:  # still failing: put it back at the front, keep the order
                    self._pending_alerts.rotate(1)
                return
        log.info("output directory writable again: every pending alert stored")
        self._disk_failing = False

    def _disk_error(self, what: str, e: OSError) -> None:
        """One log line when the disk starts failing (and at most one a minute after), not one per frame."""
        now = time.monotonic()
        if not self._disk_failing or now - self._disk_logged_at > 60:
            log.error(
                "cannot write %s under %s: %s (alerts are kept in memory and retried)",
                what,
                self.output_dir,
                e.strerror or e,
            )
            self._disk_logged_at = now
        if not self._disk_failing:
            self._retry_disk_at = now + self.DISK_RETRY_S
        self._disk_failing = True

    def _save_all(self, job: AnalysedFrame) -> None:
        cam, c = job.camera, self.config
        entry = self.cameras().get(cam.camera_id)
        if entry is None:
            return
        interval = c.trakr.output.save_all_interval_s
        stamp = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(job.frame.captured_at))
            + f"-{int(job.frame.captured_at * 1000) % 1000:03d}"
        )
        wanted = []
        if cam.save_all_inp_img:
            wanted.append(("inputs", lambda: job.frame.image))
        if cam.save_all_detection and len(job.detections):
            wanted.append(("detections", lambda: annotate(job.frame.image, job.detections, job.polygons)))
        for kind, render in wanted:
            if job.frame.captured_at - entry.last_saved.get(kind, 0.0) < interval:
                continue
            entry.last_saved[kind] = job.frame.captured_at
            path = self.output_dir / kind / f"cam{cam.camera_id}" / f"{stamp}.jpg"
            write_atomic(path, encode_jpeg(render(), c.trakr.output.jpeg_quality))
