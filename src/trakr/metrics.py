"""Prometheus metrics: a registry that a running :class:`~trakr.pipeline.Pipeline` fills, and the
HTTP endpoint that serves it.

:class:`PipelineMetrics` attaches to a pipeline through its hooks only (batch, health and alert
sinks) and reads one :meth:`~trakr.pipeline.Pipeline.snapshot` when scraped, so it
adds no work to the frame path beyond a few histogram observations per detector batch.
:func:`start_metrics_server` serves a registry on ``trakr.metrics.host`` (default ``127.0.0.1``,
never a public interface unless configured) and ``trakr.metrics.port`` (``None`` = off).

Series (``camera`` label = ``CameraId``):

* per camera: ``trakr_camera_up``, ``trakr_camera_capture_fps``, ``trakr_camera_analysed_fps``,
  ``trakr_camera_gate_pass_rate`` (gauges over the time since the previous scrape),
  ``trakr_camera_frames_captured_total``, ``..._published_total``, ``..._analysed_total``,
  ``..._dropped_total`` (replaced in the latest-frame slot), ``trakr_camera_gate_seen_total``,
  ``trakr_camera_gate_passed_total``, ``trakr_camera_reconnects_total``,
  ``trakr_camera_last_frame_age_seconds``, ``trakr_camera_health_changes_total{state}``;
* detector: ``trakr_detector_batches_total``, ``trakr_detector_errors_total``,
  ``trakr_detector_inflight_batches``, ``trakr_detector_batch_size``,
  ``trakr_detector_batch_fill`` (histogram of frames / batch_size),
  ``trakr_detector_inference_seconds`` (histogram, one observation per batch);
* ``trakr_latency_seconds{camera}``: capture→result histogram;
* ``trakr_alerts_total{camera,violation}``, ``trakr_output_skipped_total``,
  ``trakr_alerts_pending_disk``, ``trakr_camera_gate_decisions_total{camera,reason}``;
* ``trakr_detector_info{backend,precision,health}``, ``trakr_detector_backend_events_total{counter}``
  (e.g. the Redis backend's sent/results/timeouts/fallback_batches);
* ``trakr_thread_restarts_total{thread}``, ``trakr_threads_alive``;
* the outbox when one is attached (``pipeline.outbox`` or :meth:`PipelineMetrics.watch_outbox`):
  ``trakr_outbox_backlog{category}``, ``trakr_outbox_bytes``, ``trakr_outbox_oldest_age_seconds``,
  ``trakr_outbox_sent_total{category}``, ``trakr_outbox_dropped_total{category}``;
* ``process_*`` (CPU seconds, resident memory, open fds) of the trakr process.

Example:
    >>> from trakr.config import parse_config
    >>> from trakr.pipeline import Pipeline
    >>> cfg = parse_config({"common": {}, "cameras": [],
    ...                     "trakr": {"metrics": {"port": 0}}}).config
    >>> m = PipelineMetrics(Pipeline(cfg))
    >>> server = start_metrics_server(cfg, m.registry)
    >>> server.host, server.port > 0
    ('127.0.0.1', True)
    >>> b"trakr_detector_batches_total 0.0" in m.render()
    True
    >>> server.close()
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from trakr.config import MetricsOptions, SysConfig

if TYPE_CHECKING:  # pragma: no cover
    from trakr.pipeline import Pipeline
    from trakr.types import Alert, BatchResult, CameraHealth

log = logging.getLogger(__name__)

#: The registry :func:`start_metrics_server` serves when none is given.
REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
INFER_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
FILL_BUCKETS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


class _Rate:
    """Rate of a monotonically increasing count between two reads (at least ``min_dt`` apart)."""

    __slots__ = ("t", "n", "value")

    def __init__(self, t: float, n: float):
        self.t, self.n = t, n
        self.value: float | None = None

    def update(self, t: float, n: float, min_dt: float = 0.5) -> float | None:
        dt = t - self.t
        if dt >= min_dt:
            self.value = max(0.0, (n - self.n) / dt)
            self.t, self.n = t, n
        return self.value


class PipelineMetrics(Collector):
    """Exposes one pipeline's counters, latency and detector timing in ``registry``.

    Create it before or after :meth:`Pipeline.start`; it registers itself as a batch, health and
    alert sink of ``pipeline``. ``registry`` defaults to a fresh one (several pipelines in one
    process do not collide); serve it with :func:`start_metrics_server`.
    """

    def __init__(
        self, pipeline: Pipeline, registry: CollectorRegistry | None = None, process: bool = True, outbox: Any = None
    ):
        self.pipeline = pipeline
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.outbox = outbox
        self._lock = threading.Lock()
        self._alerts: dict[tuple[str, str], int] = {}
        self._health_changes: dict[tuple[str, str], int] = {}
        self._rates: dict[tuple[str, int], _Rate] = {}
        self._created = time.monotonic()
        self.latency = Histogram(
            "trakr_latency_seconds",
            "Capture to detector result, per frame.",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "trakr_detector_inference_seconds",
            "Detector call time per batch.",
            buckets=INFER_BUCKETS,
            registry=self.registry,
        )
        self.batch_fill = Histogram(
            "trakr_detector_batch_fill", "Frames in a batch / batch_size.", buckets=FILL_BUCKETS, registry=self.registry
        )
        self.registry.register(self)
        if process:
            ProcessCollector(registry=self.registry)
        pipeline.add_batch_sink(self._on_batch)
        pipeline.add_health_sink(self._on_health)
        pipeline.add_alert_sink(self._on_alert)

    # -- hooks (called on pipeline threads; keep them cheap) ----------------------------------
    def _on_batch(self, br: BatchResult) -> None:
        self.inference.observe(br.infer_s)
        self.batch_fill.observe(len(br.frames) / max(1, br.batch_size))
        for f in br.frames:
            self.latency.labels(str(f.camera_id)).observe(max(0.0, br.done_at - f.captured_at))

    def _on_health(self, h: CameraHealth) -> None:
        with self._lock:
            key = (str(h.camera_id), h.state)
            self._health_changes[key] = self._health_changes.get(key, 0) + 1

    def _on_alert(self, alert: Alert, _output_dir=None) -> None:
        with self._lock:
            key = (str(alert.camera_id), alert.violation)
            self._alerts[key] = self._alerts.get(key, 0) + 1

    def watch_outbox(self, outbox: Any) -> None:
        """Also export an outbox's backlog and counters (anything with ``stats() -> dict``)."""
        self.outbox = outbox

    # -- scrape --------------------------------------------------------------------------------
    def _rate(self, key: tuple[str, int], now: float, n: float) -> float:
        r = self._rates.get(key)
        if r is None:
            # first scrape: average since the metrics were attached
            self._rates[key] = _Rate(now, n)
            return n / max(1e-6, now - self._created)
        v = r.update(now, n)
        return v if v is not None else 0.0

    def describe(self):  # registration must not run a scrape
        return []

    def collect(self):
        p = self.pipeline
        now_m, now = time.monotonic(), time.time()
        cam = ["camera"]
        g = {
            name: GaugeMetricFamily(f"trakr_camera_{name}", doc, labels=cam)
            for name, doc in (
                ("up", "1 if the camera delivers frames, else 0."),
                ("capture_fps", "Frames grabbed per second since the previous scrape."),
                ("analysed_fps", "Frames analysed by the detector per second since the previous scrape."),
                ("gate_pass_rate", "Fraction of frames the change gate passed since the previous scrape."),
                ("last_frame_age_seconds", "Seconds since the last decoded frame."),
            )
        }
        c = {
            name: CounterMetricFamily(f"trakr_camera_{name}", doc, labels=cam)
            for name, doc in (
                ("frames_captured", "Frames grabbed from the camera."),
                ("frames_published", "Frames decoded and put into the latest-frame slot."),
                ("frames_analysed", "Frames the detector analysed."),
                ("frames_dropped", "Frames replaced in the latest-frame slot before the batcher took them."),
                ("gate_seen", "Frames the change gate looked at."),
                ("gate_passed", "Frames the change gate passed."),
                ("reconnects", "Reopened captures."),
            )
        }
        info = GaugeMetricFamily("trakr_camera_info", "Camera name and source kind.", labels=["camera", "name", "kind"])
        reasons = CounterMetricFamily(
            "trakr_camera_gate_decisions", "Change gate decisions by reason.", labels=["camera", "reason"]
        )
        snap = p.snapshot()
        addresses = {cid: cam.address for cid, cam in ((c.camera_id, c) for c in p.config.cameras)}
        with self._lock:
            for cid, cs in snap.cameras.items():
                lab = [str(cid)]
                info.add_metric([str(cid), cs.name, _kind(addresses.get(cid, ""))], 1)
                g["up"].add_metric(lab, 1.0 if cs.state == "up" else 0.0)
                g["capture_fps"].add_metric(
                    lab, self._rate(("cap", cid), now_m, cs.frames_read) if cs.state == "up" else 0.0
                )
                g["analysed_fps"].add_metric(lab, self._rate(("an", cid), now_m, cs.frames_analysed))
                seen_r = self._rate(("seen", cid), now_m, cs.gate_seen)
                pass_r = self._rate(("pass", cid), now_m, cs.gate_passed)
                overall = cs.gate_passed / cs.gate_seen if cs.gate_seen else 0.0
                g["gate_pass_rate"].add_metric(lab, pass_r / seen_r if seen_r else overall)
                g["last_frame_age_seconds"].add_metric(
                    lab, max(0.0, now - cs.last_frame_at) if cs.last_frame_at else float("nan")
                )
                c["frames_captured"].add_metric(lab, cs.frames_read)
                c["frames_published"].add_metric(lab, cs.frames_published)
                c["frames_analysed"].add_metric(lab, cs.frames_analysed)
                c["frames_dropped"].add_metric(lab, cs.frames_dropped)
                c["gate_seen"].add_metric(lab, cs.gate_seen)
                c["gate_passed"].add_metric(lab, cs.gate_passed)
                c["reconnects"].add_metric(lab, cs.reconnects)
                for reason, n in sorted(cs.gate_reasons.items()):
                    reasons.add_metric([str(cid), reason], n)
            health = CounterMetricFamily(
                "trakr_camera_health_changes", "Camera health changes.", labels=["camera", "state"]
            )
            for (hcid, state), hn in sorted(self._health_changes.items()):
                health.add_metric([hcid, state], hn)
            alerts = CounterMetricFamily(
                "trakr_alerts", "Alerts stored (and handed to the sinks).", labels=["camera", "violation"]
            )
            for (acid, violation), an in sorted(self._alerts.items()):
                alerts.add_metric([acid, violation], an)
        yield info
        yield from g.values()
        yield from c.values()
        yield reasons
        yield health
        yield alerts
        yield CounterMetricFamily("trakr_detector_batches", "Detector calls.", value=snap.batches)
        yield CounterMetricFamily("trakr_detector_errors", "Failed detector calls.", value=snap.detector_errors)
        yield GaugeMetricFamily(
            "trakr_detector_inflight_batches", "Batches inside the detector now.", value=snap.inflight
        )
        yield GaugeMetricFamily("trakr_detector_batch_size", "Configured batch size.", value=snap.batch_size)
        det = GaugeMetricFamily(
            "trakr_detector_info", "Detector backend, precision and health.", labels=["backend", "precision", "health"]
        )
        det.add_metric([snap.detector, snap.detector_precision, snap.detector_health], 1)
        yield det
        backend = CounterMetricFamily("trakr_detector_backend_events", "Backend counters.", labels=["counter"])
        for counter, value in sorted((p.detector.stats() if p.detector is not None else {}).items()):
            backend.add_metric([counter], value)
        yield backend
        yield CounterMetricFamily(
            "trakr_output_skipped", "Optional images skipped because output lagged.", value=snap.output_skipped
        )
        yield GaugeMetricFamily(
            "trakr_alerts_pending_disk",
            "Alerts kept in memory: the output directory refused them.",
            value=snap.alerts_pending_disk,
        )
        yield CounterMetricFamily(
            "trakr_alerts_suppressed", "Violations the alert policy held back.", value=snap.alerts_suppressed
        )
        restarts = CounterMetricFamily(
            "trakr_thread_restarts", "Long-lived threads restarted after a crash.", labels=["thread"]
        )
        for kind, n in sorted(snap.thread_restarts.items()):
            restarts.add_metric([kind], n)
        yield restarts
        yield GaugeMetricFamily(
            "trakr_threads_alive", "1 while every long-lived pipeline thread runs.", value=float(snap.threads_alive)
        )
        yield from self._outbox_metrics()

    def _outbox_metrics(self):
        box = self.outbox if self.outbox is not None else getattr(self.pipeline, "outbox", None)
        if box is None or not hasattr(box, "stats"):
            return
        try:
            s = box.stats()
        except Exception as e:  # a closed or broken outbox must not break the scrape
            log.debug("outbox stats failed: %s", e)
            return
        backlog = GaugeMetricFamily("trakr_outbox_backlog", "Messages waiting to be sent.", labels=["category"])
        for cat, n in sorted((s.get("backlog_by_category") or {}).items()):
            backlog.add_metric([cat], n)
        yield backlog
        yield GaugeMetricFamily(
            "trakr_outbox_backlog_total_messages", "All messages waiting to be sent.", value=s.get("backlog", 0)
        )
        yield GaugeMetricFamily("trakr_outbox_bytes", "Disk used by the outbox.", value=s.get("bytes", 0))
        yield GaugeMetricFamily(
            "trakr_outbox_oldest_age_seconds", "Age of the oldest waiting message.", value=s.get("oldest_age_s", 0.0)
        )
        blocked = GaugeMetricFamily(
            "trakr_outbox_channel_blocked",
            "HTTP status of a channel the cloud refuses (401/403/404).",
            labels=["channel"],
        )
        for channel, status in sorted((s.get("blocked_channels") or {}).items()):
            blocked.add_metric([channel], status)
        yield blocked
        for prefix in ("sent", "dropped"):
            fam = CounterMetricFamily(f"trakr_outbox_{prefix}", f"Messages {prefix}, by category.", labels=["category"])
            for k, v in sorted(s.items()):
                if k.startswith(prefix + ".") and isinstance(v, (int, float)):
                    fam.add_metric([k.split(".", 1)[1]], v)
            yield fam

    def render(self) -> bytes:
        """The text exposition of :attr:`registry` (what ``/metrics`` returns)."""
        return generate_latest(self.registry)


def _kind(address: str) -> str:
    from trakr.capture.reader import source_kind

    return source_kind(address)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint."""

    host: str
    port: int
    _httpd: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    config: SysConfig | MetricsOptions,
    registry: CollectorRegistry | None = None,
    port: int | None = None,
    host: str | None = None,
) -> MetricsServer | None:
    """Serve ``registry`` on ``trakr.metrics.host:port``; ``None`` (and nothing started) when the
    port is unset. ``port``/``host`` override the config (port 0 picks a free port)."""
    opts = config.trakr.metrics if isinstance(config, SysConfig) else config
    port = opts.port if port is None else port
    host = opts.host if host is None else host
    if port is None:
        return None
    httpd, thread = start_http_server(port, addr=host, registry=registry if registry is not None else REGISTRY)
    server = MetricsServer(host, httpd.server_port, httpd, thread)
    log.info("metrics on %s", server.url)
    return server
