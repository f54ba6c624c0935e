"""Configuration: read the legacy ``sysconfig.json`` format as it is, plus trakr's own options.

The file has ``common`` (site-wide settings, cloud URLs), ``cameras`` (the live list) and
optionally ``sample_cameras``. Legacy quirks are accepted: booleans written as ``"true"`` or
``1``, numbers written as strings, ``"NA"`` meaning "none", the doubly nested
``roi_config.roi_config``, ROI points as normalised or pixel ``"x,y"`` strings.

trakr's own settings live in an optional ``trakr`` section; every one has a default, so the
legacy file needs no edits.

Loading never stops at the first bad value and never raises: :func:`load_config` and
:func:`parse_config` validate each camera on its own and return every problem, one per
camera/field/value, so ``trakr config check`` can list them all. A camera with errors is left out
of the config and listed in :attr:`ConfigReport.invalid_cameras`; the others still run (partial
start). Every float must be finite, and every timeout and period has a sane maximum.

Per-camera settings that default to ``common`` (``CamDelay``, ``sav_vio_img``,
``save_all_detection``, ``save_all_inp_img``, ``ROI_crop_en``) are resolved once, when the config
is built: read them straight from the :class:`CameraConfig`.

Example:
    >>> from trakr.config import parse_config
    >>> report = parse_config({"common": {"CamDelay": 2}, "cameras": [
    ...     {"CameraId": 7, "Address": "rtsp://cam/1", "Detection": "person", "CamDelay": "-1"},
    ...     {"CameraId": 8, "Address": "rtsp://cam/2", "Detection": "person"}]})
    >>> print(report.problems[0])
    camera 7: CamDelay = '-1': Input should be greater than or equal to 0
    >>> [c.camera_id for c in report.config.cameras], list(report.invalid_cameras)
    ([8], ['7'])
    >>> report.config.cameras[0].cam_delay  # resolved from common
    2.0
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trakr.faces.options import FaceOptions, is_face_trigger
from trakr.logs import redact
from trakr.rules.options import Calibration, DwellRule, EventOptions, LineRule, OccupancyRule
from trakr.rules.ppe_options import PpeOptions

MAX_TIMEOUT_S = 600.0
"""Largest accepted timeout of one external call (open, read, HTTP, Redis...)."""
MAX_PERIOD_S = 7 * 86400.0
"""Largest accepted period, pause or age in seconds (a week)."""
MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""Largest config file read (a real one is a few kB)."""
MAX_DEPTH = 64
"""Deepest nesting accepted in a section (a real config nests about 8 levels)."""
MAX_ADDRESS_CHARS = 2048
MAX_USB_INDEX = 9999


