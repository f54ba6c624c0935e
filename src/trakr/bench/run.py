"""``trakr bench``: how many cameras this box carries, and how close trakr gets to the machine's limit.

One bench run, for each camera count N in ``--cameras``:

1. **trakr**: N sample cameras from the real clip (RTSP mounts of the local GStreamer server the
   tests use, or the file at its native rate with ``--source file``) through the real
   :class:`~trakr.pipeline.Pipeline` for ``--duration`` seconds. Measured over the steady window
   (after ``--warmup``): per-camera capture / analysed fps, gate pass rate, slot drops; batch
   fill, model ms per frame, detector busy fraction; p50/p95/p99 capture→result latency; CPU %
   and peak RSS of this process (psutil), sampled every second (``--plot`` draws them).
2. **naive loop**: one thread reading each camera in turn and running the model on every frame
   (batch 1), the way a first script does it. Its latency is measured against each frame's
   stream time (``CAP_PROP_POS_MSEC``), so a loop that falls behind shows its growing backlog.

and once per bench:

3. **raw model throughput**: the detector alone (``detect()``: letterbox, model, NMS, i.e. the
   same work the pipeline asks of it) on frames of the clip preloaded in memory, at batch sizes
   1, 2, 4, 8 and the configured one; the best is this box's physical limit for this model.
   ``infer()`` alone on a ready tensor is reported too.

Ratios printed: trakr analysed fps / raw fps, and trakr / naive. Optional checks:

* ``--gate-check``: the change gate on the real clip, gated vs ungated in one run, on the same
  frames and the same detections (every frame detected once, the gated arm uses only the frames
  the gate passes, each arm with its own rules and alert policy, capture time = stream time).
  Reports the skipped fraction and whether every alert of the ungated arm is also raised by the
  gated arm: an ungated alert (camera, ROI, violation, time t) is *matched* when the gated arm
  raised the same (camera, ROI, violation) within ``alert_time_pause`` of t.
* ``--capture-check``: CPU cost of one 720p/25 fps camera in a trakr :class:`CameraReader`
  (real-time paced, every frame decoded to BGR, in a child process) vs FFmpeg's own decode of the
  same file (``ffmpeg -benchmark ... -f null -``, native pixel format and bgr24) and a bare
  OpenCV decode loop. The 720p/25 fps clip is made from the sample clip with the ffmpeg CLI.

Everything goes into a JSON file (``--json``); a rich table is printed.

Example (what docs/performance.md shows)::

    trakr bench --cameras 1,2,4,8 --duration 20 --plot bench.png --gate-check --capture-check
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import psutil

from trakr.config import SysConfig, parse_config

log = logging.getLogger(__name__)

OPENCV_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;100000"


# ------------------------------------------------------------------------------------ options


@dataclass
class BenchOptions:
    """What ``trakr bench`` runs (see :func:`run_bench`)."""

    cameras: list[int] = field(default_factory=lambda: [4])
    duration: float = 20.0
    warmup: float | None = None
    """Seconds excluded from the steady window; default 20 % of the duration, 2..10 s."""
    source: str = "rtsp"
    config: Path | None = None
    """Base config whose first cameras are cycled as templates; default the embedded demo."""
    imgsz: int | None = None
    batch_size: int | None = None
    deadline_ms: float | None = None
    threads: int | None = None
    gate: bool | None = None
    backend: str = "onnx"
    workers: int = 1
    naive: bool = True
    naive_duration: float | None = None
    raw: bool = True
    raw_seconds: float = 1.5
    gate_check: bool = False
    capture_check: bool = False
    capture_seconds: float = 10.0
    plot: Path | None = None
    json_path: Path | None = Path("trakr-bench.json")
    command: str | None = None
    """The command line, recorded in the JSON."""


def _warmup(opts: BenchOptions) -> float:
    if opts.warmup is not None:
        return max(0.0, min(opts.warmup, opts.duration * 0.8))
    return min(10.0, max(2.0, 0.2 * opts.duration))


def base_config_raw(opts: BenchOptions) -> dict:
    if opts.config is not None:
        return json.loads(Path(opts.config).read_text())
    from trakr.devtools.demo import default_config_raw

    return default_config_raw()


def bench_config(
    base: dict, addresses: list[str], opts: BenchOptions, output_dir: Path, extra: Callable[[dict], None] | None = None
) -> SysConfig:
    """``base`` with its cameras cycled over ``addresses`` (ids 0..N-1, every frame sampled)."""
    raw = json.loads(json.dumps(base))
    templates = raw.get("cameras") or [{"Detection": "person", "ROI": "NA"}]
    cams = []
    for i, addr in enumerate(addresses):
        cam = dict(templates[i % len(templates)])
        cam.update(CameraId=i, CamName=f"bench-{i}", Address=addr, CamDelay=0)
        cams.append(cam)
    raw["cameras"] = cams
    common = raw.setdefault("common", {})
    common["LogFileSave"] = False
    if opts.batch_size:
        common["batch_size"] = opts.batch_size
    tr = raw.setdefault("trakr", {})
    tr.setdefault("capture", {}).update(loop_files=True, realtime_files=True)
    tr.setdefault("output", {})["directory"] = str(output_dir)
    det = tr.setdefault("detector", {})
    if opts.imgsz:
        det["imgsz"] = opts.imgsz
    if opts.threads is not None:
        det["threads"] = opts.threads
    if opts.deadline_ms is not None:
        tr.setdefault("batch", {})["deadline_ms"] = opts.deadline_ms
    if opts.gate is not None:
        tr.setdefault("gate", {})["enabled"] = opts.gate
    if extra:
        extra(raw)
    report = parse_config(raw)
    if not report.ok:
        raise ValueError("bench config invalid: " + "; ".join(str(p) for p in report.errors))
    return report.config


@contextlib.contextmanager
def camera_sources(n: int, source: str) -> Iterator[tuple[list[str], object | None]]:
    """``n`` addresses of sample cameras: RTSP mounts of a local server, or the clip file."""
    from trakr.devtools.media import h264_annexb_path, sample_clip_path

    if source == "file":
        yield [str(sample_clip_path())] * n, None
        return
    if source != "rtsp":
        raise ValueError(f"unknown source {source!r} (rtsp or file)")
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", OPENCV_CAPTURE_OPTIONS)
    from trakr.devtools.rtsp_server import RtspServer

    with RtspServer(h264_annexb_path(), mounts=n) as server:
        yield [server.url(i) for i in range(n)], server


# ------------------------------------------------------------------------------------ helpers


def percentiles(values, qs=(50, 95, 99)) -> dict[str, float | None]:
    if not len(values):
        return {f"p{q}": None for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def slope_per_min(ts, ys) -> float | None:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per minute."""
    ts, ys = np.asarray(ts, float), np.asarray(ys, float)
    ok = np.isfinite(ys)
    if ok.sum() < 3 or np.ptp(ts[ok]) <= 0:
        return None
    return float(np.polyfit(ts[ok], ys[ok], 1)[0] * 60.0)


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 1)


