"""Wire format of the Redis Streams inference backend (version 1), shared by client and worker.

The full specification, written so that a worker could be implemented in another language, is in
``docs/redis-protocol.md``. In short:

* a **request** is one stream entry on the frames stream (default ``trakr:frames``), read by the
  consumer group of workers (default ``trakr-workers``). It carries one client batch of ``n``
  letterboxed BGR frames of ``h`` x ``w`` pixels (the model input), JPEG or raw encoded, plus the
  client's thresholds and the stream to reply on;
* a **result** is one stream entry on the client's reply stream. It carries, per frame, the
  detections after NMS as little-endian float32 rows ``x1, y1, x2, y2, confidence, class_id`` in
  model-input pixels; the client maps them back to its image with its own letterbox.

All field names and values are ASCII except the binary ``f<i>`` (frames) and ``d<i>``
(detections) fields.

Example:
    >>> import numpy as np
    >>> img = np.full((32, 32, 3), 114, np.uint8)
    >>> fields = encode_request("c1:7", "trakr:results:c1", [img], "raw", 0.35, 0.5, 5000)
    >>> req = decode_request(fields)
    >>> req.batch_id, req.size, len(req.frames), bool((req.frames[0] == img).all())
    ('c1:7', (32, 32), 1, True)
    >>> dets = [np.array([[1, 2, 3, 4, 0.9, 0]], np.float32)]
    >>> res = decode_result(encode_result("c1:7", dets, model="abc", worker="w1", infer_ms=3.2))
    >>> res.status, [round(float(x), 2) for x in res.detections[0][0]], res.model
    ('ok', [1.0, 2.0, 3.0, 4.0, 0.9, 0.0], 'abc')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

VERSION = 1
"""Protocol version written in every message's ``v`` field."""

ENCODINGS = ("jpeg", "raw")
DET_COLUMNS = 6
"""Detection row: ``x1, y1, x2, y2, confidence, class_id`` (float32, little endian)."""


class ProtocolError(ValueError):
    """A message that does not follow the protocol (missing field, bad value, other version)."""


# --------------------------------------------------------------------------- frames


def encode_frame(image: np.ndarray, encoding: str, quality: int = 90) -> bytes:
    """One letterboxed BGR uint8 image as bytes: JPEG at ``quality`` or raw ``h*w*3`` pixels."""
    if encoding == "raw":
        return np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ProtocolError("JPEG encoding failed")
        return buf.tobytes()
    raise ProtocolError(f"unknown frame encoding {encoding!r}")


