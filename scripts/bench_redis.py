#!/usr/bin/env python
"""Measure the Redis Streams backend on this machine (the figures in docs/redis-protocol.md).

    .venv/bin/python scripts/bench_redis.py [--imgsz 320] [--seconds 12] [--threads 1]

1. Frame encoding: bytes per letterboxed frame and encode/decode ms, JPEG q80/q90 vs raw.
2. Where NMS runs: bytes of the raw model output per frame vs the NMS rows a worker sends.
3. Round-trip overhead per batch of 4: RedisDetector with one idle worker vs the embedded
   OnnxDetector, same model, same thread count, sequential calls.
4. Throughput with 1 and then 2 workers: 4 client threads keep batches of 4 in flight for
   ``--seconds``; frames per second, and the ratio.

It starts its own redis-server on a free 127.0.0.1 port and ``trakr worker`` subprocesses, and
stops them at the end. Everything runs on this machine, so client, Redis and workers share its
cores: on 2 cores the 2-worker figure is bounded by the CPU, not by the protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from trakr.bench.machine import CpuMeter, load_1m  # noqa: E402
from trakr.bench.results import MachineLoad  # noqa: E402
from trakr.bench.sources import redis_server, worker_command  # noqa: E402
from trakr.config import RedisOptions  # noqa: E402
from trakr.devtools.media import sample_clip_path  # noqa: E402
from trakr.inference.base import letterbox, letterbox_batch, postprocess  # noqa: E402
from trakr.inference.onnx import OnnxDetector  # noqa: E402
from trakr.inference.protocol import decode_frame, encode_frame  # noqa: E402
from trakr.inference.redis_client import RedisDetector  # noqa: E402


def clip_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_clip_path()))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    return out


def ms(f, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) * 1000 / reps


def bench_encoding(frames: list[np.ndarray], sizes: list[int]) -> None:
    print(f"\n## 1. frame encoding (mean over {len(frames)} clip frames)")
    print("| imgsz | encoding | bytes/frame | encode ms | decode ms |")
    print("|---|---|---|---|---|")
    for sz in sizes:
        boxed = [letterbox(f, sz)[0] for f in frames]
        for enc, q in (("raw", 0), ("jpeg", 80), ("jpeg", 90)):
            blobs = [encode_frame(b, enc, q) for b in boxed]
            e = statistics.mean(ms(lambda b=b, enc=enc, q=q: encode_frame(b, enc, q), 5) for b in boxed)
            d = statistics.mean(ms(lambda x=x, enc=enc, sz=sz: decode_frame(x, enc, (sz, sz)), 5) for x in blobs)
            name = enc if enc == "raw" else f"jpeg q{q}"
            print(f"| {sz} | {name} | {statistics.mean(map(len, blobs)) / 1024:.1f} KiB | {e:.2f} | {d:.2f} |")


def bench_nms(frames: list[np.ndarray], imgsz: int, threads: int) -> None:
    det = OnnxDetector(imgsz=imgsz, threads=threads)
    tensor, lbs = letterbox_batch(frames[:4], imgsz)
    out = det.infer(tensor)
    per_frame = out[0].nbytes
    dets = postprocess(out, lbs, det.class_names, 0.35, 0.5)
    rows = statistics.mean(len(d) for d in dets) * 6 * 4
    nms = ms(lambda: postprocess(out, lbs, det.class_names, 0.35, 0.5), 20) / 4
    print(f"\n## 2. where NMS runs (imgsz {imgsz})")
    print(
        f"raw model output {per_frame / 1024:.0f} KiB/frame vs NMS rows {rows:.0f} B/frame; "
        f"decode+NMS costs {nms:.2f} ms/frame"
    )


class Rig:
    """A private redis-server (:func:`trakr.bench.sources.redis_server`) and the workers added to it."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path):
        self.url, self.redis = stack.enter_context(redis_server(tmp))
        self.workers: list[subprocess.Popen] = []
        stack.callback(self.close)

    def add_worker(self, imgsz: int, threads: int, batch: int) -> None:
        name = f"bench{len(self.workers)}"
        self.workers.append(
            subprocess.Popen(
                worker_command(self.url, imgsz, threads, name, batch),
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
        )
        r = redis.Redis.from_url(self.url, socket_timeout=5)
        for _ in range(300):
            try:
                if name in {c["name"].decode() for c in r.xinfo_consumers("trakr:frames", "trakr-workers")}:
                    return
            except redis.exceptions.ResponseError:
                pass
            time.sleep(0.1)
        raise RuntimeError("worker did not start")

    def close(self) -> None:
        for p in self.workers:
            p.kill()
            p.wait()


def bench_overhead(rig: Rig, frames, imgsz: int, threads: int, reps: int) -> None:
    batch = frames[:4]
    emb = OnnxDetector(imgsz=imgsz, threads=threads)
    print(f"\n## 3. round trip per batch of 4 at imgsz {imgsz}, {threads} ORT thread(s), one idle worker")
    print("| backend | median ms/batch | p90 |")
    print("|---|---|---|")

    def timed_ms(det) -> list[float]:
        for _ in range(3):  # warm-up
            det.detect(batch)
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            det.detect(batch)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    t = timed_ms(emb)
    base = statistics.median(t)
    print(f"| embedded | {base:.1f} | {np.percentile(t, 90):.1f} |")
    for enc in ("jpeg", "raw"):
        det = RedisDetector(rig.url, RedisOptions(encoding=enc), imgsz=imgsz)
        t = timed_ms(det)
        med = statistics.median(t)
        print(f"| redis {enc} | {med:.1f} (+{med - base:.1f}, x{med / base:.2f}) | {np.percentile(t, 90):.1f} |")
        det.close()


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def throughput(rig: Rig, frames, imgsz: int, seconds: float, clients: int = 4) -> tuple[float, float]:
    """(frames/s, CPU ms per frame of client + redis-server + workers)."""
    det = RedisDetector(rig.url, RedisOptions(max_inflight=clients, result_timeout_s=30), imgsz=imgsz)
    det.detect(frames[:4])
    pids = [os.getpid(), rig.redis.pid, *(w.pid for w in rig.workers)]
    cpu0 = cpu_s(pids)
    stop = time.monotonic() + seconds
    done = [0] * clients

    def loop(k):
        i = k
        while time.monotonic() < stop:
            det.detect(frames[i % 12 : i % 12 + 4])
            done[k] += 4
            i += 1

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    fps = sum(done) / (time.monotonic() - t0)
    cpu_ms = (cpu_s(pids) - cpu0) * 1000 / max(1, sum(done))
    det.close()
    return fps, cpu_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1, help="ORT threads of the embedded model and of each worker")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    frames = clip_frames(40)
    load = os.getloadavg()[0]
    print(f"# trakr Redis backend bench: {os.cpu_count()} CPU(s), load average {load:.2f}, imgsz {a.imgsz}")
    bench_encoding(frames[::4], sorted({320, 416, 640, a.imgsz}))
    bench_nms(frames, a.imgsz, a.threads)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        rig = Rig(stack, Path(tmp))
        rig.add_worker(a.imgsz, a.threads, 8)
        bench_overhead(rig, frames, a.imgsz, a.threads, a.reps)
        meter = CpuMeter()  # this process and its children (redis-server, workers) vs everything else
        one = throughput(rig, frames, a.imgsz, a.seconds)
        rig.add_worker(a.imgsz, a.threads, 8)
        two = throughput(rig, frames, a.imgsz, a.seconds)
        emb = OnnxDetector(imgsz=a.imgsz, threads=a.threads)
        t0, n, c0 = time.monotonic(), 0, cpu_s([os.getpid()])
        while time.monotonic() - t0 < a.seconds / 2:
            emb.detect(frames[n % 12 : n % 12 + 4])
            n += 1
        emb_fps = 4 * n / (time.monotonic() - t0)
        emb_cpu = (cpu_s([os.getpid()]) - c0) * 1000 / (4 * n)
        machine = MachineLoad.of(meter.read(), load, load_1m())
    print(f"\n## 4. throughput, batches of 4, 4 client threads, {a.seconds:g}s each, {a.threads} ORT thread(s)/worker")
    print(f"load average at start {load:.2f}, now {os.getloadavg()[0]:.2f}, on {os.cpu_count()} CPUs")
    if not machine.quiet:
        print(f"**warning: not a quiet machine: {machine.describe()}; these figures are not figures**")
    print("| backend | frames/s | CPU ms/frame (client + redis + workers) |")
    print("|---|---|---|")
    print(f"| embedded, 1 caller | {emb_fps:.1f} | {emb_cpu:.1f} |")
    print(f"| redis, 1 worker | {one[0]:.1f} | {one[1]:.1f} |")
    print(f"| redis, 2 workers | {two[0]:.1f} | {two[1]:.1f} |")
    print(
        f"ratios from this run: 2 workers / 1 worker = {two[0] / one[0]:.2f}; 1 worker / embedded = "
        f"{one[0] / emb_fps:.2f}; CPU per frame redis(1 worker) / embedded = {one[1] / emb_cpu:.2f}"
    )


if __name__ == "__main__":
    main()