class _ShortRepr(reprlib.Repr):
    """``repr`` that is short and never fails: bounded depth, length, and huge ints."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 80, 80, 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int is slow, and raises past 4300 digits
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def _show(value: Any) -> str:
    """A short, safe ``repr`` of a config value for problem lines.

    >>> _show("NA"), _show([[[[[1]]]]]), _show(10**5000)
    ("'NA'", '[[[[...]]]]', '<an integer of 16610 bits>')
    """
    try:
        return _SHORT.repr(value)
    except Exception:  # a value whose __repr__ fails (never from JSON)
        return f"<{type(value).__name__}>"


def _depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists/dicts in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        if d >= limit:
            return True
        stack.extend((c, d + 1) for c in children)
    return False


# --------------------------------------------------------------------------- legacy value types


def _na_to_none(value: Any) -> Any:
    """``"NA"``, ``"Na"``, ``"none"`` and ``""`` mean "not set" in the legacy format."""
    if isinstance(value, str) and value.strip().lower() in {"na", "none", "null", ""}:
        return None
    return value


def _parse_point(point: Any) -> tuple[float, float]:
    """An ``"x,y"`` string or an ``[x, y]`` pair of numbers, finite and not negative."""
    shown = _show(point)
    if isinstance(point, str):
        parts = point.split(",")
        if len(parts) != 2:
            raise ValueError(f"point {shown} is not 'x,y'")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"point {shown} is not two numbers 'x,y'") from None
    elif (
        isinstance(point, (list, tuple))
        and len(point) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
    ):
        try:
            x, y = float(point[0]), float(point[1])
        except OverflowError:  # an int too large for a float
            raise ValueError(f"point {shown} is out of range") from None
    else:
        raise ValueError(f"point {shown} is not 'x,y' or [x, y]")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"point {shown} is not finite")
    if x < 0 or y < 0:
        raise ValueError(f"point {shown} has a negative coordinate")
    return x, y


def _parse_polygon(value: Any) -> Any:
    value = _na_to_none(value)
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(f"expected 'NA' or a list of 'x,y' points, got {value!r}")
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of 'x,y' points, got {type(value).__name__}")
    points = [_parse_point(p) for p in value]
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    return points


def _parse_triggers(value: Any) -> Any:
    """Colon-separated triggers, or a list. In a string, ``face`` joins the name after it
    (``"person:face:Asha Rao"`` -> ``["person", "face:Asha Rao"]``); a name holding ``:`` needs
    the list form (``["face:A:B"]``).

    >>> _parse_triggers("person:face:Asha Rao:unknown_face")
    ['person', 'face:Asha Rao', 'unknown_face']
    >>> _parse_triggers('["person", "face:R2:D2"]')
    ['person', 'face:R2:D2']
    """
    value = _na_to_none(value)
    if value is None:
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"not a JSON list of triggers: {_show(value)}") from None
    if isinstance(value, str):
        tokens = [t.strip() for t in value.split(":") if t.strip()]
        out: list[str] = []
        for t in tokens:
            if out and out[-1] == "face":
                out[-1] = f"face:{t}"
            else:
                out.append(t)
        if out and out[-1] == "face":
            raise ValueError("'face' needs a name after it: face:<name>")
        return out
    return value


def relative_file_name(value: str) -> str:
    """A path that stays inside the output directory: relative, no ``..``, no drive or NUL.

    >>> relative_file_name("frames/latest.png")
    'frames/latest.png'
    >>> relative_file_name("../x")
    Traceback (most recent call last):
    ...
    ValueError: must be a relative path inside the output directory, got '../x'
    """
    p = PurePosixPath(value.replace("\\", "/"))
    if not value.strip() or "\0" in value or p.is_absolute() or ".." in p.parts or ":" in value:
        raise ValueError(f"must be a relative path inside the output directory, got {value!r}")
    return value


def _no_text_placeholder(cmd: list[str] | None) -> list[str] | None:
    """Commands never get alert text as an argument (it could be read as an option)."""
    for arg in cmd or []:
        if "{text}" in arg:
            raise ValueError("'{text}' is not allowed in a command: the text is given on standard input")
    return cmd


Polygon = Annotated[list[tuple[float, float]] | None, BeforeValidator(_parse_polygon)]
"""``None`` (whole frame) or >= 3 points, normalised (all <= 1) or pixels."""
Triggers = Annotated[list[str], BeforeValidator(_parse_triggers)]
"""Colon-separated trigger names, e.g. ``"person:car:social_distancing"``."""
OptionalStr = Annotated[str | None, BeforeValidator(_na_to_none)]
Flag = Annotated[bool, BeforeValidator(lambda v: v if not isinstance(v, str) else v.strip().lower())]
"""A legacy boolean: ``true``, ``"true"``, ``1``, ``"1"``, ``"yes"``..."""


class _Legacy(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- legacy sections


class RoiConfig(_Legacy):
    """One named region of interest of a camera."""

    points: Polygon = Field(None, description="Polygon; normalised or pixel 'x,y' strings.")
    speaker_ip: OptionalStr = Field(None, description="Speaker that announces this ROI's violations.")
    detections: Triggers = Field(default_factory=list, description="Triggers checked inside this ROI.")


class CameraConfig(_Legacy):
    """One camera: where to read it, what to look for, and what to do about it."""

    camera_id: int = Field(ge=0, le=2**31 - 1, alias="CameraId", description="Unique camera id used in alerts.")
    name: str = Field("", alias="CamName", description="Human-readable camera name.")
    address: str = Field(alias="Address", description="rtsp://, http(s):// MJPEG, file path or USB index.")
    detection: Triggers = Field(default_factory=list, alias="Detection", description="Camera-wide triggers.")
    speaker: OptionalStr = Field(None, alias="Speaker", description="Camera-wide speaker address.")
    train_en: Flag = Field(False, description="Capture training images from this camera.")
    alert_en: Flag = Field(True, description="Raise alerts for this camera.")
    en_spkr: Flag = Field(False, description="Announce violations on the speaker.")
    sav_vio_img: Flag = Field(True, description="Save an annotated evidence image per alert (common value if unset).")
    save_all_detection: Flag = Field(
        False, description="Save an annotated image of every frame with detections (common value if unset)."
    )
    save_all_inp_img: Flag = Field(False, description="Save every analysed input frame (common value if unset).")
    cam_delay: float = Field(
        0.0,
        ge=0,
        le=3600,
        alias="CamDelay",
        description="Sampling period in s (common value if unset, null or 'NA').",
    )
    train_time_pause: float = Field(
        60.0, ge=0, le=MAX_PERIOD_S, description="Minimum seconds between training captures."
    )
    alert_time_pause: float = Field(
        10.0, ge=0, le=MAX_PERIOD_S, description="Minimum seconds between alerts per violation."
    )
    roi_crop_en: int = Field(
        0,
        ge=0,
        le=1,
        alias="ROI_crop_en",
        description="1: analyse only the camera polygon's bounding box (common value if unset).",
    )
    roi: Polygon = Field(None, alias="ROI", description="Camera polygon ('NA' = whole frame).")
    points: Polygon = Field(None, description="Camera polygon ('NA' = whole frame); same as ROI.")
    sd_thresh_limit_x: float = Field(
        100.0, gt=0, le=1e6, description="Social distancing: max |dx| in px for a violating pair."
    )
    sd_thresh_limit_y: float = Field(
        100.0, gt=0, le=1e6, description="Social distancing: max |dy| in px for a violating pair."
    )
    roi_config: dict[str, RoiConfig] = Field(default_factory=dict, description="Named ROIs.")
    lines: dict[str, LineRule] = Field(default_factory=dict, description="Counting lines (docs/events.md).")
    dwell: dict[str, DwellRule] = Field(default_factory=dict, description="Loitering: N s inside an ROI.")
    occupancy: dict[str, OccupancyRule] = Field(default_factory=dict, description="More than N objects in an ROI.")
    calibration: Calibration | None = Field(None, description="Ground plane: 4 image points and their metres.")
    sd_min_m: float | None = Field(
        None, gt=0, le=1000, description="Social distancing in metres (with calibration); else the pixel limits."
    )
    faces: Flag = Field(False, description="Run face recognition on this camera (needs a face trigger).")

    @field_validator("roi_config", mode="before")
    @classmethod
    def _unnest(cls, value: Any) -> Any:
        value = _na_to_none(value)
        if value is None:
            return {}
        if isinstance(value, dict) and set(value) == {"roi_config"}:
            value = value["roi_config"]  # the legacy file nests it twice
        return value

    @model_validator(mode="before")
    @classmethod
    def _unset_na_delay(cls, data: Any) -> Any:
        """``"CamDelay": null`` or ``"NA"`` means "not set": the common value applies."""
        if isinstance(data, dict) and "CamDelay" in data and _na_to_none(data["CamDelay"]) is None:
            data = {k: v for k, v in data.items() if k != "CamDelay"}
        return data

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_USB_INDEX:
                raise ValueError(f"a USB camera index is 0..{MAX_USB_INDEX}")
            return str(value)
        if not isinstance(value, str):
            return value  # pydantic reports "Input should be a valid string"
        a = value.strip()
        if not a:
            raise ValueError("address is empty")
        if len(value) > MAX_ADDRESS_CHARS:
            raise ValueError(f"address is longer than {MAX_ADDRESS_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("address contains a control character")
        if a.isdigit() and not (a.isascii() and len(a) <= 12 and int(a) <= MAX_USB_INDEX):
            raise ValueError(f"a USB camera index is 0..{MAX_USB_INDEX}")
        return value

    @property
    def polygon(self) -> list[tuple[float, float]] | None:
        """The camera-wide polygon from ``points`` or ``ROI`` (``None`` = whole frame)."""
        return self.points or self.roi

    @property
    def label(self) -> str:
        return f"{self.camera_id}:{self.name}" if self.name else str(self.camera_id)


class CommonConfig(_Legacy):
    """Site-wide settings shared by all cameras (the legacy ``common`` section)."""

    @field_validator("frame_file")
    @classmethod
    def _inside_output(cls, v: str) -> str:
        return relative_file_name(v)

    config_version: str = Field("0", description="Version of this config, compared on cloud fetch.")
    client_name: str = Field("trakr", alias="ClientName", description="Name of this site/client.")
    server_ip: OptionalStr = Field(None, description="Legacy inference server URL.")
    train_storage_ip: OptionalStr = Field(None, description="Training image upload URL.")
    alert_storage_ip: OptionalStr = Field(None, description="Alert image upload URL.")
    roi_ip: OptionalStr = Field(None, description="ThingsBoard telemetry URL for ROI events.")
    roi_storage_ip: OptionalStr = Field(None, description="ROI image upload URL.")
    cloud_status_ip: OptionalStr = Field(None, description="ThingsBoard attributes URL (pushed config).")
    test_url: OptionalStr = Field(None, description="ThingsBoard telemetry URL for health.")
    alert_url: OptionalStr = Field(None, description="ThingsBoard telemetry URL for alerts.")
    train_url: OptionalStr = Field(None, description="ThingsBoard telemetry URL for training events.")
    workers: int = Field(1, ge=1, le=64, description="Legacy worker count.")
    cam_not_reachable_limit: int = Field(
        5, ge=1, le=1_000_000, alias="CamNotReachableLimit", description="Failed connects before a camera is down."
    )
    server_not_reachable_limit: int = Field(
        5,
        ge=1,
        le=1_000_000,
        alias="ServerNotReachableLimit",
        description="Result timeouts before the inference server is down.",
    )
    cam_alive_limit: float = Field(
        30.0,
        gt=0,
        le=86400,
        alias="CamAliveLimit",
        description="Seconds without a frame before reconnecting; health period.",
    )
    logging_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", alias="LoggingLevel", description="Log level."
    )
    log_file_save: Flag = Field(False, alias="LogFileSave", description="Also write a rotating log file.")
    alert_2_train: Flag = Field(False, alias="Alert2Train", description="Copy alert images to training.")
    enable_frame: Flag = Field(False, alias="enableFrame", description="Write the latest annotated frame to frameFile.")
    enable_alert: Flag = Field(True, alias="enableAlert", description="Master switch for alerts.")
    frame_file: str = Field(
        "DataFrame.png",
        alias="frameFile",
        description="File for the latest annotated frame, relative to the output directory.",
    )
    enable_training: Flag = Field(False, alias="enableTraining", description="Master switch for training capture.")
    enable_speaker: Flag = Field(False, alias="enableSpeaker", description="Master switch for speakers.")
    sav_vio_img: Flag = Field(True, description="Default for cameras' sav_vio_img.")
    save_all_detection: Flag = Field(False, description="Default for cameras' save_all_detection.")
    save_all_inp_img: Flag = Field(False, description="Default for cameras' save_all_inp_img.")
    cam_delay: float = Field(
        0.0, ge=0, le=3600, alias="CamDelay", description="Default sampling period in seconds (0 = every frame)."
    )
    audio_key: dict[str, str] = Field(default_factory=dict, description="Violation -> speaker message code.")
    recommendations: dict[str, str] = Field(default_factory=dict, description="Violation -> advice text in alerts.")
    roi_crop_en: int = Field(0, ge=0, le=1, alias="ROI_crop_en", description="Default for cameras' ROI_crop_en.")
    roi_en: Flag = Field(True, alias="ROI_en", description="Apply ROIs (0 = all triggers camera-wide).")
    batch_size: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto", description="Frames per detector batch, 1-64, or 'auto' (measured once per model and machine)."
    )


# --------------------------------------------------------------------------- trakr's own options


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DetectorOptions(_Options):
    """Which model runs and how."""

    backend: Literal["auto", "onnxruntime", "openvino", "onnx", "redis"] = Field(
        "auto", description="'auto' (fastest installed, measured once), 'onnxruntime' ('onnx'), 'openvino', 'redis'."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="OpenVINO precision: 'auto' = BF16 or FP32, whichever is faster on this CPU (measured once).",
    )
    model_path: str | None = Field(None, description="Ultralytics-format ONNX file; default: bundled YOLO11n.")
    imgsz: int = Field(416, ge=32, le=2048, description="Model input size in px (multiple of 32).")
    confidence: float = Field(0.35, ge=0, le=1, description="Minimum detection confidence.")
    iou: float = Field(0.5, ge=0, le=1, description="NMS IoU threshold.")
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads (0 = all cores).")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], description="ONNX Runtime providers."
    )
    class_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model class -> trigger, e.g. {'NO-Hardhat': 'nohelmet'}; ignores case, spaces, '-', '_'.",
    )
    class_confidence: dict[str, float] = Field(
        default_factory=dict, description="Minimum confidence per class (model name or trigger)."
    )
    classes: list[str] = Field(
        default_factory=list, description="Keep only these classes (model names or triggers); empty = all."
    )

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("must be a multiple of 32")
        return v


class GateOptions(_Options):
    """Change gate: skip frames that did not change (measured defaults, see docs/gate.md)."""

    enabled: bool = Field(True, description="Turn the change gate on.")
    width: int = Field(
        160, ge=16, le=4096, description="Compared grey copy costs at most width x 3/4 width px (4:3 frame: this wide)."
    )
    pixel_threshold: int = Field(25, ge=1, le=255, description="Grey-level difference that counts as changed.")
    area_threshold: float = Field(
        0.02, ge=0, le=1, description="Changed fraction of the watched region that passes (or min_object_px's share)."
    )
    keyframe_s: float = Field(5.0, gt=0, le=3600, description="Pass a frame at least this often per camera.")
    min_object_px: tuple[float, float] = Field(
        (12.0, 30.0), description="[w, h] of the smallest object that must pass, in px of a 576-line frame (scaled)."
    )

    @field_validator("min_object_px")
    @classmethod
    def _object_size(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(1 <= x <= 4096 for x in v):
            raise ValueError(f"min_object_px sides must be 1..4096 px, got {list(v)}")
        return v


class BatchOptions(_Options):
    """Cross-camera batcher."""

    deadline_ms: float = Field(50.0, ge=0, le=60000, description="Send a partial batch after this many ms.")
    max_inflight: int = Field(1, ge=1, le=64, description="Batches being inferred at once.")


class CaptureOptions(_Options):
    """Camera readers."""

    open_timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S, description="Timeout to open a stream.")
    read_timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S, description="Timeout to read one frame.")
    backoff_min_s: float = Field(0.5, gt=0, le=3600, description="First reconnect delay.")
    backoff_max_s: float = Field(15.0, gt=0, le=3600, description="Largest reconnect delay.")
    loop_files: bool = Field(False, description="Loop file cameras forever.")
    realtime_files: bool = Field(True, description="Read file cameras at their native frame rate.")


class OutputOptions(_Options):
    """Local outputs."""

    directory: str = Field("trakr-output", description="Where alerts, evidence and logs go.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of saved images.")
    save_all_interval_s: float = Field(
        1.0, ge=0, le=MAX_PERIOD_S, description="Min seconds between save_all_* images per camera."
    )
    max_disk_mb: float = Field(
        20000.0,
        gt=0,
        le=1e9,
        description="Disk the saved images may use; oldest inputs, then detections, training, alerts go first.",
    )
    retention_days: float = Field(
        90.0, gt=0, le=36500, description="Saved images and alert records older than this are deleted."
    )


class OutboxOptions(_Options):
    """Durable SQLite outbox for everything sent to the cloud (owned by trakr.outbox)."""

    max_disk_mb: float = Field(2048.0, gt=0, le=1e9, description="Disk the outbox (rows + images) may use.")
    path: str | None = Field(None, description="Outbox directory; default '<output>/outbox'.")
    retry_min_s: float = Field(1.0, gt=0, le=86400, description="First retry delay after a failed send.")
    retry_max_s: float = Field(
        120.0, gt=0, le=86400, description="Largest retry delay (exponential backoff, with jitter)."
    )
    workers: int = Field(2, ge=1, le=16, description="Sender threads (each serves one channel at a time).")
    speaker_max_age_s: float = Field(
        30.0, gt=0, le=MAX_PERIOD_S, description="Speaker calls older than this are dropped, not sent late."
    )
    reconcile_days: int = Field(
        2, ge=0, le=3650, description="On start, re-enqueue stored alerts of the last N days never sent."
    )


class CloudOptions(_Options):
    """ThingsBoard and image stores (owned by trakr.cloud)."""

    enabled: bool = Field(True, description="Send to the URLs in 'common' when they are set.")
    http_timeout_s: float = Field(10.0, gt=0, le=MAX_TIMEOUT_S, description="Hard timeout of every HTTP call.")
    mqtt_url: str | None = Field(None, description="mqtt://host:port of a ThingsBoard MQTT API (optional).")
    config_key: str = Field("sysconfig", description="Shared attribute that holds the pushed config.")
    long_poll_s: float = Field(
        60.0, gt=0, le=MAX_TIMEOUT_S, description="Timeout of one shared-attribute long-poll request."
    )
    config_refresh_s: float = Field(
        600.0, gt=0, le=MAX_PERIOD_S, description="Also re-read the shared config this often (missed pushes)."
    )
    upload_file_field: str = Field("image", description="Multipart field name of uploaded images.")
    health_interval_s: float | None = Field(
        None, gt=0, le=86400, description="Health telemetry period; default CamAliveLimit."
    )
    frame_interval_s: float = Field(
        1.0, ge=0, le=MAX_PERIOD_S, description="Min seconds between writes of frameFile (enableFrame)."
    )
    training_upload: bool = Field(True, description="Upload training images to train_storage_ip (else keep local).")


class SpeakerOptions(_Options):
    """Speaker announcements (owned by trakr.speaker)."""

    driver: Literal["http", "tts", "none"] = Field("http", description="How announcements are made.")
    url_template: str = Field(
        "http://{ip}/play?code={code}",
        description="HTTP driver URL; fields {ip} {code} {violation} {camera_id} {text}.",
    )
    method: Literal["GET", "POST"] = Field("GET", description="HTTP driver method.")
    min_interval_s: float = Field(
        10.0, ge=0, le=MAX_PERIOD_S, description="Min seconds between announcements on one speaker."
    )
    tts_command: list[str] = Field(
        default_factory=lambda: ["espeak-ng", "-w", "{wav}", "--stdin"],
        description="Local-only. TTS command writing a WAV to {wav}; the text comes on stdin.",
    )
    player_command: list[str] | None = Field(
        None, description="Local-only. Plays the WAV, e.g. ['aplay', '-q', '{wav}']; None = file only."
    )

    _commands = field_validator("tts_command", "player_command")(_no_text_placeholder)


class RedisOptions(_Options):
    """Redis Streams inference backend (owned by trakr.redis_detector; see docs/redis-protocol.md)."""

    url: str | None = Field(None, description="redis://host:port/db; set to use remote workers.")
    frames_stream: str = Field("trakr:frames", description="Stream the client writes batches to (workers read it).")
    group: str = Field("trakr-workers", description="Consumer group of the workers on the frames stream.")
    results_prefix: str = Field("trakr:results:", description="Prefix of the per-client result stream (+ client_id).")
    client_id: str | None = Field(None, description="Name of this client's result stream; default host-pid-random.")
    max_inflight: int = Field(2, ge=1, le=64, description="Most batches this client has sent and not yet got back.")
    result_timeout_s: float = Field(
        5.0, gt=0, le=MAX_TIMEOUT_S, description="Wait this long for a batch's result before giving it up."
    )
    visibility_timeout_s: float = Field(
        2.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Workers reclaim a batch left unacked this long (XAUTOCLAIM); < result_timeout_s.",
    )
    frames_maxlen: int = Field(
        256, ge=8, le=10_000_000, description="Approximate cap of the frames stream (XADD MAXLEN ~)."
    )
    results_maxlen: int = Field(
        256, ge=8, le=10_000_000, description="Approximate cap of each result stream (XADD MAXLEN ~)."
    )
    results_ttl_s: float = Field(
        3600.0, gt=0, le=MAX_PERIOD_S, description="A result stream nobody writes to expires after this long."
    )
    encoding: Literal["jpeg", "raw"] = Field(
        "jpeg", description="Frame encoding on the wire: JPEG or raw letterboxed BGR."
    )
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality when encoding is 'jpeg'.")
    fallback_to_embedded: bool = Field(True, description="Run the embedded ONNX model while the server is down.")
    probe_interval_s: float = Field(5.0, gt=0, le=3600, description="While down, probe the workers this often.")
    socket_timeout_s: float = Field(
        5.0, gt=0, le=MAX_TIMEOUT_S, description="Connect and read timeout of every Redis call."
    )


class MetricsOptions(_Options):
    """Prometheus endpoint (owned by trakr.metrics)."""

    port: int | None = Field(None, ge=0, le=65535, description="Port of /metrics; None = off.")
    host: str = Field("127.0.0.1", description="Interface of /metrics.")


class UiOptions(_Options):
    """Web console (owned by trakr.ui; see docs/console.md)."""

    port: int = Field(8080, ge=0, le=65535, description="Console port; 0 = no console.")
    bind: str = Field("127.0.0.1", description="Console interface; any non-loopback bind needs a password.")
    password_hash: str | None = Field(
        None, description="Salted scrypt hash written by 'trakr ui set-password' (never the password)."
    )
    preview_fps: float = Field(5.0, gt=0, le=30, description="Most preview JPEGs encoded per second per camera.")


class TrakrOptions(_Options):
    """trakr's own settings (the optional ``trakr`` section); all have defaults."""

    detector: DetectorOptions = Field(default_factory=DetectorOptions, description="Detector.")
    gate: GateOptions = Field(default_factory=GateOptions, description="Change gate.")
    batch: BatchOptions = Field(default_factory=BatchOptions, description="Batcher.")
    capture: CaptureOptions = Field(default_factory=CaptureOptions, description="Camera readers.")
    output: OutputOptions = Field(default_factory=OutputOptions, description="Local outputs.")
    outbox: OutboxOptions = Field(default_factory=OutboxOptions, description="Durable outbox.")
    cloud: CloudOptions = Field(default_factory=CloudOptions, description="ThingsBoard and uploads.")
    speaker: SpeakerOptions = Field(default_factory=SpeakerOptions, description="Speakers.")
    redis: RedisOptions = Field(default_factory=RedisOptions, description="Redis inference backend.")
    metrics: MetricsOptions = Field(default_factory=MetricsOptions, description="Prometheus metrics.")
    ui: UiOptions = Field(default_factory=UiOptions, description="Web console.")
    events: EventOptions = Field(default_factory=EventOptions, description="Tracking and events.")
    faces: FaceOptions = Field(default_factory=FaceOptions, description="Face recognition (docs/faces.md).")
    ppe: PpeOptions = Field(default_factory=PpeOptions, description="PPE association and crop classifier.")


