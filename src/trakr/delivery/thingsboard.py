"""ThingsBoard device API clients: HTTP telemetry and uploads, MQTT telemetry, shared attributes.

Formats (ThingsBoard device API):

* telemetry ``POST <base>/api/v1/<token>/telemetry`` with ``{"ts": <ms>, "values": {...}}``;
  over MQTT the same payload is published to ``v1/devices/me/telemetry`` with the token as the
  user name (QoS 1, delivered once the broker acknowledged it);
* client attributes ``POST <base>/api/v1/<token>/attributes`` with ``{"key": value}``;
* shared attributes ``GET <base>/api/v1/<token>/attributes?sharedKeys=a,b`` answering
  ``{"shared": {"a": ...}}``;
* updates long-poll ``GET <base>/api/v1/<token>/attributes/updates?timeout=<ms>`` answering the
  changed shared attributes ``{"a": ...}``, or 408 when nothing changed before the timeout.

Every HTTP call has a hard timeout. Device tokens are secrets: every log line that may contain a
URL goes through :func:`trakr.logs.redact`, and the ``httpx``/``httpcore`` loggers (which log
request URLs) get the redacting filter too.

Status codes map to sender outcomes: 2xx delivered; 408, 429, 5xx, connection errors and
timeouts retried; 401/403/404 (a wrong or revoked token, a missing device) *blocked*: kept and
retried at the longest delay, and at once when a new config arrives, so that fixing the token
delivers the backlog; other 4xx rejected (the message itself is bad, retrying cannot help).

Example:
    >>> attributes_url("https://tb.example/api/v1/TOKEN/telemetry")
    'https://tb.example/api/v1/TOKEN/attributes'
    >>> device_token("https://tb.example/api/v1/TOKEN/telemetry")
    'TOKEN'
    >>> classify(201), classify(503), classify(401), classify(400)
    ('ok', 'retry', 'blocked', 'reject')
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import httpx

from trakr.delivery.sender import BLOCKED, OK, REJECT, RETRY, Outcome
from trakr.logs import RedactingFilter, redact

log = logging.getLogger(__name__)

for _name in ("httpx", "httpcore"):
    _lg = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _lg.filters):
        _lg.addFilter(RedactingFilter())

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
_TOKEN = re.compile(r"/api/v1/([^/?\s]+)")


def device_token(url: str) -> str | None:
    """The device access token in a ThingsBoard device API URL (never log it)."""
    m = _TOKEN.search(url or "")
    return m.group(1) if m else None


def attributes_url(url: str) -> str:
    """``.../api/v1/<token>/attributes`` for any device API URL of the same device."""
    m = _TOKEN.search(url)
    if not m:
        return url
    return url[: m.end()] + "/attributes"


def classify(status: int) -> str:
    """The sender outcome of an HTTP status (see the module docstring)."""
    if 200 <= status < 300:
        return OK
    if status in (401, 403, 404):
        return BLOCKED
    if status in (408, 429) or status >= 500:
        return RETRY
    return REJECT


class CloudError(Exception):
    """A cloud call failed (the message is already redacted)."""


class BadAnswer(CloudError):
    """The cloud answered, but with a body that cannot be used (e.g. JSON nested too deeply)."""

    def __init__(self, message: str, fingerprint: str):
        super().__init__(message)
        self.fingerprint = fingerprint
        """SHA-256 of the answer, so that the same bad answer is reported once."""


class HttpClient:
    """httpx client with a hard timeout on every call; thread-safe."""

    def __init__(self, timeout_s: float = 10.0):
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, headers={"User-Agent": "trakr"}
        )

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, url: str, key: str | None = None, timeout: float | None = None, **kw) -> Outcome:
        headers = kw.pop("headers", {}) or {}
        if key:
            headers["Idempotency-Key"] = key
        try:
            r = self._client.request(
                method, url, headers=headers, timeout=httpx.Timeout(timeout or self.timeout_s), **kw
            )
        except httpx.TimeoutException as e:
            return Outcome(RETRY, f"{method} {redact(url)}: timeout ({type(e).__name__})")
        except httpx.HTTPError as e:
            return Outcome(RETRY, f"{method} {redact(url)}: {type(e).__name__}: {redact(e)}")
        status = classify(r.status_code)
        detail = "" if status == OK else f"{method} {redact(url)}: HTTP {r.status_code} {redact(r.text[:200])}"
        return Outcome(status, detail, r.status_code)

    def post_json(self, url: str, body: dict, key: str | None = None) -> Outcome:
        """POST a JSON body (telemetry ``{"ts", "values"}`` or client attributes)."""
        return self._send(
            "POST",
            url,
            key,
            content=json.dumps(body, separators=(",", ":")),
            headers={"Content-Type": "application/json"},
        )

    def upload(
        self,
        url: str,
        data: bytes,
        filename: str,
        fields: dict,
        key: str | None = None,
        file_field: str = "image",
        content_type: str = "image/jpeg",
    ) -> Outcome:
        """POST multipart/form-data: the file plus metadata fields (all sent as strings)."""
        form = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items() if v is not None}
        if key:
            form["idempotency_key"] = key
        return self._send("POST", url, key, data=form, files={file_field: (filename, data, content_type)})

    def call(self, method: str, url: str, key: str | None = None, **kw) -> Outcome:
        return self._send(method, url, key, **kw)

    # -- attributes -------------------------------------------------------------------------------
    def get_json(self, url: str, params: dict | None = None, timeout: float | None = None) -> tuple[int, object]:
        """GET returning ``(status, parsed JSON or None)``; raises :class:`CloudError` on transport errors."""
        try:
            r = self._client.get(url, params=params, timeout=httpx.Timeout(timeout or self.timeout_s))
        except httpx.HTTPError as e:
            raise CloudError(f"GET {redact(url)}: {type(e).__name__}: {redact(e)}") from None
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = None
        except RecursionError:  # a value nested thousands deep: the answer is usable, its content not
            raise BadAnswer(
                f"GET {redact(url)}: the answer is JSON nested too deeply", hashlib.sha256(r.content).hexdigest()
            ) from None
        return r.status_code, body

    def shared_attributes(self, attr_url: str, keys: list[str]) -> dict:
        """Current values of shared attributes ``keys`` (missing ones are absent)."""
        status, body = self.get_json(attr_url, {"sharedKeys": ",".join(keys)})
        if status != 200 or not isinstance(body, dict):
            raise CloudError(f"GET {redact(attr_url)}: HTTP {status}")
        shared = body.get("shared", {})
        return shared if isinstance(shared, dict) else {}

    def wait_updates(self, attr_url: str, timeout_s: float) -> dict | None:
        """Long-poll for shared attribute updates: the changed ones, or ``None`` after ``timeout_s``."""
        url = attr_url.rstrip("/") + "/updates"
        status, body = self.get_json(url, {"timeout": int(timeout_s * 1000)}, timeout=timeout_s + self.timeout_s)
        if status == 408:
            return None
        if status != 200:
            raise CloudError(f"GET {redact(url)}: HTTP {status}")
        return body if isinstance(body, dict) else {}


class MqttTelemetry:
    """Publishes telemetry over ThingsBoard's MQTT device API, one connection per device token.

    ``publish`` reports ``ok`` only after the broker's PUBACK (QoS 1) and ``retry`` when the
    connection is down or the ack does not come within ``timeout_s``.
    """

    def __init__(self, url: str, timeout_s: float = 10.0, keepalive: int = 30):
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 1883
        self.timeout_s = timeout_s
        self.keepalive = keepalive
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, token: str) -> Any:
        import paho.mqtt.client as mqtt

        with self._lock:
            c = self._clients.get(token)
            if c is None:
                c = mqtt.Client(
                    mqtt.CallbackAPIVersion.VERSION2, client_id=f"trakr-{uuid.uuid4().hex[:12]}", clean_session=True
                )
                c.username_pw_set(token)
                c.reconnect_delay_set(1, 30)
                c.max_queued_messages_set(100)
                c.on_connect = lambda cl, ud, flags, rc, props: log.info(
                    "mqtt %s:%s connected (%s)", self.host, self.port, rc
                )
                c.on_disconnect = lambda cl, ud, flags, rc, props: log.info(
                    "mqtt %s:%s disconnected (%s)", self.host, self.port, rc
                )
                c.connect_async(self.host, self.port, keepalive=self.keepalive)
                c.loop_start()
                self._clients[token] = c
        return c

    def publish(self, token: str, body: dict, topic: str = TELEMETRY_TOPIC) -> Outcome:
        c = self._client(token)
        deadline = time.monotonic() + self.timeout_s
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not c.is_connected():
            return Outcome(RETRY, f"mqtt {self.host}:{self.port} not connected")
        try:
            info = c.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as e:
            return Outcome(RETRY, f"mqtt publish: {e}")
        if info.is_published():
            return Outcome(OK)
        return Outcome(RETRY, f"mqtt {self.host}:{self.port}: no PUBACK within {self.timeout_s:g}s")

    def close(self) -> None:
        with self._lock:
            for c in self._clients.values():
                c.disconnect()
                c.loop_stop()
            self._clients.clear()
