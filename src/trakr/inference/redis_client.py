"""The scale-out detector: batches go to ``trakr worker`` processes through Redis Streams.

The client letterboxes each image to the model input, encodes it (JPEG or raw, see
:mod:`trakr.inference.protocol`), adds the batch to the frames stream (``XADD ... MAXLEN ~``) and
blocks until its result arrives on this client's own result stream, or ``result_timeout_s``
passes. Workers run the model and NMS; the client maps the boxes back to its images. The wire
format and the fault model are in ``docs/redis-protocol.md``.

* :meth:`RedisDetector.detect` is **thread-safe**: the pipeline's inference threads call it at
  once; at most ``max_inflight`` batches are outstanding, a caller beyond that waits for a free
  slot (so the batcher stops taking frames and the latest-frame slots drop, counted).
* One receiver thread reads the result stream (``XREAD BLOCK``) and hands each result to its
  waiting caller; a batch id seen twice (a reclaimed batch answered by two workers) or after
  its caller gave up is dropped and counted, so every batch is answered at most once.
* Every Redis call has socket timeouts; a lost connection is retried with backoff, so a Redis
  restart needs no restart of trakr.
* Health: after ``ServerNotReachableLimit`` consecutive failures (result timeouts or Redis
  errors) the server is ``"down"``: logged once, and every callable in
  :attr:`RedisDetector.health_hooks` is called with the new state (``"up"`` / ``"down"``). While
  down, if ``fallback_to_embedded`` is set, batches run on an embedded :class:`OnnxDetector`
  and a probe batch is sent every ``probe_interval_s`` until a worker answers again.

Example (needs a running Redis and a worker)::

    det = RedisDetector("redis://gpu-box:6379/0", RedisOptions(), imgsz=416)
    det.health_hooks.append(lambda state: print("inference server", state))
    detections = det.detect([frame_bgr])
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis
import supervision as sv

from trakr.config import RedisOptions, SysConfig
from trakr.inference.base import Detector, Letterbox, class_names_from_metadata, letterbox
from trakr.inference.protocol import Result, decode_result, encode_frame, encode_request
from trakr.logs import redact

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.RedisError,)
"""Any failed Redis call (connection lost, timeout, garbage on the socket, server-side error)."""
_BLOCK_MS = 1000


class RemoteDetectorError(RuntimeError):
    """A batch could not be served by the workers (timeout, Redis down, worker error)."""


class ResultTimeout(RemoteDetectorError):
    """No result within ``result_timeout_s``."""


class WorkerError(RemoteDetectorError):
    """A worker answered with ``status=error``."""


@dataclass
class RedisStats:
    """Counters of one client (exported by metrics / reported by the bench)."""

    sent: int = 0
    """Batches added to the frames stream."""
    results: int = 0
    """Results delivered to a waiting caller (each batch at most once)."""
    duplicates: int = 0
    """Results dropped because their batch had already been answered."""
    late: int = 0
    """Results dropped because their caller had timed out."""
    timeouts: int = 0
    redis_errors: int = 0
    worker_errors: int = 0
    fallback_batches: int = 0
    """Batches run by the embedded model while the server was down."""
    inflight: int = 0
    max_inflight_seen: int = 0
    bytes_sent: int = 0
    reconnects: int = 0
    by_worker: dict = field(default_factory=dict)
    """Results delivered per worker name."""


class _Waiter:
    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Result | None = None


def default_client_id() -> str:
    """``host-pid-random``: unique per process, readable in ``XINFO`` and logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def models_key(frames_stream: str) -> str:
    """Hash where workers register their model's class names: model id -> JSON list."""
    return f"{frames_stream}:models"