# --------------------------------------------------------------------------- whole file


RESOLVED_FROM_COMMON = ("cam_delay", "sav_vio_img", "save_all_detection", "save_all_inp_img", "roi_crop_en")
"""Per-camera settings that default to the ``common`` value; resolved once, when a config is built."""


def resolve_camera(cam: CameraConfig, common: CommonConfig) -> CameraConfig:
    """``cam`` with each setting of :data:`RESOLVED_FROM_COMMON` it leaves unset taken from ``common``.

    >>> common = CommonConfig(save_all_inp_img=True, CamDelay=2)
    >>> cam = resolve_camera(CameraConfig(CameraId=1, Address="0", sav_vio_img=0), common)
    >>> cam.save_all_inp_img, cam.sav_vio_img, cam.cam_delay
    (True, False, 2.0)
    """
    update = {name: getattr(common, name) for name in RESOLVED_FROM_COMMON if name not in cam.model_fields_set}
    return cam.model_copy(update=update) if update else cam


class SysConfig(BaseModel):
    """A validated configuration. Its cameras carry resolved values (:data:`RESOLVED_FROM_COMMON`)."""

    model_config = ConfigDict(frozen=True)

    common: CommonConfig
    cameras: list[CameraConfig]
    trakr: TrakrOptions = Field(default_factory=TrakrOptions)

    @field_validator("cameras")
    @classmethod
    def _resolve_cameras(cls, cameras: list[CameraConfig], info: ValidationInfo) -> list[CameraConfig]:
        common = info.data.get("common")
        if not isinstance(common, CommonConfig):  # common is invalid: the model fails anyway
            return cameras
        return [resolve_camera(cam, common) for cam in cameras]

    def cam_delay(self, cam: CameraConfig) -> float:
        """Sampling period of ``cam`` in seconds. Kept for callers: read ``cam.cam_delay`` instead."""
        return cam.cam_delay if "cam_delay" in cam.model_fields_set else self.common.cam_delay

    def cam_flag(self, cam: CameraConfig, name: str) -> bool:
        """A per-camera switch such as ``sav_vio_img``. Kept for callers: read the resolved field
        (``cam.sav_vio_img``) instead; this gives the same answer."""
        if name in cam.model_fields_set or not hasattr(self.common, name):
            return bool(getattr(cam, name))
        return bool(getattr(self.common, name))

    def recommendation(self, violation: str) -> str:
        return self.common.recommendations.get(violation, "")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, which field, which value, and why."""

    where: str
    field: str
    value: Any
    message: str
    severity: Literal["error", "warning"] = "error"
    camera: str | None = None
    """Key in :attr:`ConfigReport.invalid_cameras` when this error left a camera out."""

    def detail(self) -> str:
        """``field = value: message`` (the value shortened, never failing)."""
        return f"{self.field} = {_show(self.value)}: {self.message}"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{prefix}{self.where}: {self.detail()}"


@dataclass
class ConfigReport:
    """Result of loading a config: the usable config (if any) and every problem found.

    ``config`` holds the valid cameras only; each camera left out is in ``invalid_cameras``.
    """

    config: SysConfig | None
    problems: list[Problem]
    invalid_cameras: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Cameras left out because of errors: camera id (``#index`` when the id is missing, unusable
    or repeated) -> its problem lines, redacted. For the log, ``config check`` and health telemetry."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """A config without a single error (``trakr run --strict``, pushes from the cloud)."""
        return self.config is not None and not self.errors

    @property
    def fatal(self) -> list[Problem]:
        """Errors that no partial start can work around: the file, ``common`` or ``trakr``."""
        return [p for p in self.errors if p.camera is None]

    @property
    def runnable(self) -> bool:
        """The config can start: no fatal error, and a valid camera unless none was listed."""
        return self.config is not None and not self.fatal and (bool(self.config.cameras) or not self.invalid_cameras)


def _problems_from(error: ValidationError, where: str, prefix: str = "") -> list[Problem]:
    out = []
    for e in error.errors(include_url=False):
        loc = [str(x) for x in e["loc"]]
        name = prefix + ".".join(loc) if loc else prefix + "(all)"
        value = None if e["type"] == "missing" else e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        out.append(Problem(where, name, value, msg))
    return out


def _validate(model: type[BaseModel], value: Any, where: str, problems: list[Problem], prefix: str = "") -> Any:
    """``model.model_validate(value)``, or ``None`` with the problems appended. Never raises."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        problems += _problems_from(e, where, prefix)
    except Exception as e:  # a bug in a validator: report it, never stop the other sections
        problems.append(Problem(where, prefix + "(all)", None, f"cannot be validated ({type(e).__name__}: {e})"))
    return None


