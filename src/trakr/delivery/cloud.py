"""The cloud side wired together: outbox, sender, ThingsBoard telemetry, uploads, speakers,
training capture, health, and the cloud config (startup fetch + shared-attribute long-poll).

Use::

    report = startup_config(path, cloud_config=True)     # before building the pipeline
    pipeline = Pipeline(report.config, output_dir=out)
    link = attach(pipeline, report.config, config_path=path, cloud_config=True)
    pipeline.start() ... pipeline.stop(); link.stop()

:func:`attach` registers the sinks on the pipeline (alerts → outbox, analysed frames → training
capture and ``frameFile``, camera health → health telemetry), starts the sender threads, the
health reporter and (with ``cloud_config``) the config long-poll, which calls
``pipeline.apply_config`` for a valid pushed config. Nothing here runs on the frame path: sinks
only write local files and commit outbox rows; the network is touched by the sender threads.

Channels (destination, from the *current* config at send time so that a fixed token delivers the
backlog) and categories (drop rank):

============  ==================  =============  ===========================================
channel       URL (``common``)    category       payload
============  ==================  =============  ===========================================
tb:alert      alert_url           alert          telemetry, one per alert
tb:roi        roi_ip              roi            telemetry, alerts inside a named ROI
up:alert      alert_storage_ip    alert_image    multipart evidence JPEG + metadata
tb:train      train_url           training       telemetry, one per training capture
up:train      train_storage_ip    training       multipart raw JPEG + YOLO labels + metadata
tb:health     test_url            health         telemetry: cameras, inference, outbox
attr          cloud_status_ip     config         client attributes: config status
spk:<ip>      speaker url_template speaker       HTTP call with the audio_key code
tts           (local espeak-ng)   speaker        WAV of the recommendation text
============  ==================  =============  ===========================================
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from trakr.config import ConfigReport, Problem, SysConfig, load_config, parse_config
from trakr.delivery.outbox import REJECT, Message, Outbox, Outcome, Sender
from trakr.delivery.push_policy import vet_push
from trakr.delivery.speaker import SpeakerSink, deliver_http, deliver_tts
from trakr.delivery.thingsboard import CloudError, HttpClient, MqttTelemetry, device_token
from trakr.delivery.training import FrameWriter, TrainingCapture
from trakr.evidence import write_atomic
from trakr.logs import redact
from trakr.types import Alert

log = logging.getLogger(__name__)

CHANNEL_URL = {
    "tb:alert": "alert_url",
    "tb:roi": "roi_ip",
    "tb:train": "train_url",
    "tb:health": "test_url",
    "up:alert": "alert_storage_ip",
    "up:train": "train_storage_ip",
    "attr": "cloud_status_ip",
}


# --------------------------------------------------------------------------------- messages


def alert_values(alert: Alert, key: str) -> dict:
    """The ThingsBoard ``values`` of an alert (flat keys; ``objects`` as a JSON value)."""
    return {
        "msg_id": key,
        "alert_id": alert.alert_id,
        "camera_id": alert.camera_id,
        "camera_name": alert.camera_name,
        "roi": alert.roi or "",
        "violation": alert.violation,
        "recommendation": alert.recommendation,
        "count": len(alert.objects),
        "objects": alert.objects,
        "frame_width": alert.frame_size[0],
        "frame_height": alert.frame_size[1],
        "image": Path(alert.evidence_image).name if alert.evidence_image else "",
        "captured_at": alert.to_json()["captured_at_iso"],
        "delay_s": round(alert.created_at - alert.captured_at, 3),
    }


def _ms(t: float) -> int:
    return int(round(t * 1000))


# --------------------------------------------------------------------------------- config files


def last_good_path(path: Path) -> Path:
    return path.with_name(path.name + ".last-good")


def save_config(path: Path, raw: dict) -> None:
    """Write ``raw`` as the local config (atomic) and as its ``.last-good`` copy."""
    data = json.dumps(raw, indent=4).encode()
    write_atomic(path, data)
    write_atomic(last_good_path(path), data)


def _decode(value: object) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def startup_config(path: str | Path, cloud_config: bool = False, camera_list: str = "cameras") -> ConfigReport:
    """The config to start with (``trakr run --cloud_config 1|0``).

    Loads the local file (its ``.last-good`` copy if the file is missing or invalid). With
    ``cloud_config`` it then reads the shared attribute ``trakr.cloud.config_key`` from
    ``common.cloud_status_ip``: a valid config with a different ``config_version`` is saved
    atomically as the local file (and ``.last-good``) and used; an invalid one is reported to the
    cloud (client attribute ``config_status = rejected``) and the local file is used; an
    unreachable cloud means the local file. What happened is added to the report as warnings.
    """
    path = Path(path)
    report = load_config(path, camera_list=camera_list)
    notes: list[Problem] = []
    loaded_from = path
    if not report.ok and last_good_path(path).exists():
        fallback = load_config(last_good_path(path), camera_list=camera_list)
        if fallback.ok:
            notes.append(
                Problem(
                    "file",
                    str(path),
                    None,
                    f"invalid ({len(report.errors)} error(s)); using {last_good_path(path).name}",
                    "warning",
                )
            )
            report, loaded_from = fallback, last_good_path(path)
    if not cloud_config or report.config is None or not report.ok:
        report.problems += notes
        return report
    cfg = report.config
    url = cfg.common.cloud_status_ip
    if not url:
        report.problems += notes + [
            Problem("cloud", "cloud_status_ip", None, "not set: using the local config", "warning")
        ]
        return report
    key = cfg.trakr.cloud.config_key
    http = HttpClient(cfg.trakr.cloud.http_timeout_s)
    try:
        shared = http.shared_attributes(url, [key])
        if key not in shared:
            notes.append(Problem("cloud", key, None, "no such shared attribute: using the local config", "warning"))
            report.problems += notes
            return report
        local_raw = json.loads(loaded_from.read_text())
        raw, refusals = vet_push(_decode(shared[key]), local_raw)
        cloud = parse_config(raw, camera_list=camera_list) if not refusals else ConfigReport(None, [])
        if refusals or not cloud.ok:
            errors = refusals or [redact(str(p)) for p in cloud.errors] or ["no usable config"]
            http.post_json(
                url,
                {
                    "config_status": "rejected",
                    "config_errors": "; ".join(errors)[:4000],
                    "config_version": str((raw.get("common") or {}).get("config_version")),
                },
            )
            notes.append(
                Problem(
                    "cloud",
                    key,
                    None,
                    f"cloud config rejected ({len(errors)} error(s)): " + "; ".join(errors[:3]),
                    "warning",
                )
            )
            report.problems += notes
            return report
        if cloud.config.common.config_version == cfg.common.config_version and loaded_from == path:
            notes.append(
                Problem(
                    "cloud", "config_version", cfg.common.config_version, "the local config is up to date", "warning"
                )
            )
            report.problems += notes
            return report
        save_config(path, raw)
        http.post_json(
            url, {"config_status": "applied", "config_version": cloud.config.common.config_version, "config_errors": ""}
        )
        cloud.problems += notes + [
            Problem(
                "cloud",
                "config_version",
                cloud.config.common.config_version,
                f"fetched from the cloud (local was {cfg.common.config_version}) and saved",
                "warning",
            )
        ]
        return cloud
    except (CloudError, ValueError, OSError) as e:
        report.problems += notes + [
            Problem(
                "cloud",
                "cloud_status_ip",
                redact(url),
                f"cloud config unavailable ({redact(e)}): using the local config",
                "warning",
            )
        ]
        return report
    finally:
        http.close()


class ConfigSync:
    """Shared-attribute long-poll: applies a pushed config without a restart.

    Also re-reads the attribute after every error (a push may have been missed while the link
    was down) and every ``trakr.cloud.config_refresh_s``. A pushed config is validated with the
    same rules as a file; an invalid one is reported (client attributes ``config_status =
    rejected`` and ``config_errors``) and the running config stays. A valid one is applied
    (``on_apply``), then saved as the local file and ``.last-good``, then reported ``applied``.
    """

    def __init__(
        self, cloud: Cloud, config_path: Path | None, local_raw: dict | None, on_apply: Callable[[SysConfig], None]
    ):
        self.cloud = cloud
        self.config_path = Path(config_path) if config_path else None
        self.raw = local_raw
        self.on_apply = on_apply
        self.http = HttpClient(cloud.config.trakr.cloud.http_timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rejected: dict | None = None
        self.applied = 0
        self.rejected = 0
        self.polls = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="config-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.http.close()  # aborts a long-poll in progress
        if self._thread is not None:
            self._thread.join(1.0)

    def _loop(self) -> None:
        backoff = 1.0
        need_fetch, last_fetch = True, time.monotonic()
        while not self._stop.is_set():
            cfg = self.cloud.config
            url, key = cfg.common.cloud_status_ip, cfg.trakr.cloud.config_key
            if not url:
                self._stop.wait(30)
                continue
            try:
                if need_fetch or time.monotonic() - last_fetch > cfg.trakr.cloud.config_refresh_s:
                    shared = self.http.shared_attributes(url, [key])
                    need_fetch, last_fetch = False, time.monotonic()
                    if key in shared:
                        self.offer(shared[key], "fetch")
                self.polls += 1
                update = self.http.wait_updates(url, cfg.trakr.cloud.long_poll_s)
                if update and key in update:
                    self.offer(update[key], "push")
                backoff = 1.0
            except Exception as e:  # network, closed client on stop, bad answers
                if self._stop.is_set():
                    return
                log.warning("config long-poll: %s (retry in %.0fs)", redact(e), backoff)
                self._stop.wait(backoff * random.uniform(0.5, 1.0))
                backoff = min(60.0, backoff * 2)
                need_fetch = True

    def offer(self, value: object, source: str = "push") -> bool:
        """Validate and apply a config value from the cloud; ``True`` if it was applied."""
        try:
            pushed = _decode(value)
        except ValueError as e:
            self._reject({"_invalid": str(value)[:200]}, [f"not a JSON object: {e}"], source)
            return False
        raw, refusals = vet_push(pushed, self.raw)
        if raw == self.raw or (raw or pushed) == self._rejected:
            return False
        if refusals:
            self._reject(raw or pushed, refusals, source)
            return False
        report = parse_config(raw)
        if not report.ok:
            self._reject(raw, [redact(str(p)) for p in report.errors] or ["no usable config"], source)
            return False
        version = report.config.common.config_version
        try:
            self.on_apply(report.config)
        except Exception as e:
            log.exception("config %s from the cloud could not be applied", version)
            self._reject(raw, [f"apply failed: {type(e).__name__}: {e}"], source)
            return False
        self.raw = raw
        self.applied += 1
        if self.config_path is not None:
            try:
                save_config(self.config_path, raw)
            except OSError as e:
                log.error("config %s applied but not saved: %s", version, e)
        log.info("config %s from the cloud (%s) applied: %d camera(s)", version, source, len(report.config.cameras))
        self.cloud.report_config("applied", version, [])
        return True

    def _reject(self, raw: dict, errors: list[str], source: str) -> None:
        self._rejected = raw
        self.rejected += 1
        common = raw.get("common") if isinstance(raw, dict) else None
        version = str(common.get("config_version", "?"))[:64] if isinstance(common, dict) else "?"
        log.warning(
            "config %s from the cloud (%s) rejected, keeping the running one: %s",
            version,
            source,
            "; ".join(errors[:5]),
        )
        self.cloud.report_config("rejected", version, errors)


# --------------------------------------------------------------------------------- the link


class Cloud:
    """Everything trakr sends off the box, for one running config."""

    def __init__(
        self,
        config: SysConfig,
        output_dir: str | Path,
        *,
        config_path: str | Path | None = None,
        cloud_config: bool = False,
        on_config: Callable[[SysConfig], None] | None = None,
        pipeline=None,
    ):
        self.config = config
        self.output_dir = Path(output_dir)
        self.pipeline = pipeline
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
        self.on_config = on_config
        self.config_sync: ConfigSync | None = None
        if cloud_config:
            local_raw = None
            if config_path is not None and Path(config_path).exists():
                try:
                    local_raw = json.loads(Path(config_path).read_text())
                except ValueError:
                    local_raw = None
            self.config_sync = ConfigSync(
                self, Path(config_path) if config_path else None, local_raw, self._apply_pushed
            )
        self.camera_state: dict[int, tuple[str, str]] = {}
        self.inference_state = "unknown"
        self._last_batches = self._last_errors = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.alerts_queued = 0
        self.reconciled = 0
        self.last_stats: dict = {}

    # -- config ---------------------------------------------------------------------------------
    def apply_config(self, new: SysConfig) -> None:
        """Use ``new`` for everything sent from now on (URLs are resolved at send time)."""
        self.config = new

    def _apply_pushed(self, new: SysConfig) -> None:
        if self.on_config is not None:
            self.on_config(new)
        self.apply_config(new)

    def report_config(self, status: str, version: str, errors: list[str]) -> None:
        """Queue the config status as client attributes of the ``cloud_status_ip`` device."""
        if not self.config.common.cloud_status_ip:
            return
        attrs = {
            "config_status": status,
            "config_version": version,
            "config_errors": "; ".join(errors)[:4000],
            "config_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.outbox.put(f"config:{uuid.uuid4().hex}", "attr", "config", {"attributes": attrs})

    # -- sinks (never touch the network) --------------------------------------------------------
    def alert_sink(self, alert: Alert, output_dir: Path) -> None:
        """Pipeline alert sink: telemetry, ROI event, evidence upload, speaker call into the outbox."""
        self.enqueue_alert(alert, Path(output_dir))
        self.speaker(alert, output_dir)

    def enqueue_alert(self, alert: Alert, output_dir: Path) -> None:
        c = self.config.common
        if not self.config.trakr.cloud.enabled:
            return
        ts = _ms(alert.captured_at)
        if c.alert_url:
            key = f"alert:{alert.alert_id}"
            self.outbox.put(key, "tb:alert", "alert", {"ts": ts, "values": alert_values(alert, key)})
        if alert.roi and c.roi_ip:
            key = f"roi:{alert.alert_id}"
            self.outbox.put(
                key,
                "tb:roi",
                "roi",
                {
                    "ts": ts,
                    "values": {
                        "msg_id": key,
                        "alert_id": alert.alert_id,
                        "camera_id": alert.camera_id,
                        "roi": alert.roi,
                        "violation": alert.violation,
                        "count": len(alert.objects),
                    },
                },
            )
        if alert.evidence_image and c.alert_storage_ip:
            image = output_dir / alert.evidence_image
            fields = {
                "alert_id": alert.alert_id,
                "camera_id": alert.camera_id,
                "camera_name": alert.camera_name,
                "roi": alert.roi or "",
                "violation": alert.violation,
                "captured_at": alert.to_json()["captured_at_iso"],
                "ts": ts,
                "kind": "alert",
            }
            self.outbox.put(
                f"alert-image:{alert.alert_id}",
                "up:alert",
                "alert_image",
                {"filename": image.name, "fields": fields},
                file=image,
            )
        self.alerts_queued += 1

    def enqueue_training(self, kind: str, image: Path, meta: dict) -> None:
        c, o = self.config.common, self.config.trakr.cloud
        if not o.enabled:
            return
        ts = _ms(meta["captured_at"])
        fields = {
            **meta,
            "captured_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(meta["captured_at"])) + f".{ts % 1000:03d}Z",
            "ts": ts,
            "kind": kind,
        }
        if c.train_storage_ip and o.training_upload:
            self.outbox.put(
                f"train-image:{image.name}",
                "up:train",
                "training",
                {"filename": image.name, "fields": fields},
                file=image,
            )
        if c.train_url:
            key = f"train:{image.name}"
            values = {k: v for k, v in fields.items() if k not in ("labels", "ts") and v is not None}
            self.outbox.put(
                key, "tb:train", "training", {"ts": ts, "values": {"msg_id": key, "image": image.name, **values}}
            )

    def result_sink(self, af) -> None:
        """Pipeline result sink: training capture and ``frameFile``."""
        self.training(af)
        self.frame_writer(af)

    def health_sink(self, h) -> None:
        """Pipeline health sink (:class:`trakr.capture.reader.reader.CameraHealth`): queued at once."""
        self.camera_state[h.camera_id] = (h.state, h.reason)
        self._health(
            {
                f"cam{h.camera_id}_state": h.state,
                f"cam{h.camera_id}_reason": h.reason,
                "event": f"camera_{h.state}",
                "camera_id": h.camera_id,
            },
            h.at,
        )

    def _health(self, values: dict, at: float | None = None) -> None:
        if not self.config.common.test_url or not self.config.trakr.cloud.enabled:
            return
        key = f"health:{uuid.uuid4().hex}"
        self.outbox.put(key, "tb:health", "health", {"ts": _ms(at or time.time()), "values": {"msg_id": key, **values}})

    def health_values(self) -> dict:
        """Snapshot: camera states and fps, inference state, outbox backlog and drops."""
        v: dict = {
            "event": "status",
            "config_version": self.config.common.config_version,
            "inference_state": self.inference_state,
        }
        st = self.outbox.stats()
        v.update(outbox_backlog=st["backlog"], outbox_bytes=st["bytes"], outbox_oldest_s=round(st["oldest_age_s"], 1))
        for name, n in st.items():
            if name.startswith(("dropped.", "rejected.", "expired.")):
                v["outbox_" + name.replace(".", "_")] = n
        p = self.pipeline
        if p is not None:
            up = down = 0
            for cid, (_cam, rs) in p.reader_stats().items():
                state = self.camera_state.get(cid, (rs.state, ""))[0]
                v[f"cam{cid}_state"] = state
                v[f"cam{cid}_fps"] = round(rs.fps, 2)
                up += state == "up"
                down += state != "up"
            v.update(cameras_up=up, cameras_down=down, alerts_total=p.stats.alerts)
        return v

    def _check_inference(self) -> bool:
        """Update ``inference_state`` from the pipeline's counters; ``True`` if it changed."""
        p = self.pipeline
        if p is None:
            return False
        b, e = p.stats.batches, p.stats.detector_errors
        state = self.inference_state
        server = getattr(p.detector, "health", None)  # the Redis backend knows its server's state
        if server in ("up", "down"):
            state = server
        elif b > self._last_batches:
            state = "up"
        elif e > self._last_errors:
            state = "down"
        self._last_batches, self._last_errors = b, e
        changed = state != self.inference_state
        self.inference_state = state
        return changed

    def _health_loop(self) -> None:
        next_at = time.monotonic() + 1.0
        while not self._stop.wait(1.0):
            if self._check_inference():
                self._health({"inference_state": self.inference_state, "event": f"inference_{self.inference_state}"})
            if time.monotonic() >= next_at:
                try:
                    self._health(self.health_values())
                except Exception:
                    log.exception("health report failed")
                o = self.config.trakr.cloud
                next_at = time.monotonic() + (o.health_interval_s or self.config.common.cam_alive_limit)

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
        """Queue stored alerts of the last ``reconcile_days`` that the outbox never saw (a crash
        between writing the alert record and committing its messages). Returns how many."""
        days = self.config.trakr.outbox.reconcile_days
        if days <= 0:
            return 0
        n = 0
        now = time.time()
        for d in range(days + 1):
            day = time.strftime("%Y-%m-%d", time.localtime(now - d * 86400))
            for rec in sorted((self.output_dir / "alerts" / day).glob("*.json")):
                try:
                    alert = Alert.from_json(json.loads(rec.read_text()))
                except (ValueError, KeyError, TypeError):
                    continue
                keys = [f"alert:{alert.alert_id}", f"alert-image:{alert.alert_id}"] + (
                    [f"roi:{alert.alert_id}"] if alert.roi else []
                )
                if any(self.outbox.outcome(k) is None for k in keys):  # put() skips the known ones
                    self.enqueue_alert(alert, self.output_dir)
                    n += 1
        if n:
            log.info("outbox: queued %d stored alert(s) that were never sent", n)
        return n

    def start(self) -> None:
        self.reconciled = self.reconcile()
        self.sender.start()
        t = threading.Thread(target=self._health_loop, name="cloud-health", daemon=True)
        t.start()
        self._threads.append(t)
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
            speaker_queued=self.speaker.queued,
            speaker_throttled=self.speaker.throttled,
            training_captured=self.training.captured,
            frames_written=self.frame_writer.written,
        )
        if self.config_sync is not None:
            s.update(config_applied=self.config_sync.applied, config_rejected=self.config_sync.rejected)
        return s


def attach(
    pipeline, config: SysConfig, config_path: str | Path | None = None, cloud_config: bool = False, start: bool = True
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
