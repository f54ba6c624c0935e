"""What a bench feeds trakr: sample cameras, preloaded frames, a reference detector, and a private
Redis backend (``redis-server`` plus ``trakr worker`` processes) on this machine.

Every helper process binds 127.0.0.1 on a free port and is stopped when its ``with`` block ends.

Example:
    >>> with camera_sources(2, "file") as (addresses, server):
    ...     len(addresses), server is None, addresses[0].endswith(".avi")
    (2, True, True)
    >>> frames = load_frames(2)
    >>> len(frames), frames[0].shape
    (2, (576, 768, 3))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psutil

from trakr.config import SysConfig
from trakr.devtools.rtsp_server import OPENCV_CAPTURE_OPTIONS, RtspServer
from trakr.inference.base import Detector


def use_tcp_for_opencv_rtsp() -> None:
    """OpenCV readers (naive loop, capture check) open RTSP over TCP, quickly."""
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", OPENCV_CAPTURE_OPTIONS)


@contextlib.contextmanager
def camera_sources(n: int, source: str) -> Iterator[tuple[list[str], RtspServer | None]]:
    """``n`` addresses of sample cameras: RTSP mounts of a local server, or the clip file."""
    from trakr.devtools.media import h264_annexb_path, sample_clip_path

    if source == "file":
        yield [str(sample_clip_path())] * n, None
        return
    if source != "rtsp":
        raise ValueError(f"unknown source {source!r} (rtsp or file)")
    use_tcp_for_opencv_rtsp()
    with RtspServer(h264_annexb_path(), mounts=n) as server:
        yield [server.url(i) for i in range(n)], server


def load_frames(n: int = 32, stride: int = 7) -> list[np.ndarray]:
    """``n`` decoded BGR frames spread over the sample clip (every ``stride``-th, looping)."""
    from trakr.devtools.media import sample_clip_path

    cap = cv2.VideoCapture(str(sample_clip_path()), cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    i = 0
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


def resolve_auto(cfg: SysConfig) -> SysConfig:
    """``cfg`` with ``detector.backend: auto`` replaced by the backend (and precision) it picks now,
    so the pipeline and the raw and naive references of one bench run use the same one."""
    d = cfg.trakr.detector
    if d.backend != "auto":
        return cfg
    det = local_detector(cfg)
    try:
        update: dict = {"backend": det.backend}
        if det.backend == "openvino" and det.precision in ("fp32", "bf16"):
            update["precision"] = det.precision
    finally:
        det.close()
    detector = d.model_copy(update=update)
    return cfg.model_copy(update={"trakr": cfg.trakr.model_copy(update={"detector": detector})})


def local_detector(cfg: SysConfig) -> Detector:
    """An in-process detector for ``cfg``'s model and size (the raw and naive references): the
    configured backend, or the embedded ONNX model when that backend is remote (Redis)."""
    d = cfg.trakr.detector
    if d.backend == "redis":
        from trakr.inference.onnx import OnnxDetector

        return OnnxDetector(d.model_path, d.imgsz, d.confidence, d.iou, d.threads, d.providers)
    from trakr.inference.factory import build_detector

    return build_detector(cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def redis_server(workdir: Path, timeout_s: float = 5.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """A private ``redis-server`` on a free 127.0.0.1 port, no persistence; yields ``(url, process)``."""
    import redis

    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    args = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(redis.exceptions.RedisError):
                if client.ping():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s:g} s")
            time.sleep(0.05)
        client.close()
        yield url, proc
    finally:
        _stop([proc])


def worker_command(url: str, imgsz: int, threads: int, name: str, batch: int | None = None) -> list[str]:
    """The ``trakr worker`` command line for a bench worker."""
    cmd = [sys.executable, "-m", "trakr.cli", "worker", "--redis", url, "--imgsz", str(imgsz)]
    cmd += ["--threads", str(threads), "--name", name, "--log-level", "WARNING"]
    if batch is not None:
        cmd += ["--batch", str(batch)]
    return cmd


class RedisBackend:
    """A config patch that points trakr at a private Redis and its workers; ``pids`` are the helpers."""

    def __init__(self, url: str, workers: int, pids: list[int]):
        self.url, self.workers, self.pids = url, workers, pids

    def __call__(self, raw: dict) -> None:
        tr = raw.setdefault("trakr", {})
        tr.setdefault("detector", {})["backend"] = "redis"
        r = tr.setdefault("redis", {})
        r["url"] = self.url
        r["max_inflight"] = max(2, self.workers)
        tr.setdefault("batch", {})["max_inflight"] = max(1, self.workers)


@contextlib.contextmanager
def redis_backend(workers: int, imgsz: int, threads: int | None = None) -> Iterator[RedisBackend]:
    """A private redis-server and ``workers`` ``trakr worker`` processes sharing this machine's
    cores; yields the config patch."""
    try:
        import trakr.inference.redis_client  # noqa: F401
    except ImportError as e:
        raise RuntimeError("--backend redis needs the redis package (pip install redis)") from e
    threads = threads or max(1, (psutil.cpu_count() or 1) // workers)
    tmp = Path(tempfile.mkdtemp(prefix="trakr-bench-redis-"))
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        with redis_server(tmp) as (url, server):
            try:
                for i in range(workers):
                    logf = open(tmp / f"worker{i}.log", "wb")  # noqa: SIM115 - closed below
                    logs.append(logf)
                    cmd = worker_command(url, imgsz, threads, f"bench-worker-{i}")
                    procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT))
                time.sleep(1.5)  # workers open their sessions and create the group
                for p, logf in zip(procs, logs):
                    if p.poll() is not None:
                        raise RuntimeError(f"trakr worker exited: {Path(logf.name).read_text()[-500:]}")
                yield RedisBackend(url, workers, [server.pid, *(p.pid for p in procs)])
            finally:
                _stop(procs)  # workers first, then the server
    finally:
        for f in logs:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