def _address_looks_usable(address: str) -> bool:
    a = address.strip()
    if a.isdigit() or "://" in a:
        return True
    try:
        return Path(a).exists()
    except (OSError, ValueError):  # too long for a file name, NUL...
        return False


def _camera_label(cam_raw: Any, index: int) -> str:
    """The camera id as written (``"7"``), or ``"#index"`` when it is missing or unusable."""
    cid = cam_raw.get("CameraId") if isinstance(cam_raw, dict) else None
    if isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid <= 2**31 - 1:
        return str(cid)
    if isinstance(cid, str) and cid.strip().isascii() and cid.strip().isdigit() and len(cid.strip()) <= 10:
        return cid.strip()
    return f"#{index}"


def parse_config(raw: Any, *, camera_list: str = "cameras") -> ConfigReport:
    """Validate a parsed JSON document; returns every problem instead of stopping at the first.

    Never raises. ``camera_list`` picks ``"cameras"`` (default) or ``"sample_cameras"``. A camera
    with errors is left out of ``config`` and listed in ``invalid_cameras``.
    """
    try:
        return _parse(raw, camera_list)
    except Exception as e:  # a bug here must not stop the box: it becomes a problem line
        return ConfigReport(None, [Problem("file", "(all)", None, f"cannot be validated ({type(e).__name__}: {e})")])


