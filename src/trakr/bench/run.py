"""``trakr bench``: how many cameras this box carries, and how close trakr gets to the machine's limit.

For each camera count N in ``--cameras``:

1. **trakr** (:mod:`trakr.bench.measure`): N sample cameras from the real clip (RTSP mounts of
   the local server the tests use, or the file at its native rate with ``--source file``) through
   the real pipeline for ``--duration`` seconds, measured over the steady window after
   ``--warmup``: per-camera capture / analysed fps, gate decisions by reason, slot drops; batch
   fill, model ms per frame, detector busy fraction and precision; p50/p95/p99 capture→result
   latency; CPU and peak RSS (``--plot`` draws them over time).
   With ``--detectors onnxruntime,openvino`` once per backend, on the same cameras.
2. **naive loop** (:mod:`trakr.bench.references`): one thread reading each camera in turn and
   running the model on every frame.
3. **peer** (``--peer roboflow``, :mod:`trakr.bench.peer`): Roboflow ``inference``'s
   InferencePipeline, in its own virtualenv, running the same model on the same cameras.

and once per detector backend the **raw model throughput** (the detector alone on preloaded
frames, at batch sizes 1, 2, 4, 8 and the one the pipeline used), and optionally ``--gate-check``
(:mod:`trakr.bench.gate_check`) and ``--capture-check`` (:mod:`trakr.bench.capture_check`).
Measurements run one after the other, never side by side.

Every measurement records the machine's load (:mod:`trakr.bench.machine`); one taken while other
processes used more than 10 % of the machine is marked ``"quiet": false`` and the report warns.
Everything goes into a JSON file (``--json``, :class:`~trakr.bench.results.BenchResult`); rich
tables are printed (:mod:`trakr.bench.report`); ``--figures FILE`` writes the README's
Performance table, and refuses to when the run was not quiet (``--allow-noisy`` writes it with
every noisy figure marked).

The figures command of docs/performance.md::

    trakr bench --cameras 1,4,8,16 --duration 20 --no-gate --detectors onnxruntime,openvino \
        --peer roboflow --no-naive --json docs/performance.json --figures docs/performance-table.md

Example (no camera counts: only the machine is described)::

    >>> r = run_bench(BenchOptions(cameras=[], json_path=None))
    >>> r.runs, r.machine.cores >= 1, r.quiet, list(r.to_json())[:3]
    ([], True, True, ['command', 'started', 'machine'])
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trakr.bench.capture_check import capture_check
from trakr.bench.gate_check import gate_check
from trakr.bench.machine import machine_info
from trakr.bench.measure import run_trakr, run_trakr_isolated
from trakr.bench.options import (
    BenchOptions,
    ConfigPatch,
    base_config_raw,
    bench_config,
    parse_cameras,
    parse_detectors,
)
from trakr.bench.peer import PEERS, PeerError, ensure_peer, run_peer
from trakr.bench.plot import plot
from trakr.bench.references import measure_raw, run_naive
from trakr.bench.report import NoisyFigures, tables, write_figures
from trakr.bench.results import BenchResult, PeerResult, RawResult, RunResult
from trakr.bench.sources import (
    camera_sources,
    load_frames,
    local_detector,
    redis_backend,
    resolve_auto,
    use_tcp_for_opencv_rtsp,
)
from trakr.bench.targets import evaluate_targets, ratios
from trakr.config import SysConfig

__all__ = ["BenchOptions", "NoisyFigures", "parse_cameras", "parse_detectors", "run_bench", "tables"]  # the CLI's

Progress = Callable[[str], None]


def _one_count(
    n: int,
    opts: BenchOptions,
    base: dict,
    patch: ConfigPatch | None,
    helper_pids: list[int],
    raws: dict[str, RawResult],
    progress: Progress,
    peer_python: Path | None = None,
) -> list[RunResult]:
    """On ``n`` cameras: trakr with each detector backend (and once per backend the raw model),
    then the naive loop and the peer on the same cameras."""
    warmup = opts.warmup_s()
    runs: list[RunResult] = []
    with (
        camera_sources(n, opts.source) as (addresses, server),
        tempfile.TemporaryDirectory(prefix="trakr-bench-") as out,
    ):
        server_pids = [server.pid] if server is not None and server.pid else []
        cfgs: list[SysConfig] = []
        detectors: list[str | None] = [*opts.detectors] if opts.detectors else [None]
        for detector in detectors:
            cfg = resolve_auto(bench_config(base, addresses, opts, Path(out), patch, detector))
            cfgs.append(cfg)
            d = cfg.trakr
            progress(
                f"{n} camera(s): trakr pipeline for {opts.duration:g}s ({opts.source}, imgsz {d.detector.imgsz}, "
                f"batch {cfg.common.batch_size}, gate {'on' if d.gate.enabled else 'off'}, backend {d.detector.backend})"
            )
            measure = run_trakr_isolated if opts.isolate else run_trakr
            trakr = measure(cfg, opts.duration, warmup, Path(out), server_pids + helper_pids)
            key = d.detector.backend
            raw = raws.get(key)
            if opts.raw and raw is None:
                progress(f"raw model throughput ({key} alone, preloaded frames)")
                det = local_detector(cfg)
                try:
                    raw = raws[key] = measure_raw(
                        det, load_frames(), sorted({1, 2, 4, 8, trakr.batch_size or 1}), opts.raw_seconds
                    )
                finally:
                    det.close()
            runs.append(
                RunResult(
                    cameras=n,
                    trakr=trakr,
                    naive=None,
                    ratios=ratios(trakr, raw, None),
                    targets=evaluate_targets(trakr, raw),
                )
            )
        cfg, first = cfgs[0], runs[0]  # naive loop and peer: once, beside the first backend's run
        if opts.naive:
            progress(f"{n} camera(s): naive loop for {opts.naive_s():g}s")
            det = local_detector(cfg)
            try:
                first.naive = run_naive(addresses, det, opts.naive_s(), helper_pids=server_pids)
            finally:
                det.close()
            first.ratios = ratios(first.trakr, raws.get(cfg.trakr.detector.backend), first.naive)
        if peer_python is not None:
            first.peer = _peer(n, cfg, addresses, opts, peer_python, server_pids, progress)
    return runs


def _peer(
    n: int,
    cfg: SysConfig,
    addresses: list[str],
    opts: BenchOptions,
    python: Path,
    helper_pids: list[int],
    progress: Progress,
) -> PeerResult:
    """The peer on the same cameras with trakr's model, size, threads and thresholds."""
    from trakr.inference.base import model_file

    d = cfg.trakr.detector
    threads = d.threads or (os.cpu_count() or 1)
    progress(f"{n} camera(s): peer ({opts.peer}) for {opts.duration:g}s, onnxruntime {threads} threads")
    try:
        return run_peer(
            python,
            addresses,
            model_file(d.model_path),
            d.imgsz,
            threads,
            d.confidence,
            d.iou,
            opts.duration,
            opts.warmup_s(),
            helper_pids,
        )
    except PeerError as e:
        progress(f"peer failed on {n} camera(s): {e}")
        return PeerResult.failed(n, str(e))


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
    if opts.peer is not None and opts.peer not in PEERS:
        raise ValueError(f"unknown peer {opts.peer!r} ({', '.join(PEERS)})")
    if opts.detectors and opts.backend != "onnx":
        raise ValueError("--detectors compares in-process backends; it does not combine with --backend redis")
    if opts.peer and opts.source != "rtsp":
        raise ValueError("--peer runs on the RTSP cameras: use it with --source rtsp")
    peer_python = ensure_peer(progress) if opts.peer and opts.cameras else None
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
            result.runs += _one_count(n, opts, base, patch, helper_pids, result.raw_by_detector, progress, peer_python)
        gated = dataclasses.replace(
            opts, gate=True, detectors=(opts.detectors or [])[:1] or None, naive=False, peer=None
        )
        for n in opts.gated_cameras:
            result.runs += _one_count(n, gated, base, patch, helper_pids, result.raw_by_detector, progress)
        result.raw = next(iter(result.raw_by_detector.values()), None)
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
    if opts.figures:
        write_figures(result, opts.figures, allow_noisy=opts.allow_noisy)  # refuses a noisy run unless allowed
    return result