def _r(x, nd=2):
    return None if x is None else round(float(x), nd)


def load_frames(n: int = 32, stride: int = 7) -> list[np.ndarray]:
    """``n`` decoded BGR frames spread over the sample clip."""
    from trakr.devtools.media import sample_clip_path

    cap = cv2.VideoCapture(str(sample_clip_path()), cv2.CAP_FFMPEG)
    frames, i = [], 0
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            if not frames:
                raise RuntimeError("cannot read the sample clip")
            cap.release()
            cap = cv2.VideoCapture(str(sample_clip_path()), cv2.CAP_FFMPEG)
            continue
        if i % stride == 0:
            frames.append(img)
        i += 1
    cap.release()
    return frames


class _CpuMeter:
    """CPU seconds of this process, of its helpers (RTSP server, redis-server, trakr workers) and of
    the whole machine (``other_cpu_percent``: everything else running on the box meanwhile)."""

    def __init__(self, extra_pids: list[int] = ()):
        self.proc = psutil.Process()
        self.extra = []
        for pid in extra_pids:
            with contextlib.suppress(psutil.Error):
                self.extra.append(psutil.Process(pid))
        self.t0 = time.monotonic()
        self.c0 = self._own()
        self.e0 = self._extra()
        self.s0 = psutil.cpu_times()

    def _own(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _extra(self) -> float:
        total = 0.0
        for p in self.extra:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def read(self) -> dict:
        dt = max(1e-6, time.monotonic() - self.t0)
        s1 = psutil.cpu_times()
        busy = lambda s: s.user + s.nice + s.system + getattr(s, "irq", 0) + getattr(s, "softirq", 0)  # noqa: E731
        machine = (busy(s1) - busy(self.s0)) / dt
        own = (self._own() - self.c0) / dt
        extra = (self._extra() - self.e0) / dt
        return {
            "process_cpu_percent": round(own * 100, 1),
            "helper_cpu_percent": round(extra * 100, 1),
            "machine_cpu_percent": round(machine * 100, 1),
            "other_cpu_percent": round(max(0.0, machine - own - extra) * 100, 1),
            "cores": psutil.cpu_count(),
        }


# ------------------------------------------------------------------------------------ raw model


def measure_raw(detector, frames: list[np.ndarray], batch_sizes: list[int], seconds: float = 1.5) -> dict:
    """Throughput of ``detector.detect`` on preloaded frames at each batch size (frames/s)."""
    from trakr.inference.base import letterbox_batch

    out: dict[int, float] = {}
    for bs in sorted(set(batch_sizes)):
        batch = [frames[i % len(frames)] for i in range(bs)]
        detector.detect(batch)  # warm-up (allocations, first-run kernels)
        n, t0, k = 0, time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds or n < 2 * bs:
            batch = [frames[(k + i) % len(frames)] for i in range(bs)]
            detector.detect(batch)
            n += bs
            k += bs
        out[bs] = n / (time.perf_counter() - t0)
    best = max(out, key=out.get)
    res = {
        "batch_fps": {str(k): round(v, 2) for k, v in out.items()},
        "best_batch": best,
        "fps": round(out[best], 2),
        "ms_per_frame": round(1000 / out[best], 2),
    }
    if hasattr(detector, "infer") and hasattr(detector, "imgsz"):
        tensor, _ = letterbox_batch([frames[i % len(frames)] for i in range(best)], detector.imgsz)
        detector.infer(tensor)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            detector.infer(tensor)
            n += best
        res["infer_only_fps"] = round(n / (time.perf_counter() - t0), 2)
    res["batch_ms"] = {str(k): round(1000 * k / v, 1) for k, v in out.items()}
    return res


# ------------------------------------------------------------------------------------ trakr run


def run_trakr(
    cfg: SysConfig, duration: float, warmup: float, output_dir: Path, helper_pids: list[int] = (), detector=None
) -> dict:
    """Run the real pipeline for ``duration`` s; measure the window after ``warmup`` s."""
    from trakr.pipeline import Pipeline
    from trakr.types import BatchResult

    pipeline = Pipeline(cfg, detector=detector, output_dir=output_dir)
    lock = threading.Lock()
    batches: list[tuple[float, int, int, float]] = []
    lats: list[tuple[float, float, int]] = []

    def on_batch(br: BatchResult) -> None:
        with lock:
            batches.append((br.done_at, len(br.frames), br.batch_size, br.infer_s))
            lats.extend((br.done_at, br.done_at - f.captured_at, f.camera_id) for f in br.frames)

    pipeline.add_batch_sink(on_batch)
    proc = psutil.Process()

    def snap() -> dict:
        gate = pipeline.gate.stats
        slots = pipeline.batcher.slots
        cams = {}
        for cid, (cam, st) in pipeline.reader_stats().items():
            g, s = gate.get(cid), slots.get(cid)
            cams[cid] = dict(
                name=cam.name,
                read=st.frames_read,
                published=st.frames_published,
                analysed=pipeline.stats.analysed_per_camera.get(cid, 0),
                seen=g.seen if g else 0,
                passed=g.passed if g else 0,
                dropped=s.dropped if s else 0,
                put=s.put_count if s else 0,
                reconnects=st.reconnects,
                state=st.state,
            )
        return {"t": time.time(), "m": time.monotonic(), "cams": cams}

    series: list[dict] = []
    stop = threading.Event()
    t_start = time.time()
    rss_peak = [proc.memory_info().rss]

    def sampler() -> None:
        last_cpu = proc.cpu_times()
        last_t = time.monotonic()
        last_n = 0
        while not stop.wait(1.0):
            now_m, now = time.monotonic(), time.time()
            cpu = proc.cpu_times()
            rss = proc.memory_info().rss
            rss_peak[0] = max(rss_peak[0], rss)
            dt = max(1e-6, now_m - last_t)
            cpu_pct = ((cpu.user + cpu.system) - (last_cpu.user + last_cpu.system)) / dt * 100
            with lock:
                recent = [lt for d, lt, _ in lats[last_n:]]
                last_n = len(lats)
            p = percentiles(recent, (50, 99))
            series.append(
                {
                    "t": round(now - t_start, 2),
                    "rss_mb": round(rss / 2**20, 1),
                    "cpu_percent": round(cpu_pct, 1),
                    "analysed_fps": round(len(recent) / dt, 1),
                    "p50_ms": _ms(p["p50"]),
                    "p99_ms": _ms(p["p99"]),
                }
            )
            last_cpu, last_t = cpu, now_m

    pipeline.start()
    sam = threading.Thread(target=sampler, name="bench-sampler", daemon=True)
    sam.start()
    try:
        time.sleep(warmup)
        a = snap()
        meter = _CpuMeter(list(helper_pids))
        time.sleep(max(0.5, duration - warmup))
        b = snap()
        cpu = meter.read()
    finally:
        stop.set()
        sam.join(timeout=5)
        pipeline.stop()
    window = b["m"] - a["m"]
    t_a, t_b = a["t"], b["t"]
    with lock:
        wb = [x for x in batches if t_a <= x[0] < t_b]
        wl = [x for x in lats if t_a <= x[0] < t_b]
    cams = []
    for cid in sorted(b["cams"]):
        ca, cb = a["cams"].get(cid), b["cams"][cid]
        if ca is None:
            continue
        d = {
            k: cb[k] - ca[k]
            for k in ("read", "published", "analysed", "seen", "passed", "dropped", "put", "reconnects")
        }
        lat_c = [lt for _, lt, c in wl if c == cid]
        pc = percentiles(lat_c)
        cams.append(
            {
                "camera": cid,
                "name": cb["name"],
                "state": cb["state"],
                "capture_fps": _r(d["read"] / window),
                "published_fps": _r(d["published"] / window),
                "analysed_fps": _r(d["analysed"] / window),
                "gate_pass_rate": _r(d["passed"] / d["seen"], 3) if d["seen"] else None,
                "dropped": d["dropped"],
                "drop_rate": _r(d["dropped"] / d["put"], 3) if d["put"] else None,
                "reconnects": d["reconnects"],
                "latency_ms": {k: _ms(v) for k, v in pc.items()},
            }
        )
    tot = lambda k: sum(c[k] or 0 for c in cams)  # noqa: E731
    n_frames = sum(x[1] for x in wb)
    infer = sum(x[3] for x in wb)
    lat_all = [lt for _, lt, _ in wl]
    p = percentiles(lat_all)
    steady = [s for s in series if s["t"] >= warmup]
    dropped, put = (
        sum(b["cams"][c]["dropped"] - a["cams"][c]["dropped"] for c in a["cams"] if c in b["cams"]),
        sum(b["cams"][c]["put"] - a["cams"][c]["put"] for c in a["cams"] if c in b["cams"]),
    )
    passed = sum(b["cams"][c]["passed"] - a["cams"][c]["passed"] for c in a["cams"] if c in b["cams"])
    seen = sum(b["cams"][c]["seen"] - a["cams"][c]["seen"] for c in a["cams"] if c in b["cams"])
    return {
        "cameras": len(cfg.cameras),
        "duration_s": duration,
        "window_s": round(window, 2),
        "batch_size": cfg.common.batch_size,
        "deadline_ms": cfg.trakr.batch.deadline_ms,
        "imgsz": cfg.trakr.detector.imgsz,
        "gate": cfg.trakr.gate.enabled,
        "backend": cfg.trakr.detector.backend,
        "per_camera": cams,
        "capture_fps": _r(tot("capture_fps")),
        "published_fps": _r(tot("published_fps")),
        "analysed_fps": _r(tot("analysed_fps")),
        "gate_pass_rate": _r(passed / seen, 3) if seen else None,
        "dropped": dropped,
        "drop_rate": _r(dropped / put, 3) if put else None,
        "saturated": bool(put and dropped / put > 0.05),
        "batches": len(wb),
        "batch_fill": _r(n_frames / sum(x[2] for x in wb), 3) if wb else None,
        "model_ms_per_frame": _r(1000 * infer / n_frames, 1) if n_frames else None,
        "model_ms_per_batch": _r(1000 * infer / len(wb), 1) if wb else None,
        "detector_busy": _r(infer / window, 3),
        "latency_ms": {
            **{k: _ms(v) for k, v in p.items()},
            "max": _ms(max(lat_all) if lat_all else None),
            "mean": _ms(float(np.mean(lat_all)) if lat_all else None),
        },
        "latency_p50_slope_ms_per_min": _r(
            slope_per_min(
                [s["t"] for s in steady], [s["p50_ms"] if s["p50_ms"] is not None else np.nan for s in steady]
            ),
            2,
        ),
        "rss_peak_mb": round(rss_peak[0] / 2**20, 1),
        "rss_slope_mb_per_min": _r(slope_per_min([s["t"] for s in steady], [s["rss_mb"] for s in steady]), 2),
        **cpu,
        "alerts": pipeline.stats.alerts,
        "detector_errors": pipeline.stats.detector_errors,
        "detector_stats": pipeline.detector.stats() or None,
        "series": series,
    }


# ------------------------------------------------------------------------------------ naive loop


def run_naive(
    addresses: list[str], detector, duration: float, realtime_files: bool = True, helper_pids: list[int] = ()
) -> dict:
    """One thread: read each camera in turn, ``detector.detect([frame])`` on every frame.

    Latency of a frame = time its result is ready - its stream time (first frame's wall time +
    its ``CAP_PROP_POS_MSEC`` offset), so a loop that cannot keep up shows a growing backlog.
    Files are paced like live cameras: a frame is not read before its stream time.
    """
    caps, bases, last_pos = [], [], []
    for a in addresses:
        caps.append(cv2.VideoCapture(a, cv2.CAP_FFMPEG))
        bases.append(None)
        last_pos.append(0.0)
    is_file = ["://" not in a for a in addresses]
    lats: list[tuple[float, float]] = []
    n = 0
    meter = _CpuMeter(list(helper_pids))
    t0 = time.monotonic()
    t_end = t0 + duration
    while time.monotonic() < t_end:
        for i, cap in enumerate(caps):
            if is_file[i] and realtime_files and bases[i] is not None:
                due = bases[i] + last_pos[i] / 1000.0 + 0.1  # next frame of a 10 fps clip
                wait = due - time.time()
                if wait > 0:
                    time.sleep(min(wait, 0.2))
            ok, img = cap.read()
            if not ok:
                if is_file[i]:  # loop the file, continuing its stream time
                    cap.release()
                    caps[i] = cap = cv2.VideoCapture(addresses[i], cv2.CAP_FFMPEG)
                    if bases[i] is not None:
                        bases[i] += last_pos[i] / 1000.0 + 0.1
                continue
            pos = cap.get(cv2.CAP_PROP_POS_MSEC)
            now = time.time()
            if bases[i] is None:
                bases[i] = now - pos / 1000.0
            last_pos[i] = pos
            detector.detect([img])
            done = time.time()
            lats.append((done, done - (bases[i] + pos / 1000.0)))
            n += 1
            if time.monotonic() >= t_end:
                break
    elapsed = time.monotonic() - t0
    cpu = meter.read()
    for cap in caps:
        cap.release()
    vals = [x for _, x in lats]
    half = len(vals) // 2
    p = percentiles(vals)
    return {
        "cameras": len(addresses),
        "duration_s": round(elapsed, 2),
        "analysed_fps": _r(n / elapsed),
        "latency_ms": {
            **{k: _ms(v) for k, v in p.items()},
            "max": _ms(max(vals) if vals else None),
            "first_half_p50": _ms(percentiles(vals[:half], (50,))["p50"]) if half else None,
            "second_half_p50": _ms(percentiles(vals[half:], (50,))["p50"]) if half else None,
        },
        "latency_slope_ms_per_min": _r(slope_per_min([d - lats[0][0] for d, _ in lats], [1000 * x for x in vals]), 1)
        if len(lats) > 2
        else None,
        **cpu,
    }


# ------------------------------------------------------------------------------------ gate check


def gate_check(
    base: dict,
    opts: BenchOptions,
    detector=None,
    max_frames: int | None = None,
    sweep_area: tuple[float, ...] = (0.02, 0.03, 0.05),
) -> dict:
    """Gated vs ungated on every frame of the real clip: same frames, same detections.

    ``sweep_area``: other ``area_threshold`` values compared the same way (skipped fraction and
    missed alerts), to show what a busier-scene setting would cost.
    """
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
    bs = max(1, cfg.common.batch_size)
    dets = []
    for i in range(0, len(images), bs):
        dets.extend(det.detect(images[i : i + bs]))
    t_det = time.perf_counter() - t_det
    t0 = 1_700_000_000.0
    gate_opts = cfg.trakr.gate.model_dump()
    gate_opts["enabled"] = True
    pause = {c.camera_id: c.alert_time_pause for c in cfg.cameras}

    def arm(gate_kw: dict | None) -> dict:
        gate = ChangeGate(**gate_kw) if gate_kw else None
        rules = {c.camera_id: CameraRules(c, roi_enabled=cfg.common.roi_en) for c in cfg.cameras}
        policy = AlertPolicy(
            dict(pause), {c.camera_id: bool(cfg.common.enable_alert and c.alert_en) for c in cfg.cameras}
        )
        alerts, analysed = [], 0
        for i, (img, d) in enumerate(zip(images, dets)):
            t = t0 + i / fps
            for cam in cfg.cameras:
                if gate is not None and not gate.check(Frame(cam.camera_id, img, t, i)):
                    continue
                analysed += 1
                for v in rules[cam.camera_id].evaluate((img.shape[1], img.shape[0]), d):
                    if policy.allow(v, t):
                        alerts.append((cam.camera_id, v.roi, v.violation, round(t - t0, 2)))
        return {
            "analysed": analysed,
            "alerts": alerts,
            "gate": {
                str(k): asdict(s) | {"pass_rate": round(s.pass_rate, 3)}
                for k, s in (gate.stats.items() if gate else [])
            },
        }

    def matched(a, pool) -> bool:
        return any(g[:3] == a[:3] and abs(g[3] - a[3]) <= pause[a[0]] for g in pool)

    def person(lst):
        return [a for a in lst if a[2] == "person"]

    ungated_arm = arm(None)
    ungated = ungated_arm["alerts"]
    seen = ungated_arm["analysed"]

    def compare(gated_arm: dict) -> dict:
        gated = gated_arm["alerts"]
        missed = [a for a in ungated if not matched(a, gated)]
        skipped = 1 - gated_arm["analysed"] / seen if seen else None
        return {
            "skipped_fraction": _r(skipped, 3),
            "frames_analysed": gated_arm["analysed"],
            "alerts": len(gated),
            "person_alerts": len(person(gated)),
            "missed": len(missed),
            "person_missed": len(person(missed)),
            "missed_alerts": [list(a) for a in missed],
            "extra_alerts": [list(g) for g in gated if not matched(g, ungated)],
            "target_met": bool(skipped is not None and skipped >= 0.5 and not person(missed)),
        }

    gated_arm = arm(gate_opts)
    main = compare(gated_arm)
    sweep = []
    for area in sweep_area or ():
        if area == gate_opts["area_threshold"]:
            continue
        r = compare(arm({**gate_opts, "area_threshold": area}))
        sweep.append(
            {"area_threshold": area, **{k: v for k, v in r.items() if k not in ("missed_alerts", "extra_alerts")}}
        )
    return {
        "clip": Path(clip).name,
        "frames": len(images),
        "fps": fps,
        "cameras": len(cfg.cameras),
        "imgsz": cfg.trakr.detector.imgsz,
        "gate_options": gate_opts,
        "detect_seconds": round(t_det, 1),
        "frames_analysed": {"ungated": seen, "gated": main["frames_analysed"]},
        "skipped_fraction": main["skipped_fraction"],
        "alerts": {"ungated": len(ungated), "gated": main["alerts"]},
        "person_alerts": {
            "ungated": len(person(ungated)),
            "gated": main["person_alerts"],
            "missed": main["person_missed"],
        },
        "missed": main["missed_alerts"],
        "extra": main["extra_alerts"],
        "matching": "an ungated alert is matched by a gated alert of the same camera, ROI and violation "
        "within the camera's alert_time_pause (stream time)",
        "gate_stats": gated_arm["gate"],
        "target_met": main["target_met"],
        "sweep": sweep,
    }


# ------------------------------------------------------------------------------------ capture check

_READER_CHILD = r"""
import json, os, resource, sys, threading, time
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;100000")
from trakr.capture.reader import CameraReader
from trakr.config import CameraConfig, CaptureOptions
from trakr.capture.slot import LatestFrameSlot
path, seconds = sys.argv[1], float(sys.argv[2])
slot = LatestFrameSlot(0)
taken = [0]
stop = threading.Event()
def consume():  # a consumer like the batcher: takes whatever is there every 40 ms
    while not stop.wait(0.04):
        if slot.take() is not None:
            taken[0] += 1
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic()
reader = CameraReader(CameraConfig(CameraId=0, Address=path), slot,
                      CaptureOptions(loop_files=False, realtime_files=True), sample_period_s=0.0)
c = threading.Thread(target=consume, daemon=True); c.start()
reader.start()
while time.monotonic() - w0 < seconds and reader.stats.frames_read < 10**9:
    time.sleep(0.05)
reader.stop(); stop.set(); c.join()
r1 = resource.getrusage(resource.RUSAGE_SELF); wall = time.monotonic() - w0
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"frames": reader.stats.frames_read, "published": reader.stats.frames_published,
                  "cpu_s": cpu, "wall_s": wall, "taken": taken[0]}))
"""

_CV2_CHILD = r"""
import json, resource, sys, time
import cv2
path, period = sys.argv[1], float(sys.argv[2])
cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic(); n = 0
while True:
    if period:  # paced like a live camera: frame n is there at w0 + n * period
        wait = w0 + n * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    ok, img = cap.read()
    if not ok:
        break
    n += 1
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"frames": n, "cpu_s": cpu, "wall_s": time.monotonic() - w0}))
"""


def make_720p25_clip(seconds: float = 10.0) -> Path:
    """A 1280x720 25 fps H.264 MP4 made from the sample clip with the ffmpeg CLI (cached)."""
    from trakr.devtools.media import sample_clip_path

    clip = sample_clip_path()
    out = clip.parent / f"vtest_720p25_{int(seconds)}s.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise RuntimeError("the capture check needs the ffmpeg CLI")
    tmp = out.with_suffix(".part.mp4")
    subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-i",
            str(clip),
            "-t",
            str(seconds),
            "-vf",
            "scale=1280:720,fps=25",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            str(tmp),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    os.replace(tmp, out)
    return out


def _ffmpeg_decode(path: Path, pix_fmt: str | None = None, realtime: bool = False) -> dict:
    """CPU of ``ffmpeg -benchmark`` decoding ``path`` to the null muxer (``-re``: at its frame rate)."""
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-nostdin", "-benchmark"]
    if realtime:
        cmd += ["-re"]
    cmd += ["-i", str(path)]
    if pix_fmt:
        cmd += ["-pix_fmt", pix_fmt]
    cmd += ["-f", "null", "-"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    m = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s", p.stderr)
    frames = re.findall(r"frame=\s*(\d+)", p.stderr)
    if p.returncode != 0 or not m or not frames:
        raise RuntimeError(f"ffmpeg -benchmark failed: {p.stderr[-500:]}")
    cpu = float(m.group(1)) + float(m.group(2))
    n = int(frames[-1])
    return {
        "frames": n,
        "cpu_s": round(cpu, 3),
        "ms_per_frame": round(1000 * cpu / n, 3),
        "command": " ".join(["ffmpeg", *cmd[1:]]),
    }


def _child(code: str, *args: str, timeout: float = 300) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"capture check child failed: {p.stderr[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def capture_check(seconds: float = 10.0) -> dict:
    """CPU per frame of a trakr CameraReader on a 720p/25 fps camera vs FFmpeg's own decode.

    Every measurement runs in its own process on the same file. FFmpeg is measured both as fast
    as it can go and with ``-re`` (at the clip's 25 fps, like a live camera): decoding one frame
    every 40 ms costs more CPU per frame than a tight loop (caches, thread wake-ups), and the
    reader is paced like a camera, so the ``-re`` figure is the like-for-like reference. A bare
    OpenCV read loop (fast and paced) separates OpenCV's cost from the reader's own.
    """
    clip = make_720p25_clip(max(seconds, 4.0))
    ff = _ffmpeg_decode(clip)
    ff_re = _ffmpeg_decode(clip, realtime=True)
    ff_re_bgr = _ffmpeg_decode(clip, "bgr24", realtime=True)
    cv = _child(_CV2_CHILD, str(clip), "0")
    cv_paced = _child(_CV2_CHILD, str(clip), "0.04")
    rd = _child(_READER_CHILD, str(clip), str(seconds + 2))
    per = lambda d: 1000 * d["cpu_s"] / max(1, d["frames"])  # noqa: E731
    reader_ms = per(rd)
    return {
        "clip": clip.name,
        "resolution": "1280x720",
        "fps": 25,
        "frames": ff["frames"],
        "ffmpeg_decode": ff,
        "ffmpeg_decode_realtime": ff_re,
        "ffmpeg_decode_realtime_bgr24": ff_re_bgr,
        "opencv_read_loop": {**cv, "ms_per_frame": round(per(cv), 3)},
        "opencv_read_loop_paced": {**cv_paced, "ms_per_frame": round(per(cv_paced), 3)},
        "trakr_reader": {
            **rd,
            "ms_per_frame": round(reader_ms, 3),
            "cpu_percent_per_camera": round(100 * rd["cpu_s"] / rd["wall_s"], 1),
        },
        "ratio_vs_ffmpeg_realtime": round(reader_ms / ff_re["ms_per_frame"], 2),
        "ratio_vs_ffmpeg_realtime_bgr24": round(reader_ms / ff_re_bgr["ms_per_frame"], 2),
        "ratio_vs_ffmpeg_unpaced": round(reader_ms / ff["ms_per_frame"], 2),
        "ratio_vs_opencv_paced": round(reader_ms / per(cv_paced), 2),
        "target": "reader CPU per frame <= 1.2 x ffmpeg -re decode of the same 720p/25 fps file",
        "target_met": reader_ms <= 1.2 * ff_re["ms_per_frame"],
    }


# ------------------------------------------------------------------------------------ redis backend


@contextlib.contextmanager
def redis_backend(workers: int, imgsz: int, threads: int | None = None) -> Iterator[Callable[[dict], None]]:
    """A private redis-server on a free 127.0.0.1 port and ``workers`` ``trakr worker``
    processes sharing this machine's cores; yields a patch for the bench config."""
    try:
        import trakr.inference.redis_client  # noqa: F401
    except ImportError as e:
        raise RuntimeError("--backend redis needs trakr.redis_detector (not in this build)") from e
    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        raise RuntimeError("--backend redis needs redis-server on PATH (apt-get install redis-server)")
    import socket

    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="trakr-bench-redis-")
    procs: list[subprocess.Popen] = []
    url = f"redis://127.0.0.1:{port}/0"
    threads = threads or max(1, (psutil.cpu_count() or 1) // workers)
    try:
        procs.append(
            subprocess.Popen(
                [
                    redis_bin,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tmp,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        client = redis.Redis.from_url(url, socket_timeout=1)
        for _ in range(100):
            with contextlib.suppress(redis.exceptions.RedisError):
                if client.ping():
                    break
            time.sleep(0.05)
        logs = []
        for i in range(workers):
            logf = open(Path(tmp) / f"worker{i}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(logf)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "trakr.cli",
                        "worker",
                        "--redis",
                        url,
                        "--imgsz",
                        str(imgsz),
                        "--threads",
                        str(threads),
                        "--name",
                        f"bench-worker-{i}",
                        "--log-level",
                        "WARNING",
                    ],
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )
            )
        time.sleep(1.5)  # workers open their sessions and create the group
        for p, logf in zip(procs[1:], logs):
            if p.poll() is not None:
                raise RuntimeError(f"trakr worker exited: {Path(logf.name).read_text()[-500:]}")

        def patch(raw: dict) -> None:
            tr = raw.setdefault("trakr", {})
            tr.setdefault("detector", {})["backend"] = "redis"
            r = tr.setdefault("redis", {})
            r["url"] = url
            r["max_inflight"] = max(2, workers)
            tr.setdefault("batch", {})["max_inflight"] = max(1, workers)

        patch.pids = [p.pid for p in procs]  # type: ignore[attr-defined]
        yield patch
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def local_detector(cfg: SysConfig):
    """The embedded ONNX detector with ``cfg``'s model and size (raw and naive references)."""
    from trakr.inference.onnx import OnnxDetector

    d = cfg.trakr.detector
    return OnnxDetector(d.model_path, d.imgsz, d.confidence, d.iou, d.threads, d.providers)


# ------------------------------------------------------------------------------------ whole bench


def machine_info() -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def evaluate_targets(run: dict, raw: dict | None) -> dict:
    """Where one trakr run stands against the issue's targets."""
    t = run["trakr"]
    out: dict = {}
    if raw:
        ratio = t["analysed_fps"] / raw["fps"] if raw["fps"] else None
        out["throughput"] = {
            "analysed_fps": t["analysed_fps"],
            "raw_fps": raw["fps"],
            "ratio": _r(ratio, 3),
            "saturated": t["saturated"],
            "target": ">= 0.90 of raw when saturated",
            "met": (ratio >= 0.9) if (t["saturated"] and ratio is not None) else None,
        }
        bms = raw.get("batch_ms", {}).get(str(t["batch_size"]))
        batch_ms = bms if bms is not None else t["model_ms_per_batch"]
    else:
        batch_ms = t["model_ms_per_batch"]
    p99 = t["latency_ms"]["p99"]
    if batch_ms is not None and p99 is not None:
        bound = 2 * (t["deadline_ms"] + batch_ms)
        out["latency"] = {
            "p99_ms": p99,
            "bound_ms": round(bound, 1),
            "target": "p99 < 2 x (deadline + one batch inference)",
            "met": p99 < bound,
            "p50_slope_ms_per_min": t["latency_p50_slope_ms_per_min"],
        }
    out["rss"] = {
        "slope_mb_per_min": t["rss_slope_mb_per_min"],
        "target": "< 1 MB/min after warm-up",
        "met": None if t["rss_slope_mb_per_min"] is None else abs(t["rss_slope_mb_per_min"]) < 1.0,
        "note": "meaningful on runs of several minutes (--duration 600)",
    }
    return out


def run_bench(opts: BenchOptions, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Run everything ``opts`` asks for; return the result dict (also written to ``opts.json_path``)."""
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", OPENCV_CAPTURE_OPTIONS)
    base = base_config_raw(opts)
    warmup = _warmup(opts)
    result: dict = {
        "command": opts.command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "warmup_s": warmup,
        "runs": [],
    }
    raw_res = None
    with contextlib.ExitStack() as stack:
        patch = None
        if opts.backend == "redis":
            progress(f"starting redis-server and {opts.workers} trakr worker(s)")
            with tempfile.TemporaryDirectory() as tmp:
                imgsz = bench_config(base, [], opts, Path(tmp)).trakr.detector.imgsz
            patch = stack.enter_context(redis_backend(opts.workers, imgsz, opts.threads))
        elif opts.backend != "onnx":
            raise ValueError(f"unknown backend {opts.backend!r} (onnx or redis)")
        for n in opts.cameras:
            with (
                camera_sources(n, opts.source) as (addresses, server),
                tempfile.TemporaryDirectory(prefix="trakr-bench-") as out,
            ):
                cfg = bench_config(base, addresses, opts, Path(out), patch)
                progress(
                    f"{n} camera(s): trakr pipeline for {opts.duration:g}s "
                    f"({opts.source}, imgsz {cfg.trakr.detector.imgsz}, batch {cfg.common.batch_size}, "
                    f"gate {'on' if cfg.trakr.gate.enabled else 'off'}, backend {cfg.trakr.detector.backend})"
                )
                pids = ([server.pid] if server is not None and server.pid else []) + list(getattr(patch, "pids", []))
                trakr_res = run_trakr(cfg, opts.duration, warmup, Path(out), pids)
                if opts.raw and raw_res is None:
                    progress("raw model throughput (detector alone, preloaded frames)")
                    det = local_detector(cfg)
                    try:
                        sizes = sorted({1, 2, 4, 8, cfg.common.batch_size})
                        raw_res = measure_raw(det, load_frames(), sizes, opts.raw_seconds)
                    finally:
                        det.close()
                    result["raw"] = raw_res
                run = {"cameras": n, "trakr": trakr_res}
                if opts.naive:
                    nd = opts.naive_duration or min(10.0, max(3.0, opts.duration / 2))
                    progress(f"{n} camera(s): naive loop for {nd:g}s")
                    det = local_detector(cfg)
                    try:
                        run["naive"] = run_naive(addresses, det, nd, helper_pids=pids[:1] if server else [])
                    finally:
                        det.close()
                ratios = {}
                if raw_res:
                    ratios["trakr_over_raw"] = _r(trakr_res["analysed_fps"] / raw_res["fps"], 3)
                    same = raw_res["batch_fps"].get(str(cfg.common.batch_size))
                    if same:
                        ratios["trakr_over_raw_same_batch"] = _r(trakr_res["analysed_fps"] / same, 3)
                if run.get("naive") and run["naive"]["analysed_fps"]:
                    ratios["trakr_over_naive"] = _r(trakr_res["analysed_fps"] / run["naive"]["analysed_fps"], 3)
                run["ratios"] = ratios
                run["targets"] = evaluate_targets(run, raw_res)
                result["runs"].append(run)
    if opts.gate_check:
        progress("gate check: gated vs ungated on every frame of the real clip")
        result["gate_check"] = gate_check(base, opts)
    if opts.capture_check:
        progress("capture check: 720p/25 fps reader vs ffmpeg decode")
        result["capture_check"] = capture_check(opts.capture_seconds)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if opts.plot:
        plot(result, opts.plot)
        result["plot"] = str(opts.plot)
    if opts.json_path:
        Path(opts.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json_path).write_text(json.dumps(result, indent=1, default=str))
    return result


# ------------------------------------------------------------------------------------ output


def plot(result: dict, path: Path) -> None:
    """PNG of latency (p50, p99) and RSS over time, one line per camera count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for run in result["runs"]:
        s = run["trakr"]["series"]
        t = [x["t"] for x in s]
        nan = float("nan")
        label = f"{run['cameras']} cam"
        (line,) = axes[0].plot(t, [x["p99_ms"] if x["p99_ms"] is not None else nan for x in s], label=f"{label} p99")
        axes[0].plot(
            t,
            [x["p50_ms"] if x["p50_ms"] is not None else nan for x in s],
            "--",
            color=line.get_color(),
            label=f"{label} p50",
        )
        axes[1].plot(t, [x["rss_mb"] for x in s], color=line.get_color(), label=label)
        axes[2].plot(t, [x["cpu_percent"] for x in s], color=line.get_color(), label=label)
    axes[0].set_ylabel("capture→result latency (ms)")
    axes[1].set_ylabel("RSS (MB)")
    axes[2].set_ylabel("CPU % (of one core)")
    axes[2].set_xlabel("seconds since start")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    w = result.get("warmup_s")
    if w:
        for ax in axes:
            ax.axvline(w, color="grey", lw=0.8, ls=":")
    fig.suptitle("trakr bench")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _f(x, fmt="{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def tables(result: dict) -> list:
    """Rich tables: per-camera detail of each run, the scaling summary, references and checks."""
    from rich.table import Table

    out = []
    for run in result["runs"]:
        t = run["trakr"]
        tab = Table(
            title=f"trakr, {run['cameras']} camera(s), {t['window_s']:.0f}s steady window "
            f"(imgsz {t['imgsz']}, batch {t['batch_size']}, deadline {t['deadline_ms']:g} ms, "
            f"gate {'on' if t['gate'] else 'off'})"
        )
        for col in ("camera", "capture fps", "analysed fps", "gate pass", "slot drops", "p50 ms", "p95 ms", "p99 ms"):
            tab.add_column(col, justify="right")
        for c in t["per_camera"]:
            lat = c["latency_ms"]
            tab.add_row(
                str(c["camera"]),
                _f(c["capture_fps"]),
                _f(c["analysed_fps"]),
                _f(c["gate_pass_rate"], "{:.0%}"),
                str(c["dropped"]),
                _f(lat["p50"], "{:.0f}"),
                _f(lat["p95"], "{:.0f}"),
                _f(lat["p99"], "{:.0f}"),
            )
        lat = t["latency_ms"]
        tab.add_row(
            "all",
            _f(t["capture_fps"]),
            _f(t["analysed_fps"]),
            _f(t["gate_pass_rate"], "{:.0%}"),
            str(t["dropped"]),
            _f(lat["p50"], "{:.0f}"),
            _f(lat["p95"], "{:.0f}"),
            _f(lat["p99"], "{:.0f}"),
            style="bold",
        )
        out.append(tab)
    summ = Table(title="trakr: " + ("scaling" if len(result["runs"]) > 1 else "summary"))
    for col in (
        "cameras",
        "capture fps",
        "analysed fps",
        "batch fill",
        "model ms/frame",
        "detector busy",
        "p50 ms",
        "p99 ms",
        "CPU %",
        "helpers CPU %",
        "peak RSS MB",
        "slot drops",
    ):
        summ.add_column(col, justify="right")
    for run in result["runs"]:
        t = run["trakr"]
        summ.add_row(
            str(run["cameras"]),
            _f(t["capture_fps"]),
            _f(t["analysed_fps"]),
            _f(t["batch_fill"], "{:.0%}"),
            _f(t["model_ms_per_frame"]),
            _f(t["detector_busy"], "{:.0%}"),
            _f(t["latency_ms"]["p50"], "{:.0f}"),
            _f(t["latency_ms"]["p99"], "{:.0f}"),
            _f(t["process_cpu_percent"], "{:.0f}"),
            _f(t["helper_cpu_percent"], "{:.0f}"),
            _f(t["rss_peak_mb"], "{:.0f}"),
            _f(t["drop_rate"], "{:.0%}"),
        )
    out.append(summ)
    raw = result.get("raw")
    ref = Table(
        title="references: raw model"
        + (f" {raw['fps']:.1f} fps at batch {raw['best_batch']}" if raw else "")
        + ", naive loop"
    )
    for col in (
        "cameras",
        "trakr fps",
        "naive fps",
        "naive p50 ms",
        "naive p99 ms",
        "trakr/raw",
        "trakr/naive",
        "p99 < bound",
        "machine CPU %",
    ):
        ref.add_column(col, justify="right")
    for run in result["runs"]:
        t, nv, r = run["trakr"], run.get("naive") or {}, run["ratios"]
        lat = run["targets"].get("latency") or {}
        ref.add_row(
            str(run["cameras"]),
            _f(t["analysed_fps"]),
            _f(nv.get("analysed_fps")),
            _f((nv.get("latency_ms") or {}).get("p50"), "{:.0f}"),
            _f((nv.get("latency_ms") or {}).get("p99"), "{:.0f}"),
            _f(r.get("trakr_over_raw"), "{:.2f}"),
            _f(r.get("trakr_over_naive"), "{:.2f}"),
            (
                f"{lat.get('p99_ms', 0):.0f} {'<' if lat.get('met') else '>'} {lat.get('bound_ms', 0):.0f}"
                if lat
                else "-"
            ),
            _f(t["machine_cpu_percent"], "{:.0f}"),
        )
    out.append(ref)
    raw = result.get("raw")
    if raw:
        rt = Table(title="raw model throughput (detector alone, preloaded frames)")
        for col in ("batch", "frames/s", "ms/batch"):
            rt.add_column(col, justify="right")
        for b, fps in raw["batch_fps"].items():
            rt.add_row(
                b + (" (best)" if int(b) == raw["best_batch"] else ""), f"{fps:.1f}", f"{raw['batch_ms'][b]:.0f}"
            )
        if raw.get("infer_only_fps"):
            rt.add_row(f"{raw['best_batch']} infer() only", f"{raw['infer_only_fps']:.1f}", "")
        out.append(rt)
    g = result.get("gate_check")
    if g:
        gt = Table(title=f"gate check: {g['frames']} frames x {g['cameras']} camera(s) of {g['clip']}")
        for col in (
            "area threshold",
            "frames analysed ungated",
            "gated",
            "skipped",
            "alerts ungated",
            "gated",
            "person alerts ungated",
            "person missed",
            "all missed",
            "target met",
        ):
            gt.add_column(col, justify="right")
        gt.add_row(
            f"{g['gate_options']['area_threshold']:g} (config)",
            str(g["frames_analysed"]["ungated"]),
            str(g["frames_analysed"]["gated"]),
            _f(g["skipped_fraction"], "{:.0%}"),
            str(g["alerts"]["ungated"]),
            str(g["alerts"]["gated"]),
            str(g["person_alerts"]["ungated"]),
            str(g["person_alerts"]["missed"]),
            str(len(g["missed"])),
            str(g["target_met"]),
        )
        for sw in g.get("sweep") or ():
            gt.add_row(
                f"{sw['area_threshold']:g}",
                str(g["frames_analysed"]["ungated"]),
                str(sw["frames_analysed"]),
                _f(sw["skipped_fraction"], "{:.0%}"),
                str(g["alerts"]["ungated"]),
                str(sw["alerts"]),
                str(g["person_alerts"]["ungated"]),
                str(sw["person_missed"]),
                str(sw["missed"]),
                str(sw["target_met"]),
            )
        out.append(gt)
    c = result.get("capture_check")
    if c:
        ct = Table(title=f"capture cost of one {c['resolution']}/{c['fps']} fps camera, CPU ms per frame")
        for col in (
            "ffmpeg",
            "ffmpeg -re",
            "ffmpeg -re bgr24",
            "OpenCV loop",
            "OpenCV paced",
            "trakr reader",
            "reader / ffmpeg -re",
            "reader / ffmpeg",
            "target met",
        ):
            ct.add_column(col, justify="right")
        ct.add_row(
            f"{c['ffmpeg_decode']['ms_per_frame']:.2f}",
            f"{c['ffmpeg_decode_realtime']['ms_per_frame']:.2f}",
            f"{c['ffmpeg_decode_realtime_bgr24']['ms_per_frame']:.2f}",
            f"{c['opencv_read_loop']['ms_per_frame']:.2f}",
            f"{c['opencv_read_loop_paced']['ms_per_frame']:.2f}",
            f"{c['trakr_reader']['ms_per_frame']:.2f}",
            f"{c['ratio_vs_ffmpeg_realtime']:.2f}",
            f"{c['ratio_vs_ffmpeg_unpaced']:.2f}",
            str(c["target_met"]),
        )
        out.append(ct)
    return out


def parse_cameras(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--cameras wants numbers like 1,2,4 (got {text!r})") from None
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise ValueError(f"--cameras wants numbers between 1 and 64 (got {text!r})")
    return vals
