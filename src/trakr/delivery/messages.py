"""What trakr sends: every outbound message built in one place, as ``(key, channel, category,
payload, file)``.

:func:`alert_messages` is the one list of an alert's messages: the alert sink queues it and the
start-up reconcile checks its keys, so the two can never disagree (a site without an image store
has no ``alert-image`` message, and reconcile does not look for one). Destinations are not in
the messages: the sender reads the URL of a channel (:data:`CHANNEL_URL`) from the *current*
config at send time, so a corrected token delivers the backlog.

============  ====================  =============  ===========================================
channel       URL (``common``)      category       payload
============  ====================  =============  ===========================================
tb:alert      alert_url             alert          telemetry, one per alert
tb:roi        roi_ip                roi            telemetry, alerts inside a named ROI
up:alert      alert_storage_ip      alert_image    multipart evidence JPEG + metadata
tb:train      train_url             training       telemetry, one per training capture
up:train      train_storage_ip      training       multipart raw JPEG + YOLO labels + metadata
tb:health     test_url              health         telemetry: cameras, inference, outbox
attr          cloud_status_ip       config         client attributes: config status
spk:<ip>      speaker url_template  speaker        HTTP call with the audio_key code
tts           (local espeak-ng)     speaker        WAV of the recommendation text
============  ====================  =============  ===========================================

(Speaker messages are built by :class:`trakr.delivery.speaker.SpeakerSink`, which throttles
them; they are not part of an alert's durable list because a late announcement helps nobody.)

Example:
    >>> from trakr.config import parse_config
    >>> cfg = parse_config({"common": {"alert_url": "http://tb/api/v1/T/telemetry"}, "cameras": []}).config
    >>> a = Alert("a1", 1, "gate", "dock", "person", 0.0, 0.1, "", [], (64, 48), evidence_image="x.jpg")
    >>> [(m.key, m.channel, m.category) for m in alert_messages(a, cfg)]  # no roi_ip, no image store
    [('alert:a1', 'tb:alert', 'alert')]
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import NamedTuple

from trakr.config import SysConfig
from trakr.types import Alert, iso_utc

CHANNEL_URL = {
    "tb:alert": "alert_url",
    "tb:roi": "roi_ip",
    "tb:train": "train_url",
    "tb:health": "test_url",
    "up:alert": "alert_storage_ip",
    "up:train": "train_storage_ip",
    "attr": "cloud_status_ip",
}
"""The ``common`` field holding each network channel's URL (speaker channels use their own)."""


class OutMessage(NamedTuple):
    """One message to queue with :meth:`trakr.delivery.outbox.Outbox.put`."""

    key: str
    """Idempotency key: the outbox stores a key once, receivers may drop duplicates by it."""
    channel: str
    category: str
    payload: dict
    file: Path | None = None
    """Attachment; for alerts relative to the output directory, else as given."""


def ms(t: float) -> int:
    """Epoch seconds as ThingsBoard's integer milliseconds."""
    return int(round(t * 1000))


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
        "captured_at": iso_utc(alert.captured_at),
        "delay_s": round(alert.created_at - alert.captured_at, 3),
        **face_values(alert),
    }


def face_values(alert: Alert) -> dict:
    """Flat face fields of a face alert (``unknown_face`` / ``face:<name>``), else nothing.

    >>> a = Alert("a1", 1, "gate", "door", "face:Asha Rao", 0.0, 0.1, "", [
    ...     {"class_name": "face:Asha Rao", "sub_label": "Asha Rao", "similarity": 0.61}], (64, 48))
    >>> face_values(a)
    {'face_name': 'Asha Rao', 'face_known': True, 'face_similarity': 0.61}
    """
    if alert.violation != "unknown_face" and not alert.violation.startswith("face:"):
        return {}
    obj = next((o for o in alert.objects if "sub_label" in o or "similarity" in o or "region" in o), {})
    name = obj.get("sub_label") or ""
    return {"face_name": name or "unknown", "face_known": bool(name), "face_similarity": obj.get("similarity", 0.0)}


