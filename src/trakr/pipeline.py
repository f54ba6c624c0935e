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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from trakr.capture.batcher import Batcher
from trakr.capture.gate import ChangeGate
from trakr.capture.reader import CameraReader
from trakr.config import CameraConfig, SysConfig
from trakr.evidence import AlertStore, annotate, encode_jpeg, objects_of, write_atomic
from trakr.inference.base import Detector
from trakr.retention import RetentionJanitor
from trakr.rules.policy import AlertPolicy
from trakr.rules.zones import CameraRules, scale_polygon
from trakr.types import (
    Alert,
    AlertSink,
    AnalysedFrame,
    BatchResult,
    BatchSink,
    CameraHealth,
    Frame,
    HealthSink,
    ResultSink,
)

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """Counters for the status table, metrics and the benchmark."""

    batches: int = 0
    frames_analysed: int = 0
    infer_s_total: float = 0.0
    detector_errors: int = 0
    alerts: int = 0
    output_skipped: int = 0
    analysed_per_camera: dict[int, int] = field(default_factory=dict)
    latencies: deque = field(default_factory=lambda: deque(maxlen=10000))
    """Recent capture→result latencies in seconds."""
    inflight: int = 0
    """Batches inside the detector right now (metrics)."""


def _notify(sinks: list, item, what: str) -> None:
    """Call every sink with ``item``; a failing sink is logged and never stops the pipeline."""
    for sink in sinks:
        try:
            sink(item)
        except Exception:
            log.exception("%s sink failed", what)


class _Camera:
    """Everything the pipeline keeps per camera."""

    def __init__(self, cam: CameraConfig, reader: CameraReader, rules: CameraRules):
        self.cam, self.reader, self.rules = cam, reader, rules
        self.last_saved: dict[str, float] = {}


