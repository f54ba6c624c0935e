"""``trakr worker``: an inference worker serving trakr clients through Redis Streams.

Each worker is one consumer of the consumer group on the frames stream. A loop iteration:

1. every ``visibility_timeout_s / 2``, ``XAUTOCLAIM`` entries another worker left unacknowledged
   for longer than ``visibility_timeout_s`` (it died mid-batch) and serve them first;
2. ``XREADGROUP ... COUNT batch BLOCK`` new entries; whatever is waiting, from any client, is
   merged and run through the model in chunks of at most ``batch`` frames (one ``session.run``
   per chunk: where a GPU earns its keep);
3. per request: NMS with the client's thresholds, then in one ``MULTI``: ``XADD`` the result to
   the client's reply stream (``MAXLEN ~``, ``EXPIRE``), ``XACK`` and ``XDEL`` the request.

A request older than its ``ttl_ms`` (its client has given up) is acknowledged and dropped
unserved. Lost connections (Redis restarted) are retried with backoff; a missing consumer group
is recreated. ``delay_ms`` adds a sleep before every model run: it exists only to simulate a slow
worker in tests and benchmarks.

The model runs on any in-process backend (``backend``: ``onnxruntime``, ``openvino`` or ``auto``,
see :mod:`trakr.inference.factory`); ONNX Runtime takes ``providers`` (CUDA, TensorRT with
``onnxruntime-gpu``; a missing one falls back with a warning naming it).

Example (needs Redis)::

    Worker("redis://localhost:6379/0", batch=8, backend="onnxruntime", providers=["CUDAExecutionProvider"]).run()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from trakr.config import RedisOptions
from trakr.inference.base import InputBuffer, model_file, model_id, postprocess
from trakr.inference.protocol import (
    DET_COLUMNS,
    ProtocolError,
    Request,
    decode_request,
    encode_error,
    encode_result,
    request_header,
)
from trakr.inference.redis_client import REDIS_ERRORS, models_key

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    requests: int = 0
    """Client batches answered (ok or error)."""
    frames: int = 0
    runs: int = 0
    """Model runs (merged batches)."""
    reclaimed: int = 0
    expired: int = 0
    errors: int = 0
    infer_s: float = 0.0


class Worker:
    """Serves requests from the frames stream until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        *,
        model_path: str | Path | None = None,
        imgsz: int = 416,
        batch: int = 8,
        providers: list[str] | None = None,
        threads: int = 0,
        backend: str = "onnxruntime",
        precision: str = "auto",
        options: RedisOptions | None = None,
        name: str | None = None,
        delay_ms: float = 0.0,
        block_ms: int = 1000,
    ):
        from trakr.inference.factory import build_local_detector

        self.options = o = options or RedisOptions()
        self.url, self.batch, self.delay_ms, self.block_ms = url, max(1, batch), delay_ms, block_ms
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        path = model_file(model_path)
        self.model = build_local_detector(
            backend, path, imgsz=imgsz, threads=threads, providers=providers, precision=precision
        )
        self.model_id = model_id(path)
        self._inputs: dict[int, InputBuffer] = {}
        self.stats = WorkerStats()
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=o.socket_timeout_s + block_ms / 1000,
            socket_connect_timeout=o.socket_timeout_s,
            socket_keepalive=True,
            health_check_interval=15,
        )
        self._stop = threading.Event()
        self._clock_offset_ms = 0.0
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._next_cleanup = 0.0
        self.model.detect([np.full((self.model.imgsz, self.model.imgsz, 3), 114, np.uint8)])  # warm up
        log.info(
            "worker %s: model %s (%s, %d classes), %s, batch %d, stream %s group %s",
            self.name,
            path.name,
            self.model_id,
            len(self.model.class_names),
            self.model.describe(),
            self.batch,
            o.frames_stream,
            o.group,
        )

    def stop(self) -> None:
        self._stop.set()

    # -- redis set-up --------------------------------------------------------------------------
    def _setup(self) -> None:
        """Create the group (reading from the stream's start), register the model, sync clocks."""
        o = self.options
        try:
            self.redis.xgroup_create(o.frames_stream, o.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", o.group, o.frames_stream)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self.redis.xgroup_createconsumer(o.frames_stream, o.group, self.name)  # visible in XINFO at once
        self.redis.hset(models_key(o.frames_stream), self.model_id, json.dumps(self.model.class_names))
        t0 = time.time()
        sec, usec = self.redis.time()
        t1 = time.time()
        self._clock_offset_ms = (sec * 1000 + usec / 1000) - (t0 + t1) * 500

    def _redis_now_ms(self) -> float:
        return time.time() * 1000 + self._clock_offset_ms

    # -- main loop -----------------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> None:
        """Serve until :meth:`stop` (or ``max_seconds``). Never raises on Redis outages."""
        end = None if max_seconds is None else time.monotonic() + max_seconds
        ready, down_since, delay = False, None, 0.1
        while not self._stop.is_set() and (end is None or time.monotonic() < end):
            try:
                if not ready:
                    self._setup()
                    ready = True
                    if down_since is not None:
                        log.warning("redis reachable again after %.1fs", time.monotonic() - down_since)
                    down_since, delay = None, 0.1
                self._step()
            except redis.exceptions.ResponseError as e:
                ready = False
                if "NOGROUP" in str(e):  # Redis restarted empty, or the stream was deleted
                    continue
                log.error("redis error: %s", e)
                self._stop.wait(1.0)
            except REDIS_ERRORS as e:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("redis unreachable (%s); retrying", e)
                ready = False
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
            except Exception:  # a bug must not end the worker; unacked batches are reclaimed later
                log.exception("worker loop failed")
                self._stop.wait(1.0)
        log.info("worker %s stopped: %s", self.name, self.stats)

    def _step(self) -> None:
        o = self.options
        entries: list[tuple[str, dict]] = []
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(0.2, o.visibility_timeout_s / 2)
            entries += self._reclaim()
            if now >= self._next_cleanup:
                self._next_cleanup = now + 60
                self._forget_dead_consumers()
        if len(entries) < self.batch:
            resp: Any = self.redis.xreadgroup(
                o.group,
                self.name,
                {o.frames_stream: ">"},
                count=self.batch - len(entries),
                block=None if entries else self.block_ms,
            )
            for _stream, items in resp or []:
                entries += items
        if entries:
            self.serve(entries)

    def _reclaim(self) -> list[tuple[str, dict]]:
        o = self.options
        resp = self.redis.xautoclaim(
            o.frames_stream,
            o.group,
            self.name,
            int(o.visibility_timeout_s * 1000),
            start_id=self._claim_cursor,
            count=self.batch,
        )
        self._claim_cursor = resp[0] if resp and resp[0] else "0-0"
        claimed = [(i, f) for i, f in (resp[1] if resp else []) if f]
        if claimed:
            self.stats.reclaimed += len(claimed)
            log.warning("reclaimed %d batch(es) left pending by a dead or stuck worker", len(claimed))
        return claimed

    def _forget_dead_consumers(self) -> None:
        """Remove consumers with nothing pending, idle for an hour (workers that died)."""
        o = self.options
        for c in self.redis.xinfo_consumers(o.frames_stream, o.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name != self.name and c.get("pending", 0) == 0 and c.get("idle", 0) > 3_600_000:
                self.redis.xgroup_delconsumer(o.frames_stream, o.group, name)

    # -- serving -------------------------------------------------------------------------------
    def serve(self, entries: list[tuple[str, dict]]) -> None:
        """Answer a list of ``(entry_id, fields)`` requests, merged into as few model runs as possible."""
        now_ms = self._redis_now_ms()
        valid: list[tuple[str, Request]] = []
        for entry_id, fields in entries:
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                batch_id, reply = request_header(fields)
            except ProtocolError as e:
                log.warning("dropping malformed entry %s: %s", entry_id, e)
                self._finish(entry_id, None, None)
                continue
            try:
                ttl = int(fields.get(b"ttl_ms", fields.get("ttl_ms", 0)) or 0)
            except ValueError:
                ttl = 0
            if ttl and now_ms - int(entry_id.split("-")[0]) > ttl:
                self.stats.expired += 1
                self._finish(entry_id, None, None)
                continue
            try:
                valid.append((entry_id, decode_request(fields)))
            except ProtocolError as e:
                self.stats.errors += 1
                self._finish(entry_id, reply, encode_error(batch_id, str(e), worker=self.name))
        by_size: dict[tuple[int, int], list[tuple[str, Request]]] = {}
        for item in valid:
            by_size.setdefault(item[1].size, []).append(item)
        for group in by_size.values():
            self._serve_group(group)

    def _serve_group(self, group: list[tuple[str, Request]]) -> None:
        """Requests of one frame size: packed whole into model runs of at most ``batch`` frames
        (a request bigger than ``batch`` is split), each run answered as soon as it is done."""
        chunk: list[tuple[str, Request]] = []
        n = 0
        for item in group:
            k = len(item[1].frames)
            if chunk and n + k > self.batch:
                self._run_chunk(chunk)
                chunk, n = [], 0
            chunk.append(item)
            n += k
        if chunk:
            self._run_chunk(chunk)

    def _run_chunk(self, chunk: list[tuple[str, Request]]) -> None:
        frames = [f for _, req in chunk for f in req.frames]
        h, w = chunk[0][1].size  # one size per chunk (see serve)
        size = max(h, w)
        buffer = self._inputs.get(size)
        if buffer is None:
            buffer = self._inputs[size] = InputBuffer()
        try:
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000)
            t0 = time.perf_counter()
            outs, boxes = [], []
            for i in range(0, len(frames), self.batch):
                tensor, lbs = buffer.fill(frames[i : i + self.batch], size)  # squares: a copy, no resize
                outs.append(self.model.infer(tensor))
                boxes += lbs
                self.stats.runs += 1
            output = outs[0] if len(outs) == 1 else np.concatenate(outs)
            infer_s = time.perf_counter() - t0
        except Exception as e:
            log.exception("model run failed")
            self.stats.errors += len(chunk)
            for entry_id, req in chunk:
                self._finish(
                    entry_id, req.reply, encode_error(req.batch_id, f"model run failed: {e}", worker=self.name)
                )
            return
        self.stats.infer_s += infer_s
        k = 0
        for entry_id, req in chunk:
            n = len(req.frames)
            dets = postprocess(output[k : k + n], boxes[k : k + n], self.model.class_names, req.confidence, req.iou)
            k += n
            rows = [
                np.column_stack([d.xyxy, d.confidence, d.class_id]).astype(np.float32)  # type: ignore[list-item]
                if len(d)
                else np.zeros((0, DET_COLUMNS), np.float32)
                for d in dets
            ]
            fields = encode_result(
                req.batch_id, rows, model=self.model_id, worker=self.name, infer_ms=infer_s * 1000 * n / len(frames)
            )
            self._finish(entry_id, req.reply, fields)
            self.stats.requests += 1
            self.stats.frames += n

    def _finish(self, entry_id: str, reply: str | None, fields: dict | None) -> None:
        """Reply (if any), acknowledge and delete the request, atomically."""
        o = self.options
        pipe = self.redis.pipeline(transaction=True)
        if reply and fields is not None:
            pipe.xadd(reply, fields, maxlen=o.results_maxlen, approximate=True)
            pipe.expire(reply, int(o.results_ttl_s))
        pipe.xack(o.frames_stream, o.group, entry_id)
        pipe.xdel(o.frames_stream, entry_id)
        pipe.execute()