def _parse(raw: Any, camera_list: str) -> ConfigReport:
    if not isinstance(raw, dict):
        return ConfigReport(None, [Problem("file", "(root)", type(raw).__name__, "expected a JSON object")])
    problems: list[Problem] = []
    for section in ("common", "trakr"):
        value = raw.get(section)
        if value is not None and not isinstance(value, dict):
            problems.append(Problem("file", section, value, "expected a JSON object"))
        elif _depth_exceeds(value):
            problems.append(Problem("file", section, None, f"nested deeper than {MAX_DEPTH} levels"))
    common: CommonConfig | None = None
    options: TrakrOptions | None = None
    if not problems:
        common = _validate(CommonConfig, raw.get("common") or {}, "common", problems)
        options = _validate(TrakrOptions, raw.get("trakr") or {}, "trakr", problems, prefix="trakr.")
    cams_raw = raw.get(camera_list)
    if cams_raw is None:
        cams_raw = []
        problems.append(Problem("file", camera_list, None, "no camera list", "warning"))
    elif not isinstance(cams_raw, list):
        problems.append(Problem("file", camera_list, cams_raw, "expected a list of cameras"))
        cams_raw = []
    labels = [_camera_label(c, i) for i, c in enumerate(cams_raw)]
    cameras: list[CameraConfig] = []
    invalid: dict[str, list[str]] = {}
    seen: set[int] = set()
    for i, cam_raw in enumerate(cams_raw):
        where = f"camera {labels[i]}"
        found: list[Problem] = []
        cam: CameraConfig | None = None
        if _depth_exceeds(cam_raw):
            found.append(Problem(where, "(camera)", None, f"nested deeper than {MAX_DEPTH} levels"))
        else:
            cam = _validate(CameraConfig, cam_raw, where, found)
            if cam is not None and cam.camera_id in seen:
                found.append(Problem(where, "CameraId", cam.camera_id, "duplicate camera id"))
        if found or cam is None:
            key = labels[i] if labels.count(labels[i]) == 1 else f"#{i}"
            found = [dataclasses.replace(p, camera=key) for p in found]
            problems += found
            invalid[key] = [redact(str(p)) for p in found]
            continue
        seen.add(cam.camera_id)
        cameras.append(cam)
        if not _address_looks_usable(cam.address):
            problems.append(
                Problem(
                    where,
                    "Address",
                    cam.address,
                    "not a URL, an existing file or a USB index; the camera will stay down",
                    "warning",
                )
            )
    if common is None or options is None:
        return ConfigReport(None, problems, invalid)
    return ConfigReport(SysConfig(common=common, cameras=cameras, trakr=options), problems, invalid)


