"""One trakr run: the real :class:`~trakr.pipeline.Pipeline` for ``duration`` seconds, measured over
its steady window (after ``warmup``).

The bench observes the pipeline the way every other observer does: two
:meth:`~trakr.pipeline.Pipeline.snapshot` s bracket the window (per-camera frames read, published,
dropped, analysed, gate decisions by reason), and a batch sink records every detector call
(frames, batch size, model time, capture→result latency of each frame). A sampler thread records
this process's CPU and RSS every second. :func:`summarise` turns those into a
:class:`~trakr.bench.results.TrakrResult`; it is a pure function of what was recorded.

Example:
    >>> from trakr.types import Frame
    >>> rec = Recording()
    >>> frame = Frame(camera_id=3, image=np.zeros((4, 4, 3), np.uint8), captured_at=100.0, seq=1)
    >>> rec.on_batch(BatchResult(frames=[frame], batch_size=4, infer_s=0.01, done_at=100.05))
    >>> rec.batches[0].frames, rec.latencies[0].camera_id, round(rec.latencies[0].latency_s, 3)
    (1, 3, 0.05)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil

from trakr.bench.figures import percentiles, ratio, rnd, slope_per_min, to_ms
from trakr.bench.machine import CpuMeter, CpuShare, MachineLoad, load_1m
from trakr.bench.results import CameraResult, Latency, RunLatency, Sample, TrakrResult
from trakr.config import SysConfig
from trakr.inference.auto import BatchChoice
from trakr.inference.base import Detector
from trakr.types import BatchResult, CameraSnapshot, PipelineSnapshot

ISOLATED_START_BUDGET_S = 180.0
"""A fresh process imports trakr, opens the model and measures ``batch_size: auto`` before its run."""
SATURATED_DROP_RATE = 0.05
"""A run whose slots dropped more than this share of their frames was limited by trakr, not the cameras."""


class BatchRecord(NamedTuple):
    done_at: float
    frames: int
    batch_size: int
    infer_s: float


class LatencySample(NamedTuple):
    done_at: float
    latency_s: float
    camera_id: int


@dataclass
class Recording:
    """What the batch sink and the sampler collected during a run (appended from their threads)."""

    batches: list[BatchRecord] = field(default_factory=list)
    latencies: list[LatencySample] = field(default_factory=list)
    series: list[Sample] = field(default_factory=list)
    rss_peak_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_batch(self, br: BatchResult) -> None:
        """The pipeline's batch sink."""
        with self.lock:
            self.batches.append(BatchRecord(br.done_at, len(br.frames), br.batch_size, br.infer_s))
            self.latencies.extend(LatencySample(br.done_at, br.done_at - f.captured_at, f.camera_id) for f in br.frames)

    def latencies_since(self, n: int) -> tuple[list[float], int]:
        """Latencies recorded after the first ``n``, and how many there are now."""
        with self.lock:
            return [x.latency_s for x in self.latencies[n:]], len(self.latencies)


@dataclass
class RunSetup:
    """What a run was asked to do (recorded beside its figures)."""

    cameras: int
    duration_s: float
    batch_size: int
    deadline_ms: float
    imgsz: int
    gate: bool
    backend: str
    warmup_s: float = 0.0
    batch_choice: BatchChoice | None = None
    """How the pipeline came to its batch size (``batch_size: auto`` measures it)."""

    @classmethod
    def of(cls, cfg: SysConfig, duration: float, warmup: float, choice: BatchChoice | None = None) -> RunSetup:
        t = cfg.trakr
        configured = cfg.common.batch_size
        return cls(
            cameras=len(cfg.cameras),
            duration_s=duration,
            batch_size=choice.batch_size if choice is not None else (configured if isinstance(configured, int) else 0),
            batch_choice=choice,
            deadline_ms=t.batch.deadline_ms,
            imgsz=t.detector.imgsz,
            gate=t.gate.enabled,
            backend=t.detector.backend,
            warmup_s=warmup,
        )


