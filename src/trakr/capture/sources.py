"""Video sources for the camera readers: PyAV for streams and files, OpenCV for USB cameras.

:func:`open_source` opens an ``Address`` and returns a :class:`Source` whose :meth:`~Source.frames`
yields, for every decoded frame, its luma plane (``HxW`` uint8, a view valid until the next frame),
its time on the stream's clock (seconds, or ``None``) and a handle that :meth:`~Source.bgr`
converts to a BGR image, so colour conversion is paid only for frames the gate passes.

- rtsp://, http(s):// (MJPEG) and files are opened with PyAV, which has no global open lock: a
  dead or hung camera never delays another camera's open. Open and read timeouts are PyAV's
  ``timeout=(open_s, read_s)``; RTSP runs over TCP with a short probe. Decoder threads: SLICE up
  to 576 lines, FRAME above (measured fastest, see ARCHITECTURE.md).
- USB indexes are opened with OpenCV (PyAV has no portable camera input), with OpenCV's own
  open/read timeouts.

Every failure is raised as a :class:`~trakr.capture.reasons.CaptureFailure` saying why.

Example:
    >>> from trakr.devtools.media import sample_clip_path
    >>> src = open_source(str(sample_clip_path()), open_timeout_s=5, read_timeout_s=5)
    >>> luma, t, handle = next(iter(src.frames()))
    >>> luma.shape, t, src.bgr(handle).shape, src.native_fps
    ((576, 768), 0.0, (576, 768, 3), 10.0)
    >>> src.close()
    >>> open_source("/nonexistent.mp4", open_timeout_s=1, read_timeout_s=1)
    Traceback (most recent call last):
    ...
    trakr.capture.reasons.CaptureFailure: not found: FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent.mp4'
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from trakr.capture.reasons import NO_FRAMES, NOT_FOUND, NOT_VIDEO, TIMEOUT, CaptureFailure, failure

# OpenCV is only used for USB cameras; keep its FFmpeg/V4L chatter off stderr (trakr logs once).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

SLICE_MAX_HEIGHT = 576
"""Decode with SLICE threads up to this many lines, FRAME threads above."""
MAX_USB_INDEX = 9999
STREAM_OPTIONS = {"analyzeduration": "100000"}  # a short probe: opens in ~0.2 s instead of ~1 s
RTSP_OPTIONS = {"rtsp_transport": "tcp", "rtsp_flags": "prefer_tcp"}
_Y_FIRST = frozenset(
    "yuv420p yuvj420p yuv422p yuvj422p yuv444p yuvj444p yuv440p yuvj440p yuv411p yuv410p nv12 nv21 nv16 gray".split()
)

Decoded = tuple[np.ndarray, float | None, Any]
"""``(luma, stream_time_s, handle)`` for one decoded frame."""


def source_kind(address: str) -> str:
    """``"usb"``, ``"file"`` or ``"stream"`` for an ``Address``.

    >>> source_kind("0"), source_kind("rtsp://cam/1"), source_kind("/videos/a.mp4"), source_kind("file:///a.mp4")
    ('usb', 'stream', 'file', 'file')
    """
    a = address.strip()
    if a.isdigit():
        return "usb"
    if "://" in a and not a.startswith("file://"):
        return "stream"
    return "file"


def thread_type_for(height: int) -> str:
    """The decoder thread type for a frame height.

    >>> thread_type_for(576), thread_type_for(720)
    ('SLICE', 'FRAME')
    """
    return "SLICE" if height <= SLICE_MAX_HEIGHT else "FRAME"


class Source:
    """An open camera: iterate :meth:`frames`, convert passed frames with :meth:`bgr`, then :meth:`close`."""

    native_fps: float = 0.0
    """The source's own frame rate when it declares one (files), else 0."""
    limited_range: bool = False
    """The luma is video range (16..235), not full range."""

    def frames(self) -> Generator[Decoded, None, None]:
        raise NotImplementedError

    def bgr(self, handle: Any) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PyAVSource(Source):
    """rtsp://, http(s):// or a file, decoded by PyAV (FFmpeg)."""

    def __init__(self, address: str, kind: str, open_timeout_s: float, read_timeout_s: float, alive_limit_s: float):
        self.address = address
        self._reformatter = VideoReformatter()
        self.read_timeout_s = read_timeout_s
        self.alive_limit_s = alive_limit_s
        options = {}
        if kind == "stream":
            options.update(STREAM_OPTIONS)
            if address.lower().startswith("rtsp"):
                options.update(RTSP_OPTIONS)
        t0 = time.monotonic()
        try:
            self.container: Any = av.open(address, options=options, timeout=(open_timeout_s, read_timeout_s))
        except (av.error.FFmpegError, OSError, ValueError) as e:  # ValueError: e.g. a NUL in the address
            timed_out = time.monotonic() - t0 >= 0.95 * open_timeout_s
            raise failure(e, timed_out=timed_out, address=address) from None
        try:
            if not self.container.streams.video:
                raise CaptureFailure(NOT_VIDEO, "no video stream")
            self.stream = self.container.streams.video[0]
            height = self.stream.codec_context.height or 0
            self.stream.thread_type = thread_type_for(height)
            rate = self.stream.average_rate if kind == "file" else None
            self.native_fps = float(rate) if rate else 0.0
        except BaseException:
            self.container.close()
            raise

    def frames(self) -> Generator[Decoded, None, None]:
        last_frame = last_packet = time.monotonic()
        first = True
        try:
            for packet in self.container.demux(self.stream):
                last_packet = time.monotonic()
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    decoded = []  # one corrupt packet on a live stream is not a failure
                for frame in decoded:
                    last_frame = time.monotonic()
                    if first:
                        self.limited_range, first = _limited_range(frame), False
                    yield _luma(frame), frame.time, frame
                if not decoded and last_packet - last_frame > self.alive_limit_s:
                    raise CaptureFailure(NO_FRAMES, f"no frame decoded for {self.alive_limit_s:g}s")
        except (av.error.FFmpegError, OSError) as e:
            stalled = time.monotonic() - last_packet >= 0.95 * self.read_timeout_s
            raise failure(e, timed_out=stalled, address=self.address) from None
        if time.monotonic() - last_packet >= 0.95 * self.read_timeout_s:
            raise CaptureFailure(TIMEOUT, f"no data for {self.read_timeout_s:g}s")

    def bgr(self, handle: Any) -> np.ndarray:
        # one reformatter per source keeps FFmpeg's scaler context across frames
        return self._reformatter.reformat(handle, format="bgr24").to_ndarray()

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken stream must never raise out of a reader
            pass