class RedisDetector(Detector):
    """Detector whose model runs in ``trakr worker`` processes behind Redis Streams."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        options: RedisOptions | None = None,
        *,
        imgsz: int = 416,
        confidence: float = 0.35,
        iou: float = 0.5,
        server_not_reachable_limit: int = 5,
        model_path: str | Path | None = None,
        threads: int = 0,
        providers: list[str] | None = None,
        class_names: list[str] | None = None,
    ):
        self.options = o = options or RedisOptions()
        self.url = url
        self.imgsz, self.confidence, self.iou = imgsz, confidence, iou
        self.not_reachable_limit = server_not_reachable_limit
        self._model_args = (model_path, imgsz, confidence, iou, threads, providers)
        self.client_id = o.client_id or default_client_id()
        self.reply_stream = o.results_prefix + self.client_id
        self.counters = RedisStats()
        self.health = "unknown"
        """``unknown`` until the first answer, then ``up`` or ``down``."""
        self.health_hooks: list[Callable[[str], None]] = []
        """Called with the new state on every change of :attr:`health` (e.g. a telemetry sender)."""
        common = dict(
            socket_timeout=o.socket_timeout_s,
            socket_connect_timeout=o.socket_timeout_s,
            health_check_interval=15,
            socket_keepalive=True,
        )
        self._redis = redis.Redis.from_url(url, **common)
        self._reader = redis.Redis.from_url(url, **{**common, "socket_timeout": o.socket_timeout_s + _BLOCK_MS / 1000})
        self.class_names = list(class_names) if class_names else self._local_class_names(model_path)
        self._names_by_model: dict[str, tuple[list[str], np.ndarray | None]] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, _Waiter] = {}
        self._answered: OrderedDict[str, bool] = OrderedDict()  # batch id -> True answered / False gave up
        self._slots = threading.BoundedSemaphore(o.max_inflight)
        self._seq = itertools.count()
        self._failures = 0
        self._fallback: Detector | None = None
        self._fallback_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._receive_loop, name="redis-results", daemon=True),
            threading.Thread(target=self._probe_loop, name="redis-probe", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info(
            "redis detector: client %s, %s, frames %s, encoding %s",
            self.client_id,
            redact(url),
            o.frames_stream,
            o.encoding,
        )

    @classmethod
    def from_config(cls, config: SysConfig) -> RedisDetector:
        """Build from ``trakr.redis`` + ``trakr.detector`` + ``common.ServerNotReachableLimit``."""
        r, d = config.trakr.redis, config.trakr.detector
        if not r.url:
            raise ValueError("trakr.detector.backend is 'redis' but trakr.redis.url is not set (or use --redis URL)")
        return cls(
            r.url,
            r,
            imgsz=d.imgsz,
            confidence=d.confidence,
            iou=d.iou,
            server_not_reachable_limit=config.common.server_not_reachable_limit,
            model_path=d.model_path,
            threads=d.threads,
            providers=d.providers,
        )

    # -- class names ---------------------------------------------------------------------------
    def _local_class_names(self, model_path) -> list[str]:
        """The configured model's names (the fallback runs it); else what a worker registered."""
        try:
            from trakr.inference.onnx import open_session

            sess = open_session(model_path, threads=1)
            return class_names_from_metadata(sess.get_modelmeta().custom_metadata_map)
        except Exception as e:
            log.warning("redis detector: cannot read class names from the local model (%s); using the workers'", e)
        try:
            models = self._redis.hgetall(models_key(self.options.frames_stream))
            if models:
                return json.loads(next(iter(models.values())))
        except REDIS_ERRORS:
            pass
        return []

    def _names_for(self, model_id: str) -> tuple[list[str], np.ndarray | None]:
        """The worker model's names and a map from its class ids to ours (None = identical)."""
        cached = self._names_by_model.get(model_id)
        if cached is not None:
            return cached
        names = None
        try:
            raw = self._redis.hget(models_key(self.options.frames_stream), model_id)
            names = json.loads(raw) if raw else None
        except (*REDIS_ERRORS, ValueError):
            pass
        if names is None:  # unknown model: trust the ids (not cached, asked again next time)
            return self.class_names, None
        if not self.class_names:
            self.class_names = list(names)
        remap = None
        if names != self.class_names:
            ours = {n: i for i, n in enumerate(self.class_names)}
            remap = np.array([ours.get(n, -1) for n in names], dtype=int)
            log.warning("worker model %s has other class names than the client's model; mapping by name", model_id)
        self._names_by_model[model_id] = (names, remap)
        return names, remap

    # -- health --------------------------------------------------------------------------------
    def _set_health(self, state: str) -> None:
        with self._lock:
            if self.health == state:
                return
            before, self.health = self.health, state
        if state == "down":
            fb = "falling back to the embedded model" if self.options.fallback_to_embedded else "no fallback"
            log.error("inference server down: %d consecutive failures (%s)", self._failures, fb)
        elif before == "down":
            log.warning("inference server answering again")
        for hook in list(self.health_hooks):
            try:
                hook(state)
            except Exception:
                log.exception("server health hook failed")

    def _success(self) -> None:
        self._failures = 0
        self._set_health("up")

    def _failure(self) -> None:
        self._failures += 1
        if self._failures >= self.not_reachable_limit:
            self._set_health("down")

    # -- detection -----------------------------------------------------------------------------
    def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        """One Detections per image, in that image's pixels. Thread-safe; blocks until the result
        arrives, or raises :class:`RemoteDetectorError` (unless the fallback serves the batch)."""
        if not images:
            return []
        if self.health == "down" and self.options.fallback_to_embedded:
            return self._run_fallback(images)
        try:
            return self._remote(images)
        except (ResultTimeout, *REDIS_ERRORS) as e:
            if self.health == "down" and self.options.fallback_to_embedded:
                return self._run_fallback(images)
            if isinstance(e, REDIS_ERRORS):
                raise RemoteDetectorError(f"redis: {e}") from e
            raise

    def _remote(self, images: list[np.ndarray]) -> list[sv.Detections]:
        o = self.options
        boxed = [letterbox(im, self.imgsz) for im in images]
        frames = [b[0] for b in boxed]
        blobs = [encode_frame(f, o.encoding, o.jpeg_quality) for f in frames]
        if not self._slots.acquire(timeout=o.result_timeout_s):
            raise RemoteDetectorError(f"{o.max_inflight} batches already in flight")
        batch_id = f"{self.client_id}:{next(self._seq)}"
        waiter = _Waiter()
        entry_id = None
        try:
            with self._lock:
                self._pending[batch_id] = waiter
                self.counters.inflight += 1
                self.counters.max_inflight_seen = max(self.counters.max_inflight_seen, self.counters.inflight)
            fields = encode_request(
                batch_id,
                self.reply_stream,
                frames,
                o.encoding,
                self.confidence,
                self.iou,
                int(o.result_timeout_s * 1000),
                encoded=blobs,
            )
            try:
                entry_id = self._redis.xadd(
                    o.frames_stream, cast(dict[Any, Any], fields), maxlen=o.frames_maxlen, approximate=True
                )
            except REDIS_ERRORS:
                self.counters.redis_errors += 1
                self._failure()
                raise
            with self._lock:
                self.counters.sent += 1
                self.counters.bytes_sent += sum(len(b) for b in blobs)
            if not waiter.event.wait(o.result_timeout_s):
                self._give_up(batch_id, entry_id)
                if waiter.result is None:
                    self.counters.timeouts += 1
                    self._failure()
                    raise ResultTimeout(f"no result for batch {batch_id} within {o.result_timeout_s:g}s")
        finally:
            with self._lock:
                self._pending.pop(batch_id, None)
                self.counters.inflight -= 1
            self._slots.release()
        result = waiter.result
        assert result is not None  # set before the event, or a timeout was raised above
        self._success()
        if result.status != "ok":
            self.counters.worker_errors += 1
            raise WorkerError(f"worker {result.worker}: {result.error}")
        if len(result.detections) != len(images):
            self.counters.worker_errors += 1
            raise WorkerError(f"worker {result.worker} answered {len(result.detections)} frames for {len(images)}")
        names, remap = self._names_for(result.model)
        return [self._to_detections(rows, lb, names, remap) for rows, (_, lb) in zip(result.detections, boxed)]

    def _give_up(self, batch_id: str, entry_id) -> None:
        with self._lock:
            if self._pending.pop(batch_id, None) is not None:
                self._remember(batch_id, False)
        try:  # nobody wants it any more: spare the workers (a pending entry is then skipped)
            self._redis.xdel(self.options.frames_stream, entry_id)
        except REDIS_ERRORS:
            pass

    def _remember(self, batch_id: str, answered: bool) -> None:
        self._answered[batch_id] = answered
        while len(self._answered) > 4096:
            self._answered.popitem(last=False)

    @staticmethod
    def _to_detections(rows: np.ndarray, lb: Letterbox, names: list[str], remap: np.ndarray | None) -> sv.Detections:
        if len(rows) == 0:
            d = sv.Detections.empty()
            d.data["class_name"] = np.array([], dtype=str)
            return d
        cls = rows[:, 5].astype(int)
        w, h = lb.size
        xyxy = (rows[:, :4] - np.array([*lb.pad, *lb.pad], dtype=np.float32)) / lb.scale
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        name_arr = np.array([names[c] if 0 <= c < len(names) else str(c) for c in cls], dtype=str)
        if remap is not None:
            cls = np.array([remap[c] if 0 <= c < len(remap) else -1 for c in cls], dtype=int)
        return sv.Detections(
            xyxy=xyxy, confidence=rows[:, 4].astype(np.float32), class_id=cls, data={"class_name": name_arr}
        )

    # -- fallback ------------------------------------------------------------------------------
    def _run_fallback(self, images: list[np.ndarray]) -> list[sv.Detections]:
        with self._fallback_lock:
            if self._fallback is None:
                from trakr.inference.onnx import OnnxDetector

                self._fallback = OnnxDetector(*self._model_args)
                log.warning("embedded fallback model loaded")
        self.counters.fallback_batches += 1
        return self._fallback.detect(images)

    def _probe_loop(self) -> None:
        probe = np.full((self.imgsz, self.imgsz, 3), 114, np.uint8)
        while not self._stop.wait(self.options.probe_interval_s):
            if self.health != "down" or not self.options.fallback_to_embedded:
                continue  # without fallback every detect() call is a probe
            try:
                self._remote([probe])
                log.info("probe answered")
            except Exception as e:
                log.debug("probe failed: %s", e)

    # -- results -------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        last_id = "0-0"
        down_since = None
        delay = 0.1
        while not self._stop.is_set():
            try:
                resp: Any = self._reader.xread({self.reply_stream: last_id}, count=64, block=_BLOCK_MS)
                if down_since is not None:
                    log.warning("redis result stream reachable again after %.1fs", time.monotonic() - down_since)
                    down_since, delay = None, 0.1
                    self.counters.reconnects += 1
            except REDIS_ERRORS as e:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("redis result stream unreachable (%s); retrying", e)
                last_id = "0-0"  # a restarted Redis starts a new stream; duplicates are deduped
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception:
                log.exception("result stream read failed")
                self._stop.wait(1.0)
                continue
            ids = []
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    ids.append(entry_id)
                    try:
                        self._deliver(decode_result(fields))
                    except Exception as e:
                        log.warning("bad result entry %s: %s", entry_id, e)
            if ids:
                try:  # the stream only holds undelivered results
                    self._redis.xdel(self.reply_stream, *ids)
                except REDIS_ERRORS:
                    pass

    def _deliver(self, result: Result) -> None:
        with self._lock:
            waiter = self._pending.pop(result.batch_id, None)
            if waiter is None:
                seen = self._answered.get(result.batch_id)
                if seen is True:
                    self.counters.duplicates += 1
                else:
                    self.counters.late += 1
                return
            self._remember(result.batch_id, True)
            self.counters.results += 1
            self.counters.by_worker[result.worker] = self.counters.by_worker.get(result.worker, 0) + 1
            waiter.result = result
        waiter.event.set()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.options.socket_timeout_s + _BLOCK_MS / 1000 + 1)
        try:
            self._redis.delete(self.reply_stream)
        except REDIS_ERRORS:
            pass
        for r in (self._redis, self._reader):
            try:
                r.close()
            except Exception:
                pass
        if self._fallback is not None:
            self._fallback.close()

    def stats(self) -> dict[str, float]:
        """Counters for observers (``/metrics``, bench): sent, results, timeouts, fallbacks..."""
        out: dict[str, float] = {k: v for k, v in asdict(self.counters).items() if isinstance(v, (int, float))}
        return out


def with_redis_backend(config: SysConfig, url: str) -> SysConfig:
    """A copy of ``config`` with ``detector.backend = "redis"`` and ``redis.url = url`` (``run --redis``)."""
    t = config.trakr
    trakr = t.model_copy(
        update={
            "detector": t.detector.model_copy(update={"backend": "redis"}),
            "redis": t.redis.model_copy(update={"url": url}),
        }
    )
    return config.model_copy(update={"trakr": trakr})
