"""Redis Streams backend on real parts: a real redis-server on a free port, ``trakr worker``
subprocesses running the real model, frames of the real clip.

Each test uses its own Redis database number, so workers of one test never see another's
requests. imgsz 320 and single-threaded ONNX Runtime keep the whole file well under 90 s on two
shared cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import redis
import supervision as sv
from helpers import free_port
from helpers import wait_until as _wait

from trakr.config import RedisOptions, parse_config
from trakr.devtools.media import sample_clip_path
from trakr.inference.onnx import OnnxDetector
from trakr.inference.protocol import ProtocolError, decode_request, decode_result, encode_request, encode_result
from trakr.inference.redis_client import RedisDetector, RemoteDetectorError, with_redis_backend

IMGSZ = 320
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixtures


class RedisServer:
    """A private redis-server that a test may kill (SIGKILL) and restart on the same port."""

    def __init__(self, tmp: Path):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not on PATH: apt-get install redis-server (or run scripts/setup)")
        self.exe, self.tmp, self.port = exe, tmp, free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        r = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if r.ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Workers:
    """``python -m trakr.cli worker`` subprocesses, stopped (SIGKILL) at the end of the test."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, {}

    def start(self, url: str, name: str, *extra: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        cmd = [
            sys.executable,
            "-m",
            "trakr.cli",
            "worker",
            "--redis",
            url,
            "--imgsz",
            str(IMGSZ),
            "--threads",
            "1",
            "--batch",
            "8",
            "--name",
            name,
            "--backend",
            "onnxruntime",  # the tests compare with the embedded onnxruntime model exactly
            *extra,
        ]
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def wait_ready(self, url: str, names: list[str], timeout: float = 30) -> None:
        """Until every named worker is a consumer of the group (it has read once)."""
        r = redis.Redis.from_url(url)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                have = {c["name"].decode() for c in r.xinfo_consumers("trakr:frames", "trakr-workers")}
            except redis.exceptions.ResponseError:
                have = set()
            if set(names) <= have:
                return
            for n in names:
                if self.procs[n].poll() is not None:
                    raise RuntimeError(f"worker {n} exited: {self.log(n)[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"workers {names} not ready: " + " | ".join(self.log(n)[-500:] for n in names))

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop_all(self) -> None:
        for n in list(self.procs):
            self.kill(n)


@pytest.fixture
def workers(tmp_path) -> Workers:
    w = Workers(tmp_path)
    try:
        yield w
    finally:
        w.stop_all()


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_clip_path()))
    frames = []
    for i in range(80):
        ok, img = cap.read()
        assert ok
        if i % 5 == 0:  # 16 frames, 0.5 s apart: different scenes
            frames.append(img)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def embedded() -> OnnxDetector:
    return OnnxDetector(imgsz=IMGSZ, threads=1)


def _detector(url: str, **opts) -> RedisDetector:
    base = {"result_timeout_s": 10.0, "socket_timeout_s": 2.0}
    return RedisDetector(url, RedisOptions(**{**base, **opts}), imgsz=IMGSZ, confidence=0.35, iou=0.5)


# --------------------------------------------------------------------------- protocol


def test_protocol_round_trip_and_errors():
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    fields = encode_request("c:1", "trakr:results:c", [img, img], "raw", 0.3, 0.6, 1500)
    req = decode_request({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()})
    assert (req.batch_id, req.reply, req.size, req.confidence, req.iou, req.ttl_ms) == (
        "c:1",
        "trakr:results:c",
        (64, 64),
        0.3,
        0.6,
        1500,
    )
    assert all((f == img).all() for f in req.frames)
    jpeg = decode_request(encode_request("c:2", "r", [img], "jpeg", 0.3, 0.6, 0, quality=90))
    assert jpeg.frames[0].shape == img.shape
    rows = [np.zeros((0, 6), np.float32), np.array([[1, 2, 3, 4, 0.5, 7]], np.float32)]
    res = decode_result(encode_result("c:1", rows, model="m", worker="w"))
    assert [len(d) for d in res.detections] == [0, 1] and res.detections[1][0, 5] == 7
    with pytest.raises(ProtocolError, match="version"):
        decode_request({**fields, "v": "2"})
    with pytest.raises(ProtocolError, match="raw frame"):
        decode_request({**fields, "f1": b"short"})