def _reasons(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Decisions by reason made between two snapshots (reasons that occurred only)."""
    out = {k: b.get(k, 0) - a.get(k, 0) for k in sorted({*a, *b})}
    return {k: v for k, v in out.items() if v}


def _latency(values: Sequence[float]) -> Latency:
    p = percentiles(values)
    return Latency(p50=to_ms(p["p50"]), p95=to_ms(p["p95"]), p99=to_ms(p["p99"]))


def _camera(a: CameraSnapshot, b: CameraSnapshot, window: float, lats: Sequence[float]) -> CameraResult:
    published = b.frames_published - a.frames_published
    dropped = b.frames_dropped - a.frames_dropped
    return CameraResult(
        camera=b.camera_id,
        name=b.name,
        state=b.state,
        capture_fps=rnd((b.frames_read - a.frames_read) / window),
        published_fps=rnd(published / window),
        analysed_fps=rnd((b.frames_analysed - a.frames_analysed) / window),
        gate_pass_rate=ratio(b.gate_passed - a.gate_passed, b.gate_seen - a.gate_seen),
        dropped=dropped,
        drop_rate=ratio(dropped, published),
        reconnects=b.reconnects - a.reconnects,
        latency_ms=_latency(lats),
        gate_reasons=_reasons(a.gate_reasons, b.gate_reasons),
    )


def summarise(
    setup: RunSetup,
    start: PipelineSnapshot,
    end: PipelineSnapshot,
    final: PipelineSnapshot,
    rec: Recording,
    cpu: CpuShare | None = None,
    load: MachineLoad | None = None,
    detector_stats: dict[str, float] | None = None,
) -> TrakrResult:
    """A run's figures over the window between the snapshots ``start`` and ``end``; ``final``
    (taken after the pipeline stopped) gives the run's totals (alerts, detector errors)."""
    window = max(1e-6, end.at - start.at)
    with rec.lock:
        batches = [x for x in rec.batches if start.at <= x.done_at < end.at]
        lats = [x for x in rec.latencies if start.at <= x.done_at < end.at]
        series = list(rec.series)
    ids = [cid for cid in sorted(end.cameras) if cid in start.cameras]
    cams = [
        _camera(start.cameras[c], end.cameras[c], window, [x.latency_s for x in lats if x.camera_id == c]) for c in ids
    ]

    def total(name: str) -> int:
        return sum(getattr(end.cameras[c], name) - getattr(start.cameras[c], name) for c in ids)

    reasons: dict[str, int] = {}
    for c in cams:
        for k, v in c.gate_reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    n_frames = sum(x.frames for x in batches)
    infer = sum(x.infer_s for x in batches)
    lat_all = [x.latency_s for x in lats]
    p = percentiles(lat_all)
    dropped, put = total("frames_dropped"), total("frames_published")
    steady = [s for s in series if s.t >= setup.warmup_s]
    p50s = [s.p50_ms if s.p50_ms is not None else np.nan for s in steady]
    cpu = cpu or CpuShare(0.0, 0.0, 0.0, 0.0, psutil.cpu_count() or 1)
    return TrakrResult(
        cameras=setup.cameras,
        duration_s=setup.duration_s,
        window_s=round(window, 2),
        batch_size=setup.batch_size,
        deadline_ms=setup.deadline_ms,
        imgsz=setup.imgsz,
        gate=setup.gate,
        backend=setup.backend,
        per_camera=cams,
        capture_fps=rnd(total("frames_read") / window),
        published_fps=rnd(put / window),
        analysed_fps=rnd(total("frames_analysed") / window),
        gate_pass_rate=ratio(total("gate_passed"), total("gate_seen")),
        gate_reasons=reasons,
        dropped=dropped,
        drop_rate=ratio(dropped, put),
        saturated=bool(put and dropped / put > SATURATED_DROP_RATE),
        batches=len(batches),
        batch_fill=ratio(n_frames, sum(x.batch_size for x in batches)),
        model_ms_per_frame=rnd(1000 * infer / n_frames, 1) if n_frames else None,
        model_ms_per_batch=rnd(1000 * infer / len(batches), 1) if batches else None,
        detector_busy=rnd(infer / window, 3),
        latency_ms=RunLatency(
            p50=to_ms(p["p50"]),
            p95=to_ms(p["p95"]),
            p99=to_ms(p["p99"]),
            max=to_ms(max(lat_all) if lat_all else None),
            mean=to_ms(float(np.mean(lat_all)) if lat_all else None),
        ),
        latency_p50_slope_ms_per_min=rnd(slope_per_min([s.t for s in steady], p50s), 2),
        rss_peak_mb=round(rec.rss_peak_bytes / 2**20, 1),
        rss_slope_mb_per_min=rnd(slope_per_min([s.t for s in steady], [s.rss_mb for s in steady]), 2),
        cpu=cpu,
        alerts=final.alerts,
        detector_errors=final.detector_errors,
        detector=end.detector,
        detector_precision=end.detector_precision,
        detector_stats=detector_stats or None,
        load=load or MachineLoad.of(cpu, 0.0, 0.0),
        series=series,
        batch_choice=setup.batch_choice.to_json() if setup.batch_choice is not None else None,
    )


def _sample(rec: Recording, stop: threading.Event, t_start: float) -> None:
    """Every second: this process's RSS and CPU, analysed fps and latency of the last second."""
    proc = psutil.Process()
    last_cpu, last_t, last_n = proc.cpu_times(), time.monotonic(), 0
    while not stop.wait(1.0):
        now_m = time.monotonic()
        cpu = proc.cpu_times()
        rss = proc.memory_info().rss
        dt = max(1e-6, now_m - last_t)
        recent, last_n = rec.latencies_since(last_n)
        p = percentiles(recent, (50, 99))
        with rec.lock:
            rec.rss_peak_bytes = max(rec.rss_peak_bytes, rss)
            rec.series.append(
                Sample(
                    t=round(time.time() - t_start, 2),
                    rss_mb=round(rss / 2**20, 1),
                    cpu_percent=round(((cpu.user + cpu.system) - (last_cpu.user + last_cpu.system)) / dt * 100, 1),
                    analysed_fps=round(len(recent) / dt, 1),
                    p50_ms=to_ms(p["p50"]),
                    p99_ms=to_ms(p["p99"]),
                )
            )
        last_cpu, last_t = cpu, now_m


def run_trakr(
    cfg: SysConfig,
    duration: float,
    warmup: float,
    output_dir: Path,
    helper_pids: Sequence[int] = (),
    detector: Detector | None = None,
) -> TrakrResult:
    """Run the real pipeline for ``duration`` s; measure the window after ``warmup`` s."""
    from trakr.inference.factory import build_detector
    from trakr.pipeline import Pipeline

    det = detector if detector is not None else build_detector(cfg)
    pipeline = Pipeline(cfg, detector=det, output_dir=output_dir)
    rec = Recording(rss_peak_bytes=psutil.Process().memory_info().rss)
    pipeline.add_batch_sink(rec.on_batch)
    stop = threading.Event()
    load0 = load_1m()
    sampler = threading.Thread(target=_sample, args=(rec, stop, time.time()), name="bench-sampler", daemon=True)
    try:
        pipeline.start()
        sampler.start()
        time.sleep(warmup)
        start = pipeline.snapshot()
        meter = CpuMeter(helper_pids)
        time.sleep(max(0.5, duration - warmup))
        end = pipeline.snapshot()
        cpu = meter.read()
        det_stats = det.stats()
    finally:
        stop.set()
        if sampler.ident is not None:
            sampler.join(timeout=5)
        pipeline.stop()
    final = pipeline.snapshot()
    load = MachineLoad.of(cpu, load0, load_1m())
    setup = RunSetup.of(cfg, duration, warmup, pipeline.batch_choice)
    return summarise(setup, start, end, final, rec, cpu, load, det_stats)


def run_trakr_isolated(
    cfg: SysConfig, duration: float, warmup: float, output_dir: Path, helper_pids: Sequence[int] = ()
) -> TrakrResult:
    """:func:`run_trakr` in a fresh process (spawned), so that its peak RSS is one pipeline's, not
    the bench's with every earlier run's leftovers: the figure compared with a peer's process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(run_trakr, cfg, duration, warmup, output_dir, list(helper_pids))
        return future.result(timeout=duration + ISOLATED_START_BUDGET_S)
