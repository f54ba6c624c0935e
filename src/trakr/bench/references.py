"""The two references trakr is held against: the model alone, and a naive one-thread loop.

* :func:`measure_raw`: ``detector.detect()`` (letterbox, model, NMS: the work the pipeline asks
  of it) on frames preloaded in memory, at several batch sizes; the best is this machine's limit
  for the model. ``infer()`` alone on a ready tensor is measured too.
* :func:`run_naive`: one thread reading each camera in turn and running the model on every frame
  (batch 1), the way a first script does it. A frame's latency is measured against its stream
  time (``CAP_PROP_POS_MSEC``), so a loop that falls behind shows its growing backlog.

Example:
    >>> class Sleepy:  # a detector taking 2 ms a frame
    ...     backend, precision = "sleepy", "fp64"
    ...     def detect(self, images):
    ...         time.sleep(0.002 * len(images)); return [None] * len(images)
    >>> raw = measure_raw(Sleepy(), [np.zeros((8, 8, 3), np.uint8)], [1, 2], seconds=0.05)
    >>> sorted(raw.batch_fps), raw.fps == max(raw.batch_fps.values()), raw.detector
    ([1, 2], True, 'sleepy')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from trakr.bench.figures import percentiles, rnd, slope_per_min, to_ms
from trakr.bench.machine import CpuMeter, MachineLoad, load_1m
from trakr.bench.results import NaiveLatency, NaiveResult, RawResult


def measure_raw(detector: Any, frames: list[np.ndarray], batch_sizes: Sequence[int], seconds: float = 1.5) -> RawResult:
    """Throughput of ``detector.detect`` on preloaded frames at each batch size (frames/s)."""
    load0 = load_1m()
    meter = CpuMeter()
    fps: dict[int, float] = {}
    for bs in sorted(set(batch_sizes)):
        batch = [frames[i % len(frames)] for i in range(bs)]
        detector.detect(batch)  # warm-up (allocations, first-run kernels)
        n, k, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2 * bs:
            detector.detect([frames[(k + i) % len(frames)] for i in range(bs)])
            n += bs
            k += bs
        fps[bs] = n / (time.perf_counter() - t0)
    best = max(fps, key=lambda b: fps[b])
    infer_only = None
    if hasattr(detector, "infer") and hasattr(detector, "imgsz"):
        from trakr.inference.base import letterbox_batch

        tensor, _ = letterbox_batch([frames[i % len(frames)] for i in range(best)], detector.imgsz)
        detector.infer(tensor)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            detector.infer(tensor)
            n += best
        infer_only = round(n / (time.perf_counter() - t0), 2)
    return RawResult(
        batch_fps={b: round(v, 2) for b, v in fps.items()},
        best_batch=best,
        fps=round(fps[best], 2),
        ms_per_frame=round(1000 / fps[best], 2),
        batch_ms={b: round(1000 * b / v, 1) for b, v in fps.items()},
        infer_only_fps=infer_only,
        detector=getattr(detector, "backend", ""),
        detector_precision=getattr(detector, "precision", ""),
        load=MachineLoad.of(meter.read(), load0, load_1m()),
    )


def run_naive(
    addresses: list[str], detector: Any, duration: float, realtime_files: bool = True, helper_pids: Sequence[int] = ()
) -> NaiveResult:
    """One thread: read each camera in turn, ``detector.detect([frame])`` on every frame.

    Latency of a frame = time its result is ready - its stream time (first frame's wall time +
    its ``CAP_PROP_POS_MSEC`` offset), so a loop that cannot keep up shows a growing backlog.
    Files are paced like live cameras: a frame is not read before its stream time.
    """
    caps = [cv2.VideoCapture(a, cv2.CAP_FFMPEG) for a in addresses]
    bases: list[float | None] = [None] * len(addresses)
    last_pos = [0.0] * len(addresses)
    is_file = ["://" not in a for a in addresses]
    lats: list[tuple[float, float]] = []
    load0 = load_1m()
    meter = CpuMeter(helper_pids)
    t0 = time.monotonic()
    t_end = t0 + duration
    while time.monotonic() < t_end:
        for i, cap in enumerate(caps):
            base = bases[i]
            if is_file[i] and realtime_files and base is not None:
                due = base + last_pos[i] / 1000.0 + 0.1  # next frame of a 10 fps clip
                wait = due - time.time()
                if wait > 0:
                    time.sleep(min(wait, 0.2))
            ok, img = cap.read()
            if not ok:
                if is_file[i]:  # loop the file, continuing its stream time
                    cap.release()
                    caps[i] = cv2.VideoCapture(addresses[i], cv2.CAP_FFMPEG)
                    if base is not None:
                        bases[i] = base + last_pos[i] / 1000.0 + 0.1
                continue
            pos = cap.get(cv2.CAP_PROP_POS_MSEC)
            if base is None:
                base = bases[i] = time.time() - pos / 1000.0
            last_pos[i] = pos
            detector.detect([img])
            done = time.time()
            lats.append((done, done - (base + pos / 1000.0)))
            if time.monotonic() >= t_end:
                break
    elapsed = time.monotonic() - t0
    cpu = meter.read()
    load = MachineLoad.of(cpu, load0, load_1m())
    for cap in caps:
        cap.release()
    vals = [x for _, x in lats]
    half = len(vals) // 2
    p = percentiles(vals)
    slope = slope_per_min([d - lats[0][0] for d, _ in lats], [1000 * x for x in vals]) if len(lats) > 2 else None
    return NaiveResult(
        cameras=len(addresses),
        duration_s=round(elapsed, 2),
        analysed_fps=rnd(len(lats) / elapsed),
        latency_ms=NaiveLatency(
            p50=to_ms(p["p50"]),
            p95=to_ms(p["p95"]),
            p99=to_ms(p["p99"]),
            max=to_ms(max(vals) if vals else None),
            first_half_p50=to_ms(percentiles(vals[:half], (50,))["p50"]) if half else None,
            second_half_p50=to_ms(percentiles(vals[half:], (50,))["p50"]) if half else None,
        ),
        latency_slope_ms_per_min=rnd(slope, 1),
        cpu=cpu,
        load=load,
    )