class Pipeline:
    """Runs the whole data path for a :class:`SysConfig` until :meth:`stop`."""

    def __init__(
        self,
        config: SysConfig,
        detector: Detector | None = None,
        output_dir: str | Path | None = None,
        alert_sinks: list[AlertSink] = (),
        result_sinks: list[ResultSink] = (),
        health_sinks: list[HealthSink] = (),
        batch_sinks: list[BatchSink] = (),
    ):
        self.config = config
        opts = config.trakr
        self.output_dir = Path(output_dir or opts.output.directory)
        self.detector = detector
        self.gate = ChangeGate(**opts.gate.model_dump())
        self.batcher = Batcher(config.common.batch_size, opts.batch.deadline_ms / 1000.0, self.gate)
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
        self._inflight_lock = threading.Lock()

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
            sample_period_s=c.cam_delay(cam),
            not_reachable_limit=c.common.cam_not_reachable_limit,
            alive_limit_s=c.common.cam_alive_limit,
            on_health=self._on_health,
        )
        self._set_policy(cam)
        return _Camera(cam, reader, CameraRules(cam, roi_enabled=c.common.roi_en))

    def _set_policy(self, cam: CameraConfig) -> None:
        self.policy.pause_s[cam.camera_id] = cam.alert_time_pause
        self.policy.enabled[cam.camera_id] = bool(self.config.common.enable_alert and cam.alert_en)

    def cameras(self) -> dict[int, _Camera]:
        with self._cam_lock:
            return dict(self._cameras)

    def reader_stats(self) -> dict[int, tuple[CameraConfig, object]]:
        return {cid: (c.cam, c.reader.stats) for cid, c in self.cameras().items()}

    def apply_config(self, new: SysConfig) -> None:
        """Switch to ``new`` without a restart: cameras added, removed or changed; rules rebuilt."""
        with self._cam_lock:
            fresh = {c.camera_id: c for c in new.cameras}
            self.config = new
            self.batcher.batch_size = new.common.batch_size
            self.batcher.deadline_s = new.trakr.batch.deadline_ms / 1000.0
            for cid in set(self._cameras) - set(fresh):
                self._remove_camera(cid)
            for cid, cam in fresh.items():
                entry = self._cameras.get(cid)
                if entry is None:
                    self._add_camera(cam)
                elif entry.cam.address != cam.address or new.cam_delay(cam) != entry.reader.sample_period_s:
                    self._remove_camera(cid)  # the stream itself changed: reopen it
                    self._add_camera(cam)
                else:  # rules, ROIs or policy only: keep the stream open
                    entry.cam = cam
                    entry.rules = CameraRules(cam, roi_enabled=new.common.roi_en)
                    self._set_policy(cam)
        log.info("config applied: %d cameras", len(new.cameras))

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
        self.janitor = RetentionJanitor(self.output_dir, out.max_disk_mb, out.retention_days)
        self.janitor.start()
        log.info(
            "pipeline started: %d cameras, batch %d, detector %s",
            len(self._cameras),
            self.batcher.batch_size,
            type(self.detector).__name__,
        )

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop readers, finish the batch in progress, write every pending alert, release all."""
        if self._stop.is_set():
            return
        self._stop.set()
        readers = [c.reader for c in self.cameras().values()]
        for r in readers:
            r.request_stop()
        self.batcher.close()
        for t in self._threads:
            t.join(timeout=30)
        for r in readers:
            r.stop(timeout=10)
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
        """The image the model sees: the camera polygon's bounding box when ROI_crop_en is on."""
        if entry is None or not self.config.cam_flag(entry.cam, "roi_crop_en") or not entry.cam.polygon:
            return frame.image, (0, 0)
        poly = scale_polygon(entry.cam.polygon, frame.size)
        x0, y0 = np.clip(poly.min(axis=0), 0, None)
        x1, y1 = poly.max(axis=0)
        x1, y1 = min(int(x1), frame.size[0]), min(int(y1), frame.size[1])
        if x1 - x0 < 8 or y1 - y0 < 8:
            return frame.image, (0, 0)
        return frame.image[int(y0) : y1, int(x0) : x1], (int(x0), int(y0))

    def _inference_loop(self) -> None:
        while True:
            batch = self.batcher.next_batch(timeout=0.5)
            if batch is None:
                if self._stop.is_set():
                    return
                continue
            cams = self.cameras()
            inputs = [self._model_input(f, cams.get(f.camera_id)) for f in batch]
            t0 = time.perf_counter()
            with self._inflight_lock:
                self.stats.inflight += 1
            try:
                results = self.detector.detect([img for img, _ in inputs])
            except Exception as e:  # a failing backend must not kill the pipeline
                self.stats.detector_errors += 1
                if time.monotonic() - self._last_detector_error > 30:
                    log.error("detector failed: %s", e)
                    self._last_detector_error = time.monotonic()
                continue
            finally:
                with self._inflight_lock:
                    self.stats.inflight -= 1
            infer_s = time.perf_counter() - t0
            done = time.time()
            st = self.stats
            st.batches += 1
            st.frames_analysed += len(batch)
            st.infer_s_total += infer_s
            for frame, (_, offset), dets in zip(batch, inputs, results):
                if offset != (0, 0) and len(dets):
                    dets.xyxy = dets.xyxy + np.array([*offset, *offset], dtype=dets.xyxy.dtype)
                st.latencies.append(done - frame.captured_at)
                st.analysed_per_camera[frame.camera_id] = st.analysed_per_camera.get(frame.camera_id, 0) + 1
                entry = cams.get(frame.camera_id)
                if entry is not None:
                    self._judge(frame, entry, dets, done)
            br = BatchResult(batch, self.batcher.batch_size, infer_s, done)
            _notify(self.batch_sinks, br, "batch")

    def _judge(self, frame: Frame, entry: _Camera, dets: sv.Detections, done: float) -> None:
        cam = entry.cam
        violations = entry.rules.evaluate(frame.size, dets)
        alerts = []
        for v in violations:
            if self.policy.allow(v, frame.captured_at):
                roi = cam.roi_config.get(v.roi) if v.roi else None
                speaker = roi.speaker_ip if roi and roi.speaker_ip else cam.speaker
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
        job = AnalysedFrame(frame, cam, dets, violations, alerts, entry.rules.polygons(frame.size), done)
        if alerts or self._out.qsize() < 64:
            self._out.put(job)
        else:
            self.stats.output_skipped += 1

    # -- output --------------------------------------------------------------------------------
    def _output_loop(self) -> None:
        while True:
            try:
                job: AnalysedFrame = self._out.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set() and not any(
                    t.is_alive() for t in self._threads if t.name.startswith("inference")
                ):
                    return
                continue
            try:
                self._write(job)
            except Exception:
                log.exception("output failed for camera %s", job.camera.camera_id)

    def _write(self, job: AnalysedFrame) -> None:
        cam, c = job.camera, self.config
        for alert in job.alerts:
            v = next(v for v in job.violations if v.roi == alert.roi and v.violation == alert.violation)
            image = job.frame.image if c.cam_flag(cam, "sav_vio_img") else None
            self.store.save(alert, image, v.detections, job.polygons)
            self.stats.alerts += 1
            log.info(
                "alert camera %s %s%s: %d object(s) -> %s",
                cam.label,
                alert.violation,
                f" in {alert.roi}" if alert.roi else "",
                len(alert.objects),
                alert.record_path,
            )
        self._save_all(job)
        _notify(self.result_sinks, job, "result")

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
        if c.cam_flag(cam, "save_all_inp_img"):
            wanted.append(("inputs", lambda: job.frame.image))
        if c.cam_flag(cam, "save_all_detection") and len(job.detections):
            wanted.append(("detections", lambda: annotate(job.frame.image, job.detections, job.polygons)))
        for kind, render in wanted:
            if job.frame.captured_at - entry.last_saved.get(kind, 0.0) < interval:
                continue
            entry.last_saved[kind] = job.frame.captured_at
            path = self.output_dir / kind / f"cam{cam.camera_id}" / f"{stamp}.jpg"
            write_atomic(path, encode_jpeg(render(), c.trakr.output.jpeg_quality))