def load_config(path: str | Path, *, camera_list: str = "cameras") -> ConfigReport:
    """Read and validate a config file; never raises.

    Anything wrong with the file itself (missing, a directory, unreadable, larger than
    :data:`MAX_CONFIG_BYTES`, not UTF-8, invalid or too deeply nested JSON) is a single problem.
    """
    shown = str(path)

    def fail(value: Any, message: str) -> ConfigReport:
        return ConfigReport(None, [Problem("file", shown, value, message)])

    try:
        p = Path(path)
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            return fail(None, "is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            return fail(None, "not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            return fail(st.st_size, f"larger than {MAX_CONFIG_BYTES} bytes")
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return fail(None, "file not found")
    except OSError as e:
        return fail(None, f"cannot be read: {e.strerror or type(e).__name__}")
    except ValueError as e:  # a NUL in the path
        return fail(None, f"cannot be read: {e}")
    if len(data) > MAX_CONFIG_BYTES:
        return fail(len(data), f"larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return fail(f"line {line}", f"not UTF-8 text: byte {data[e.start : e.start + 1]!r} at offset {e.start}")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        return fail(f"line {e.lineno}", f"invalid JSON: {e.msg} (column {e.colno})")
    except RecursionError:
        return fail(None, "invalid JSON: nested too deeply")
    except ValueError as e:  # e.g. an integer with more than 4300 digits
        return fail(None, f"invalid JSON: {str(e).split(';')[0]}")
    return parse_config(raw, camera_list=camera_list)


def trigger_warnings(
    config: SysConfig, class_names: list[str], classifier_labels: list[str] | None = None
) -> list[Problem]:
    """Warn about triggers the model cannot produce (e.g. ``nohelmet`` on a COCO model) directly,
    through ``detector.class_aliases``, PPE association or a crop classifier (``classifier_labels``)."""
    from trakr.inference.classes import camera_trigger_sources

    out = []
    listed = ", ".join(class_names)
    for cam in config.cameras:
        sources = camera_trigger_sources(config, cam, class_names, classifier_labels or ())
        fields = [("Detection", cam.detection)] + [
            (f"roi_config.{name}.detections", roi.detections) for name, roi in cam.roi_config.items()
        ]
        for field, triggers in fields:
            for t in triggers:
                if not sources.get(t):
                    msg = f"the model cannot produce this class (model classes: {listed})"
                    if is_face_trigger(t) and not cam.faces:
                        msg = 'a face trigger needs the camera\'s face stage: set "faces": true on this camera'
                    out.append(Problem(f"camera {cam.camera_id}", field, t, msg, "warning"))
    return out