def test_run_redis_option_switches_the_backend():
    cfg = parse_config({"common": {}, "cameras": []}).config
    red = with_redis_backend(cfg, "redis://h:1/0")
    assert (red.trakr.detector.backend, red.trakr.redis.url) == ("redis", "redis://h:1/0")
    assert cfg.trakr.detector.backend == "auto"  # the default: the fastest in-process backend


def test_worker_merges_clients_batches_skips_expired_and_answers_bad_requests(redis_server, clip_frames):
    from trakr.inference.base import letterbox
    from trakr.inference.worker import Worker

    url = redis_server.url(5)
    r = redis.Redis.from_url(url)
    boxed = [letterbox(f, IMGSZ)[0] for f in clip_frames[:2]]
    for c in ("a", "b", "c"):  # three clients, two frames each: one model run of 6 at batch 8
        r.xadd("trakr:frames", encode_request(f"{c}:0", f"res:{c}", boxed, "jpeg", 0.35, 0.5, 60000))
    r.xadd("trakr:frames", encode_request("old:0", "res:old", boxed, "jpeg", 0.35, 0.5, 1))  # expired
    r.xadd("trakr:frames", {**encode_request("new:0", "res:new", boxed, "raw", 0.35, 0.5, 0), "v": "9"})
    time.sleep(0.05)
    w = Worker(url, imgsz=IMGSZ, batch=8, threads=1, name="inproc")
    w.run(max_seconds=1.5)
    assert (w.stats.runs, w.stats.requests, w.stats.frames, w.stats.expired, w.stats.errors) == (1, 3, 6, 1, 1)
    for c in ("a", "b", "c"):
        ((_, fields),) = r.xrange(f"res:{c}")
        res = decode_result(fields)
        assert res.status == "ok" and res.worker == "inproc" and len(res.detections) == 2
        assert len(res.detections[0]) > 0 and res.detections[0][:, :4].max() <= IMGSZ
    assert r.xlen("res:old") == 0
    ((_, fields),) = r.xrange("res:new")
    assert decode_result(fields).status == "error" and b"version" in fields[b"error"]
    assert r.xlen("trakr:frames") == 0 and r.xpending("trakr:frames", "trakr-workers")["pending"] == 0
    assert 0 < r.ttl("res:a") <= 3600


# --------------------------------------------------------------------------- round trip