def decode_frame(data: bytes, encoding: str, size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_frame`; ``size`` is ``(h, w)``. Returns BGR uint8 ``h x w x 3``."""
    h, w = size
    if encoding == "raw":
        if len(data) != h * w * 3:
            raise ProtocolError(f"raw frame has {len(data)} bytes, expected {h}*{w}*3")
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)
    if encoding == "jpeg":
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ProtocolError("undecodable JPEG frame")
        if img.shape[:2] != (h, w):
            raise ProtocolError(f"JPEG frame is {img.shape[1]}x{img.shape[0]}, expected {w}x{h}")
        return img
    raise ProtocolError(f"unknown frame encoding {encoding!r}")


# --------------------------------------------------------------------------- helpers


def _s(fields: Mapping, key: str, default: str | None = None) -> str:
    v = fields.get(key, fields.get(key.encode()))
    if v is None:
        if default is not None:
            return default
        raise ProtocolError(f"missing field {key!r}")
    return v.decode() if isinstance(v, bytes) else str(v)


def _b(fields: Mapping, key: str) -> bytes:
    v = fields.get(key, fields.get(key.encode()))
    if v is None:
        raise ProtocolError(f"missing field {key!r}")
    return v if isinstance(v, bytes) else str(v).encode()


def _num(fields: Mapping, key: str, kind=float, default=None):
    raw = _s(fields, key, None if default is None else str(default))
    try:
        return kind(raw)
    except ValueError:
        raise ProtocolError(f"field {key!r} = {raw!r} is not a {kind.__name__}") from None


def _check_version(fields: Mapping) -> None:
    v = _s(fields, "v")
    if v != str(VERSION):
        raise ProtocolError(f"unsupported protocol version {v!r} (this side speaks {VERSION})")


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """A decoded request: one client batch."""

    batch_id: str
    reply: str
    encoding: str
    size: tuple[int, int]
    """``(h, w)`` of every frame (the model input)."""
    frames: list[np.ndarray]
    confidence: float
    iou: float
    ttl_ms: int
    """The client stops waiting this long after the entry was added (0 = forever)."""


def encode_request(
    batch_id: str,
    reply: str,
    frames: list[np.ndarray],
    encoding: str,
    confidence: float,
    iou: float,
    ttl_ms: int,
    quality: int = 90,
    encoded: list[bytes] | None = None,
) -> dict[str, bytes | str]:
    """Fields of a request entry. ``frames`` are letterboxed BGR uint8 images of one size.

    ``encoded`` may pass frames already encoded by :func:`encode_frame` (``frames`` still gives
    the size)."""
    if not frames:
        raise ProtocolError("a request needs at least one frame")
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        raise ProtocolError("all frames of a request must have the same size")
    if encoding not in ENCODINGS:
        raise ProtocolError(f"unknown frame encoding {encoding!r}")
    fields: dict[str, bytes | str] = {
        "v": str(VERSION),
        "batch": batch_id,
        "reply": reply,
        "enc": encoding,
        "n": str(len(frames)),
        "h": str(h),
        "w": str(w),
        "conf": f"{confidence:g}",
        "iou": f"{iou:g}",
        "ttl_ms": str(int(ttl_ms)),
    }
    blobs = encoded if encoded is not None else [encode_frame(f, encoding, quality) for f in frames]
    for i, blob in enumerate(blobs):
        fields[f"f{i}"] = blob
    return fields


def request_header(fields: Mapping) -> tuple[str, str]:
    """``(batch_id, reply)`` of a request without decoding its frames (for error replies).

    Raises :class:`ProtocolError` if even those are missing."""
    return _s(fields, "batch"), _s(fields, "reply")


def decode_request(fields: Mapping) -> Request:
    """Parse and decode a request entry's fields (keys/values as bytes or str)."""
    _check_version(fields)
    batch_id, reply = request_header(fields)
    enc = _s(fields, "enc")
    if enc not in ENCODINGS:
        raise ProtocolError(f"unknown frame encoding {enc!r}")
    n, h, w = _num(fields, "n", int), _num(fields, "h", int), _num(fields, "w", int)
    if n < 1 or h < 1 or w < 1:
        raise ProtocolError(f"bad batch shape n={n} h={h} w={w}")
    frames = [decode_frame(_b(fields, f"f{i}"), enc, (h, w)) for i in range(n)]
    return Request(
        batch_id,
        reply,
        enc,
        (h, w),
        frames,
        _num(fields, "conf", float, 0.25),
        _num(fields, "iou", float, 0.45),
        _num(fields, "ttl_ms", int, 0),
    )


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """A decoded result for one request."""

    batch_id: str
    status: str
    """``ok`` or ``error``."""
    detections: list[np.ndarray] = field(default_factory=list)
    """Per frame, a ``(k, 6)`` float32 array in model-input pixels."""
    model: str = ""
    worker: str = ""
    error: str = ""
    infer_ms: float = 0.0


def encode_result(
    batch_id: str, detections: list[np.ndarray], *, model: str, worker: str, infer_ms: float = 0.0
) -> dict[str, bytes | str]:
    """Fields of an ``ok`` result entry; ``detections[i]`` is a ``(k, 6)`` array for frame ``i``."""
    fields: dict[str, bytes | str] = {
        "v": str(VERSION),
        "batch": batch_id,
        "status": "ok",
        "n": str(len(detections)),
        "model": model,
        "worker": worker,
        "infer_ms": f"{infer_ms:.2f}",
    }
    for i, d in enumerate(detections):
        fields[f"d{i}"] = np.ascontiguousarray(d, dtype="<f4").reshape(-1, DET_COLUMNS).tobytes()
    return fields


def encode_error(batch_id: str, message: str, *, worker: str) -> dict[str, str]:
    """Fields of an ``error`` result entry (the request could not be served)."""
    return {"v": str(VERSION), "batch": batch_id, "status": "error", "n": "0", "worker": worker, "error": message[:500]}


def decode_result(fields: Mapping) -> Result:
    """Parse a result entry's fields."""
    _check_version(fields)
    batch_id, status = _s(fields, "batch"), _s(fields, "status")
    res = Result(
        batch_id,
        status,
        model=_s(fields, "model", ""),
        worker=_s(fields, "worker", ""),
        error=_s(fields, "error", ""),
        infer_ms=_num(fields, "infer_ms", float, 0.0),
    )
    if status == "ok":
        for i in range(_num(fields, "n", int)):
            blob = _b(fields, f"d{i}")
            if len(blob) % (4 * DET_COLUMNS):
                raise ProtocolError(f"field d{i} has {len(blob)} bytes, not a multiple of {4 * DET_COLUMNS}")
            res.detections.append(np.frombuffer(blob, "<f4").reshape(-1, DET_COLUMNS).astype(np.float32))
    elif status != "error":
        raise ProtocolError(f"unknown result status {status!r}")
    return res
