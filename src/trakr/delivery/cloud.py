"""The cloud side wired together, for one running config.

Use::

    report = startup_config(path, cloud_config=True)     # before building the pipeline
    pipeline = Pipeline(report.config, output_dir=out)
    link = attach(pipeline, report.config, config_path=path, cloud_config=True)
    pipeline.start() ... pipeline.stop(); link.stop()

:func:`attach` registers the sinks on the pipeline (alerts -> outbox, analysed frames -> training
capture and ``frameFile``, camera health -> health telemetry) and starts the sender threads, the
health reporter and (with ``cloud_config``) the config long-poll, which calls
``pipeline.apply_config`` for a valid pushed config. Nothing here runs on the frame path: sinks
only write local files and commit outbox rows; the network is touched by the sender threads.

The parts: :mod:`~trakr.delivery.messages` (what is sent), :mod:`~trakr.delivery.outbox` (durable
store), :mod:`~trakr.delivery.sender` (delivery by priority), :mod:`~trakr.delivery.thingsboard`
(HTTP/MQTT), :mod:`~trakr.delivery.speaker`, :mod:`~trakr.delivery.training`,
:mod:`~trakr.delivery.health` and :mod:`~trakr.delivery.config_sync`. :meth:`Cloud.deliver` maps a
channel to its transport, with the URL taken from the config of the moment.

Example:
    >>> import tempfile
    >>> from trakr.config import parse_config
    >>> cfg = parse_config({"common": {"alert_url": "http://127.0.0.1:9/api/v1/T/telemetry"}, "cameras": []}).config
    >>> link = Cloud(cfg, tempfile.mkdtemp())
    >>> link.enqueue_alert(Alert("a1", 1, "gate", None, "person", 0.0, 0.1, "", [], (64, 48)), link.output_dir)
    >>> link.stats()["backlog_by_category"], link.stats()["blocked_channels"]
    ({'alert': 1}, {})
    >>> link.stop(drain_s=0)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from trakr.config import SysConfig
from trakr.delivery.config_sync import ConfigSync, save_config, startup_config
from trakr.delivery.health import HealthReporter, SnapshotSource
from trakr.delivery.messages import (
    CHANNEL_URL,
    OutMessage,
    alert_messages,
    config_status_message,
    training_messages,
)
from trakr.delivery.outbox import Message, Outbox
from trakr.delivery.sender import REJECT, Outcome, Sender
from trakr.delivery.speaker import SpeakerSink, deliver_http, deliver_tts
from trakr.delivery.thingsboard import HttpClient, MqttTelemetry, device_token
from trakr.delivery.training import FrameWriter, TrainingCapture
from trakr.supervisor import supervise
from trakr.types import (
    Alert,
    AlertSink,
    AnalysedFrame,
    CameraHealth,
    HealthSink,
    PipelineSnapshot,
    ResultSink,
    local_day,
)

__all__ = ["Cloud", "attach", "save_config", "startup_config"]

log = logging.getLogger(__name__)


class Cloud:
    """Everything trakr sends off the box, for one running config."""

    def __init__(
        self,
        config: SysConfig,
        output_dir: str | Path,
        *,
        config_path: str | Path | None = None,
        cloud_config: bool = False,
        on_config: Callable[[SysConfig], object] | None = None,
        pipeline: SnapshotSource | None = None,
    ):
        self.config = config
        self.output_dir = Path(output_dir)
        o = config.trakr
        self.outbox = Outbox(
            Path(o.outbox.path) if o.outbox.path else self.output_dir / "outbox",
            max_bytes=int(o.outbox.max_disk_mb * 1e6),
            keep_finished_s=(o.outbox.reconcile_days + 2) * 86400,
        )
        self.http = HttpClient(o.cloud.http_timeout_s)
        self.mqtt = MqttTelemetry(o.cloud.mqtt_url, o.cloud.http_timeout_s) if o.cloud.mqtt_url else None
        self.sender = Sender(
            self.outbox,
            self.deliver,
            workers=o.outbox.workers,
            retry_min_s=o.outbox.retry_min_s,
            retry_max_s=o.outbox.retry_max_s,
            max_age_s={"speaker": o.outbox.speaker_max_age_s},
        )
        self.speaker = SpeakerSink(lambda: self.config, self.outbox)
        self.training = TrainingCapture(lambda: self.config, self.output_dir, self.enqueue_training)
        self.frame_writer = FrameWriter(lambda: self.config, self.output_dir)
        self.health = HealthReporter(lambda: self.config, self.outbox, self.sender, pipeline)
        self.on_config = on_config
        self.config_sync = (
            ConfigSync(lambda: self.config, config_path, self._apply_pushed, self.report_config)
            if cloud_config
            else None
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.alerts_queued = 0
        self.reconciled = 0
        self.last_stats: dict = {}

    # -- config ---------------------------------------------------------------------------------
    def apply_config(self, new: SysConfig) -> None:
        """Use ``new`` for everything sent from now on (URLs are resolved at send time), and retry
        waiting channels at once: the new config may carry the token they were waiting for."""
        self.config = new
        self.http.timeout_s = new.trakr.cloud.http_timeout_s
        self.sender.retry_max_s = new.trakr.outbox.retry_max_s
        self.sender.retry_min_s = new.trakr.outbox.retry_min_s
        self.sender.max_age_s["speaker"] = new.trakr.outbox.speaker_max_age_s
        self.sender.retry_now()

    def _apply_pushed(self, new: SysConfig) -> object:
        later = self.on_config(new) if self.on_config is not None else None
        self.apply_config(new)
        return later

    def report_config(self, status: str, version: str, errors: list[str]) -> None:
        """Queue the config status as client attributes of the ``cloud_status_ip`` device."""
        self._put(config_status_message(status, version, errors, self.config))

    def _put(self, m: OutMessage | None, output_dir: Path | None = None) -> bool:
        if m is None:
            return False
        file = m.file
        if file is not None and output_dir is not None and not file.is_absolute():
            file = output_dir / file
        return self.outbox.put(m.key, m.channel, m.category, m.payload, file=file)

    # -- sinks (never touch the network) --------------------------------------------------------
    def alert_sink(self, alert: Alert, output_dir: Path) -> None:
        """Pipeline alert sink: telemetry, ROI event, evidence upload, speaker call into the outbox."""
        self.enqueue_alert(alert, Path(output_dir))
        self.speaker(alert, output_dir)

    def enqueue_alert(self, alert: Alert, output_dir: Path) -> None:
        """Queue :func:`~trakr.delivery.messages.alert_messages` of ``alert``."""
        messages = alert_messages(alert, self.config)
        for m in messages:
            self._put(m, Path(output_dir))
        if messages:
            self.alerts_queued += 1

    def enqueue_training(self, kind: str, image: Path, meta: dict) -> None:
        for m in training_messages(kind, image, meta, self.config):
            self._put(m)

    def result_sink(self, af: AnalysedFrame) -> None:
        """Pipeline result sink: training capture and ``frameFile``."""
        self.training(af)
        self.frame_writer(af)

    def health_sink(self, h: CameraHealth) -> None:
        """Pipeline health sink: a camera state change, reported at once."""
        self.health.camera_changed(h)

    # -- delivery (sender threads) --------------------------------------------------------------
    def deliver(self, msg: Message) -> Outcome:
        cfg = self.config
        ch = msg.channel
        if ch == "tts":
            return deliver_tts(cfg.trakr.speaker, self.output_dir, msg)
        if ch.startswith("spk:"):
            return deliver_http(self.http, cfg.trakr.speaker, msg)
        field = CHANNEL_URL.get(ch)
        if field is None:
            return Outcome(REJECT, f"unknown channel {ch}")
        url = getattr(cfg.common, field)
        if not url:
            return Outcome(REJECT, f"{field} is no longer configured")
        if ch == "attr":
            return self.http.post_json(url, msg.payload["attributes"], key=msg.key)
        if ch.startswith("up:"):
            data = msg.read_file()
            if data is None:
                return Outcome(REJECT, "upload without a file")
            return self.http.upload(
                url,
                data,
                msg.payload["filename"],
                msg.payload["fields"],
                key=msg.key,
                file_field=cfg.trakr.cloud.upload_file_field,
            )
        token = device_token(url)
        if self.mqtt is not None and token:
            return self.mqtt.publish(token, msg.payload)
        return self.http.post_json(url, msg.payload, key=msg.key)

    # -- lifecycle ------------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Queue stored alerts of the last ``reconcile_days`` with a message the outbox never saw
        (a crash between writing the alert record and committing its messages). Returns how many."""
        days = self.config.trakr.outbox.reconcile_days
        if days <= 0:
            return 0
        n = 0
        now = time.time()
        for d in range(days + 1):
            day = local_day(now - d * 86400)
            for rec in sorted((self.output_dir / "alerts" / day).glob("*.json")):
                try:
                    alert = Alert.from_json(json.loads(rec.read_text()))
                except (ValueError, KeyError, TypeError):
                    continue
                keys = [m.key for m in alert_messages(alert, self.config)]
                if any(self.outbox.outcome(k) is None for k in keys):  # put() skips the known ones
                    self.enqueue_alert(alert, self.output_dir)
                    n += 1
        if n:
            log.info("outbox: queued %d stored alert(s) that were never sent", n)
        return n

    def start(self) -> None:
        self.reconciled = self.reconcile()
        self.sender.start()
        self._threads.append(supervise(lambda: self.health.run(self._stop), "cloud-health", self._stop))
        if self.config_sync is not None:
            self.config_sync.start()
        st = self.outbox.stats()
        log.info(
            "cloud: outbox %s, backlog %d message(s), %.1f/%.0f MB",
            self.outbox.dir,
            st["backlog"],
            st["bytes"] / 1e6,
            st["max_bytes"] / 1e6,
        )

    def stop(self, timeout: float = 5.0, drain_s: float = 2.0) -> None:
        """Stop threads; pending messages stay in the outbox for the next start. While the cloud
        answers, waits up to ``drain_s`` for the backlog to empty first."""
        if self._stop.is_set():
            return
        deadline = time.monotonic() + drain_s
        while (
            time.monotonic() < deadline
            and self.outbox.stats()["backlog"]
            and not any(s["failures"] for s in self.sender.lane_state().values())
        ):
            time.sleep(0.05)
        self._stop.set()
        if self.config_sync is not None:
            self.config_sync.stop()
        self.sender.stop(timeout)
        for t in self._threads:
            t.join(2.0)
        if self.mqtt is not None:
            self.mqtt.close()
        self.http.close()
        self.last_stats = self.outbox.stats()
        self.outbox.close()

    def stats(self) -> dict:
        s = self.outbox.stats()
        s.update(
            attempts=self.sender.attempts,
            send_failures=self.sender.failures,
            blocked_channels=self.sender.blocked(),
            speaker_queued=self.speaker.queued,
            speaker_throttled=self.speaker.throttled,
            training_captured=self.training.captured,
            frames_written=self.frame_writer.written,
        )
        if self.config_sync is not None:
            s.update(config_applied=self.config_sync.applied, config_rejected=self.config_sync.rejected)
        return s


