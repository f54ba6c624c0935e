"""``trakr bench``: how many cameras this box carries, and how close trakr gets to the machine's limit.

For each camera count N in ``--cameras``:

1. **trakr** (:mod:`trakr.bench.measure`): N sample cameras from the real clip (RTSP mounts of
   the local server the tests use, or the file at its native rate with ``--source file``) through
   the real pipeline for ``--duration`` seconds, measured over the steady window after
   ``--warmup``: per-camera capture / analysed fps, gate decisions by reason, slot drops; batch
   fill, model ms per frame, detector busy fraction and precision; p50/p95/p99 capture→result
   latency; CPU and peak RSS (``--plot`` draws them over time).
2. **naive loop** (:mod:`trakr.bench.references`): one thread reading each camera in turn and
   running the model on every frame.

and once per bench the **raw model throughput** (the detector alone on preloaded frames, at batch
sizes 1, 2, 4, 8 and the configured one), and optionally ``--gate-check``
(:mod:`trakr.bench.gate_check`) and ``--capture-check`` (:mod:`trakr.bench.capture_check`).

Every measurement records the machine's load (:mod:`trakr.bench.machine`); one taken while other
processes used more than 10 % of the machine is marked ``"quiet": false`` and the report warns.
Everything goes into a JSON file (``--json``, :class:`~trakr.bench.results.BenchResult`); rich
tables are printed (:mod:`trakr.bench.report`).

The command docs/performance.md shows::

    trakr bench --cameras 1,2,4,8 --duration 20 --plot bench.png --gate-check --capture-check

Example (no camera counts: only the machine is described)::

    >>> r = run_bench(BenchOptions(cameras=[], json_path=None))
    >>> r.runs, r.machine.cores >= 1, r.quiet, list(r.to_json())[:3]
    ([], True, True, ['command', 'started', 'machine'])
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trakr.bench.capture_check import capture_check
from trakr.bench.gate_check import gate_check
from trakr.bench.machine import machine_info
from trakr.bench.measure import run_trakr
from trakr.bench.options import BenchOptions, ConfigPatch, base_config_raw, bench_config, parse_cameras
from trakr.bench.plot import plot
from trakr.bench.references import measure_raw, run_naive
from trakr.bench.report import tables
from trakr.bench.results import BenchResult, RawResult, RunResult
from trakr.bench.sources import (
    camera_sources,
    load_frames,
    local_detector,
    redis_backend,
    resolve_auto,
    use_tcp_for_opencv_rtsp,
)
from trakr.bench.targets import evaluate_targets, ratios

__all__ = ["BenchOptions", "parse_cameras", "run_bench", "tables"]  # what the CLI uses

Progress = Callable[[str], None]


def _one_count(
    n: int,
    opts: BenchOptions,
    base: dict,
    patch: ConfigPatch | None,
    helper_pids: list[int],
    raw: RawResult | None,
    progress: Progress,
) -> tuple[RunResult, RawResult | None]:
    """trakr, then (once) the raw model, then the naive loop, on ``n`` cameras."""
    warmup = opts.warmup_s()
    with (
        camera_sources(n, opts.source) as (addresses, server),
        tempfile.TemporaryDirectory(prefix="trakr-bench-") as out,
    ):
        cfg = resolve_auto(bench_config(base, addresses, opts, Path(out), patch))
        d = cfg.trakr
        progress(
            f"{n} camera(s): trakr pipeline for {opts.duration:g}s ({opts.source}, imgsz {d.detector.imgsz}, "
            f"batch {cfg.common.batch_size}, gate {'on' if d.gate.enabled else 'off'}, backend {d.detector.backend})"
        )
        server_pids = [server.pid] if server is not None and server.pid else []
        trakr = run_trakr(cfg, opts.duration, warmup, Path(out), server_pids + helper_pids)
        if opts.raw and raw is None:
            progress("raw model throughput (detector alone, preloaded frames)")
            det = local_detector(cfg)
            try:
                raw = measure_raw(det, load_frames(), sorted({1, 2, 4, 8, trakr.batch_size or 1}), opts.raw_seconds)
            finally:
                det.close()
        naive = None
        if opts.naive:
            progress(f"{n} camera(s): naive loop for {opts.naive_s():g}s")
            det = local_detector(cfg)
            try:
                naive = run_naive(addresses, det, opts.naive_s(), helper_pids=server_pids)
            finally:
                det.close()
    run = RunResult(
        cameras=n, trakr=trakr, naive=naive, ratios=ratios(trakr, raw, naive), targets=evaluate_targets(trakr, raw)
    )
    return run, raw


def run_bench(opts: BenchOptions, progress: Progress = lambda s: None) -> BenchResult:
    """Run everything ``opts`` asks for; return the result (also written to ``opts.json_path``)."""
    use_tcp_for_opencv_rtsp()
    base = base_config_raw(opts)
    result = BenchResult(
        command=opts.command,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=machine_info(),
        options=opts.to_json(),
        warmup_s=opts.warmup_s(),
    )
    with contextlib.ExitStack() as stack:
        patch: ConfigPatch | None = None
        helper_pids: list[int] = []
        if opts.backend == "redis":
            progress(f"starting redis-server and {opts.workers} trakr worker(s)")
            with tempfile.TemporaryDirectory() as tmp:
                imgsz = bench_config(base, [], opts, Path(tmp)).trakr.detector.imgsz
            backend = stack.enter_context(redis_backend(opts.workers, imgsz, opts.threads))
            patch, helper_pids = backend, backend.pids
        elif opts.backend != "onnx":
            raise ValueError(f"unknown backend {opts.backend!r} (onnx or redis)")
        for n in opts.cameras:
            run, result.raw = _one_count(n, opts, base, patch, helper_pids, result.raw, progress)
            result.runs.append(run)
    if opts.gate_check:
        progress("gate check: gated vs ungated on every frame of the real clip")
        result.gate_check = gate_check(base, opts)
    if opts.capture_check:
        progress("capture check: 720p/25 fps reader vs ffmpeg decode")
        result.capture_check = capture_check(opts.capture_seconds)
    result.machine.loadavg_end = [round(x, 2) for x in os.getloadavg()]
    if opts.plot:
        plot(result, opts.plot)
        result.plot = str(opts.plot)
    if opts.json_path:
        Path(opts.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json_path).write_text(json.dumps(result.to_json(), indent=1, default=str))
    return result