def alert_messages(alert: Alert, config: SysConfig) -> list[OutMessage]:
    """Every durable message of ``alert`` under ``config``: telemetry, ROI event, evidence upload."""
    c = config.common
    if not config.trakr.cloud.enabled:
        return []
    ts = ms(alert.captured_at)
    out: list[OutMessage] = []
    if c.alert_url:
        key = f"alert:{alert.alert_id}"
        out.append(OutMessage(key, "tb:alert", "alert", {"ts": ts, "values": alert_values(alert, key)}))
    if alert.roi and c.roi_ip:
        key = f"roi:{alert.alert_id}"
        values = {
            "msg_id": key,
            "alert_id": alert.alert_id,
            "camera_id": alert.camera_id,
            "roi": alert.roi,
            "violation": alert.violation,
            "count": len(alert.objects),
        }
        out.append(OutMessage(key, "tb:roi", "roi", {"ts": ts, "values": values}))
    if not c.alert_storage_ip:
        return out

    def upload(kind: str, image: Path, extra: dict) -> OutMessage:
        """An image for the alert image store, with the alert's fields (``kind``: alert or face)."""
        fields = {
            "alert_id": alert.alert_id,
            "camera_id": alert.camera_id,
            "camera_name": alert.camera_name,
            "roi": alert.roi or "",
            "violation": alert.violation,
            "captured_at": iso_utc(alert.captured_at),
            "ts": ts,
            "kind": kind,
            **extra,
        }
        key = f"{kind}-image:{alert.alert_id}"
        return OutMessage(key, "up:alert", "alert_image", {"filename": image.name, "fields": fields}, image)

    if alert.evidence_image:
        out.append(upload("alert", Path(alert.evidence_image), {}))
    face_image = alert.extra.get("face_image")
    if face_image:  # the face crop of a face alert (trakr.faces.crops)
        out.append(upload("face", Path(face_image), face_values(alert)))
    return out


def training_messages(kind: str, image: Path, meta: dict, config: SysConfig) -> list[OutMessage]:
    """The upload and the event of one training capture (``meta`` from the capture)."""
    c, o = config.common, config.trakr.cloud
    if not o.enabled:
        return []
    ts = ms(meta["captured_at"])
    fields = {**meta, "captured_at": iso_utc(meta["captured_at"]), "ts": ts, "kind": kind}
    out: list[OutMessage] = []
    if c.train_storage_ip and o.training_upload:
        out.append(
            OutMessage(
                f"train-image:{image.name}", "up:train", "training", {"filename": image.name, "fields": fields}, image
            )
        )
    if c.train_url:
        key = f"train:{image.name}"
        values = {k: v for k, v in fields.items() if k not in ("labels", "ts") and v is not None}
        out.append(
            OutMessage(
                key, "tb:train", "training", {"ts": ts, "values": {"msg_id": key, "image": image.name, **values}}
            )
        )
    return out


def health_message(values: dict, config: SysConfig, at: float | None = None) -> OutMessage | None:
    """One health telemetry report (``None`` when ``test_url`` is not set or the cloud is off)."""
    if not config.common.test_url or not config.trakr.cloud.enabled:
        return None
    key = f"health:{uuid.uuid4().hex}"
    return OutMessage(key, "tb:health", "health", {"ts": ms(at or time.time()), "values": {"msg_id": key, **values}})


def config_status_message(status: str, version: str, errors: list[str], config: SysConfig) -> OutMessage | None:
    """The config status as client attributes of the ``cloud_status_ip`` device."""
    if not config.common.cloud_status_ip:
        return None
    attrs = {
        "config_status": status,
        "config_version": version,
        "config_errors": "; ".join(errors)[:4000],
        "config_at": iso_utc(time.time()),
    }
    return OutMessage(f"config:{uuid.uuid4().hex}", "attr", "config", {"attributes": attrs})