class PipelineLike(SnapshotSource, Protocol):
    """What :func:`attach` needs of a :class:`trakr.pipeline.Pipeline`."""

    output_dir: Path

    def snapshot(self) -> PipelineSnapshot: ...
    def apply_config(self, new: SysConfig) -> object: ...
    def add_alert_sink(self, sink: AlertSink) -> None: ...
    def add_result_sink(self, sink: ResultSink) -> None: ...
    def add_health_sink(self, sink: HealthSink) -> None: ...


def attach(
    pipeline: PipelineLike,
    config: SysConfig,
    config_path: str | Path | None = None,
    cloud_config: bool = False,
    start: bool = True,
) -> Cloud:
    """Wire the cloud side to a :class:`trakr.pipeline.Pipeline` and start it.

    Registers the alert, result and health sinks; a config pushed over the long-poll (only with
    ``cloud_config``) goes to ``pipeline.apply_config`` first, then to the cloud link.
    """
    link = Cloud(
        config,
        pipeline.output_dir,
        config_path=config_path,
        cloud_config=cloud_config,
        on_config=pipeline.apply_config,
        pipeline=pipeline,
    )
    pipeline.add_alert_sink(link.alert_sink)
    pipeline.add_result_sink(link.result_sink)
    pipeline.add_health_sink(link.health_sink)
    if start:
        link.start()
    return link