def test_two_workers_give_the_embedded_detections(redis_server, workers, clip_frames, embedded):
    url = redis_server.url(1)
    workers.start(url, "w1")
    workers.start(url, "w2")
    workers.wait_ready(url, ["w1", "w2"])
    raw, jpeg = _detector(url, encoding="raw", max_inflight=4), _detector(url, encoding="jpeg", jpeg_quality=90)
    try:
        batches = [clip_frames[i : i + 4] for i in range(0, 16, 4)]
        out: dict[int, list] = {}

        def send(i):
            out[i] = raw.detect(batches[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        remote = [d for i in range(4) for d in out[i]]
        local = embedded.detect(clip_frames)
        n_boxes = 0
        for r, e in zip(remote, local):  # raw pixels: the same model on the same input
            assert len(r) == len(e)
            order_r, order_e = np.lexsort(r.xyxy.T), np.lexsort(e.xyxy.T)
            assert np.abs(r.xyxy[order_r] - e.xyxy[order_e]).max(initial=0) < 0.5
            assert list(r.data["class_name"][order_r]) == list(e.data["class_name"][order_e])
            assert np.abs(r.confidence[order_r] - e.confidence[order_e]).max(initial=0) < 1e-3
            n_boxes += len(r)
        assert n_boxes > 50
        assert set(raw.counters.by_worker) == {"w1", "w2"}, raw.counters.by_worker  # both served
        # JPEG q90: the same objects, boxes within a few pixels
        matched = total = 0
        for j, e in zip(jpeg.detect(clip_frames[:8]), local[:8]):
            total += len(e)
            if len(j) and len(e):
                matched += int((sv.box_iou_batch(e.xyxy, j.xyxy).max(axis=1) > 0.8).sum())
        assert matched >= 0.9 * total
        assert raw.health == jpeg.health == "up"
        assert raw.counters.duplicates == raw.counters.timeouts == 0
    finally:
        raw.close()
        jpeg.close()


# --------------------------------------------------------------------------- faults


def test_an_openvino_worker_gives_the_embedded_detections(redis_server, workers, clip_frames, embedded):
    url = redis_server.url(6)
    workers.start(url, "ov", "--backend", "openvino", "--precision", "fp32")
    workers.wait_ready(url, ["ov"])
    det = _detector(url, encoding="raw")
    try:
        remote = det.detect(clip_frames[:8])
    finally:
        det.close()
    assert "openvino" in workers.log("ov") and "fp32" in workers.log("ov")  # the start line says what runs
    n_boxes = 0
    for r, e in zip(remote, embedded.detect(clip_frames[:8])):  # same model, same input, same precision
        assert len(r) == len(e)
        o_r, o_e = np.lexsort(r.xyxy.T), np.lexsort(e.xyxy.T)
        assert np.abs(r.xyxy[o_r] - e.xyxy[o_e]).max(initial=0) < 1.0
        assert list(r.data["class_name"][o_r]) == list(e.data["class_name"][o_e])
        n_boxes += len(r)
    assert n_boxes > 20 and det.counters.by_worker == {"ov": 1}


def test_worker_killed_mid_batch_is_reclaimed_and_answered_once(redis_server, workers, clip_frames):
    url = redis_server.url(2)
    for n in ("k1", "k2"):  # slow workers, so that a kill lands inside a batch
        workers.start(url, n, "--delay-ms", "300", "--visibility-timeout", "1.0")
    workers.wait_ready(url, ["k1", "k2"])
    det = _detector(url, encoding="jpeg", max_inflight=4)
    r = redis.Redis.from_url(url)
    results: list = []
    errors: list = []

    def client(k):
        for i in range(6):
            try:
                results.append(len(det.detect(clip_frames[(k * 6 + i) % 16 : (k * 6 + i) % 16 + 2])))
            except Exception as e:  # noqa: BLE001 - the test asserts there are none
                errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    try:
        for t in threads:
            t.start()

        def k1_holds_a_batch():
            pend = r.xpending("trakr:frames", "trakr-workers")
            return any(c["name"] == b"k1" and c["pending"] > 0 for c in pend["consumers"])

        assert _wait(k1_holds_a_batch, 20, 0.01)
        workers.kill("k1")  # SIGKILL while the batch is pending on k1 (inside its 300 ms)
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(results) == 18 and det.counters.results == 18 == det.counters.sent
        assert det.counters.timeouts == 0
        assert "reclaimed" in workers.log("k2")
        assert r.xpending("trakr:frames", "trakr-workers")["pending"] == 0
    finally:
        det.close()


def test_redis_restart_mid_run_pipeline_resumes(tmp_path, workers):
    from trakr.pipeline import Pipeline

    server = RedisServer(tmp_path)
    server.start()
    try:
        url = server.url(0)
        workers.start(url, "r1")
        workers.wait_ready(url, ["r1"])
        cfg = parse_config(
            {
                "common": {"batch_size": 2, "ServerNotReachableLimit": 100},
                "trakr": {
                    "detector": {"imgsz": IMGSZ, "backend": "redis"},
                    "gate": {"enabled": False},
                    "capture": {"loop_files": True},
                    "redis": {
                        "url": url,
                        "result_timeout_s": 1.0,
                        "socket_timeout_s": 0.5,
                        "fallback_to_embedded": False,
                    },
                },
                "cameras": [{"CameraId": 1, "Address": str(sample_clip_path()), "Detection": "person"}],
            }
        ).config
        p = Pipeline(cfg, output_dir=tmp_path / "out")
        p.start()
        try:
            assert _wait(lambda: p.stats.frames_analysed >= 5, 20), p.stats
            server.kill()
            time.sleep(1.5)
            before = p.stats.frames_analysed
            server.start()  # same port, empty: no stream, no group
            assert _wait(lambda: p.stats.frames_analysed >= before + 10, 25), (p.stats, workers.log("r1")[-1500:])
            assert p.stats.detector_errors > 0  # the outage was seen, and survived
            assert workers.procs["r1"].poll() is None
            assert "reachable again" in workers.log("r1")
        finally:
            p.stop()
    finally:
        server.kill()


def test_server_down_falls_back_to_embedded_and_recovers(redis_server, workers, clip_frames):
    url = redis_server.url(3)
    det = RedisDetector(
        url,
        RedisOptions(result_timeout_s=0.4, probe_interval_s=0.3, socket_timeout_s=1.0),
        imgsz=IMGSZ,
        server_not_reachable_limit=2,
        threads=1,
    )
    states: list[str] = []
    det.health_hooks.append(states.append)
    try:
        with pytest.raises(RemoteDetectorError):  # no worker: a timeout, not yet "down"
            det.detect(clip_frames[:1])
        assert det.health == "unknown"
        served = det.detect(clip_frames[:1])  # 2nd timeout: down, and this batch is served by the fallback
        assert det.health == "down" and states == ["down"] and len(served[0]) > 0
        assert det.detect(clip_frames[:1]) and det.counters.fallback_batches == 2
        workers.start(url, "f1")
        assert _wait(lambda: det.health == "up", 30), workers.log("f1")[-1500:]
        assert states == ["down", "up"]
        fb = det.counters.fallback_batches
        assert len(det.detect(clip_frames[:2])) == 2 and det.counters.fallback_batches == fb
    finally:
        det.close()


# --------------------------------------------------------------------------- overload


def test_overload_one_slow_worker_bounded_inflight_drops_counted(redis_server, workers, tmp_path):
    from trakr.pipeline import Pipeline

    url = redis_server.url(4)
    workers.start(url, "slow", "--delay-ms", "250")
    workers.wait_ready(url, ["slow"])
    clip = str(sample_clip_path())
    cfg = parse_config(
        {
            "common": {"batch_size": 2},
            "trakr": {
                "detector": {"imgsz": IMGSZ, "backend": "redis"},
                "gate": {"enabled": False},
                "batch": {"max_inflight": 4},
                "capture": {"loop_files": True},
                "redis": {"url": url, "max_inflight": 2, "result_timeout_s": 5.0, "encoding": "jpeg"},
            },
            "cameras": [{"CameraId": i, "Address": clip, "Detection": "person"} for i in range(6)],
        }
    ).config
    p = Pipeline(cfg, output_dir=tmp_path / "out")
    r = redis.Redis.from_url(url)
    proc = psutil.Process()
    p.start()
    try:
        det: RedisDetector = p.detector
        assert _wait(lambda: p.stats.frames_analysed >= 4, 20)
        time.sleep(4)  # warm-up: six decoders, trackers and the JPEG encoders allocate their buffers once
        rss0, xlen_max, t_end = proc.memory_info().rss, 0, time.monotonic() + 8
        lat_early = sorted(p.stats.latencies)[len(p.stats.latencies) // 2]
        while time.monotonic() < t_end:
            xlen_max = max(xlen_max, r.xlen("trakr:frames"))
            assert det.counters.inflight <= 2
            time.sleep(0.05)
        lats = list(p.stats.latencies)[-10:]
        rss1 = proc.memory_info().rss
        drops = sum(s.dropped for s in p.batcher.slots.values())
        readers = sum(st.frames_read for _, st in p.reader_stats().values())
    finally:
        p.stop()
    assert det.counters.max_inflight_seen <= 2 and xlen_max <= 2
    assert det.counters.timeouts == 0 and det.counters.results >= 10
    assert readers > 3 * p.stats.frames_analysed  # the cameras outran the worker...
    assert drops > readers / 2  # ...and the surplus was dropped at the slots, counted
    assert sorted(lats)[len(lats) // 2] < max(3 * lat_early, 2.0)  # latency stays flat
    assert rss1 - rss0 < 60e6