def _limited_range(frame: Any) -> bool:
    """Video-range luma (16..235): not a full-range ``yuvj``/grey format, not tagged JPEG range."""
    name = frame.format.name
    return not (name.startswith("yuvj") or name == "gray" or int(frame.color_range) == 2)


def _luma(frame: Any) -> np.ndarray:
    """The Y plane of a decoded frame as a zero-copy ``HxW`` view (grey conversion for RGB formats)."""
    if frame.format.name in _Y_FIRST:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        return rows[: plane.height, : plane.width]
    return frame.to_ndarray(format="gray")


class OpenCVUSBSource(Source):
    """A USB camera by index, read with OpenCV (grab + retrieve every frame)."""

    def __init__(self, address: str, open_timeout_s: float, read_timeout_s: float):
        text = address.strip()
        index = int(text) if len(text) <= 6 else MAX_USB_INDEX + 1
        if index > MAX_USB_INDEX:
            raise CaptureFailure(
                NOT_FOUND, f"USB camera index {text[:12]}{'...' if len(text) > 12 else ''} is out of range"
            )
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            _msec(open_timeout_s),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            _msec(read_timeout_s),
        ]
        self.cap = cv2.VideoCapture(index, cv2.CAP_ANY, params)
        if not self.cap.isOpened():
            self.cap.release()
            raise CaptureFailure(NOT_FOUND, f"no USB camera {index}")

    def frames(self) -> Generator[Decoded, None, None]:
        while self.cap.grab():
            ok, image = self.cap.retrieve()
            if ok and image is not None:
                yield cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None, image

    def bgr(self, handle: Any) -> np.ndarray:
        return handle

    def close(self) -> None:
        self.cap.release()


def _msec(seconds: float) -> int:
    """Seconds as OpenCV's int32 milliseconds, clamped."""
    return int(min(max(seconds, 0.001), 2_000_000.0) * 1000)


def open_source(address: str, open_timeout_s: float, read_timeout_s: float, alive_limit_s: float = 30.0) -> Source:
    """Open ``address`` (stream, file or USB index); raises :class:`CaptureFailure` with the reason."""
    kind = source_kind(address)
    if kind == "usb":
        return OpenCVUSBSource(address, open_timeout_s, read_timeout_s)
    path = address.strip()
    if kind == "file":
        path = path.removeprefix("file://")
    return PyAVSource(path, kind, open_timeout_s, read_timeout_s, alive_limit_s)
