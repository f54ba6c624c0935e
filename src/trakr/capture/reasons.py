"""Why a camera failed, in words a site operator understands.

Every failed open or read becomes a :class:`CaptureFailure` with a short ``reason`` (one of
:data:`REASONS`, or ``"error"`` for anything else) and a ``detail`` (the library's message,
credentials redacted). :func:`classify` maps PyAV/FFmpeg and OS errors onto the reasons; an
attempt that ran into its own timeout is a ``timeout`` whatever FFmpeg called it (an RTSP open cut
short by the timeout surfaces as "invalid data").

Example:
    >>> import av
    >>> classify(ConnectionRefusedError(111, "Connection refused"))
    'refused'
    >>> classify(av.error.HTTPUnauthorizedError(-825242872, "401"))
    'unauthorised'
    >>> classify(av.error.InvalidDataError(-1094995529, "Invalid data")), classify(
    ...     av.error.InvalidDataError(-1094995529, "Invalid data"), timed_out=True)
    ('not a video', 'timeout')
    >>> f = failure(FileNotFoundError(2, "No such file", "rtsp://u:pw@cam/x"))
    >>> f.reason, "pw" in f.detail
    ('not found', False)
"""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import av

from trakr.logs import redact

REFUSED = "refused"
TIMEOUT = "timeout"
UNAUTHORISED = "unauthorised"
NOT_FOUND = "not found"
NOT_VIDEO = "not a video"
UNREACHABLE = "unreachable"
DISCONNECTED = "disconnected"
ENDED = "stream ended"
NO_FRAMES = "no frames"
END_OF_FILE = "end of file"
ERROR = "error"
REASONS = (REFUSED, TIMEOUT, UNAUTHORISED, NOT_FOUND, NOT_VIDEO, UNREACHABLE, DISCONNECTED, ENDED, NO_FRAMES)
"""The reasons a camera can be down for (plus ``end of file`` for a finished file and ``error``)."""


class CaptureFailure(Exception):
    """An open or read of a camera failed for ``reason`` (see :data:`REASONS`)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def classify(exc: BaseException, *, timed_out: bool = False, address: str = "") -> str:
    """The :data:`REASONS` entry for ``exc``; ``timed_out`` when the attempt hit its own timeout."""
    if isinstance(exc, CaptureFailure):
        return exc.reason
    if isinstance(exc, TimeoutError | av.error.ExitError) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError | PermissionError):
        return UNAUTHORISED
    if isinstance(exc, av.error.HTTPNotFoundError | FileNotFoundError | socket.gaierror | IsADirectoryError):
        return NOT_FOUND
    if timed_out:
        return TIMEOUT
    if isinstance(
        exc,
        av.error.InvalidDataError
        | av.error.DemuxerNotFoundError
        | av.error.DecoderNotFoundError
        | av.error.PatchWelcomeError,
    ):
        return NOT_VIDEO
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError | EOFError):
        return DISCONNECTED
    if getattr(exc, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return UNREACHABLE
    if address and getattr(exc, "errno", None) == errno.EIO and not host_resolves(address):
        return NOT_FOUND  # FFmpeg reports an unknown host name as a plain I/O error
    return ERROR


def failure(exc: BaseException, *, timed_out: bool = False, address: str = "") -> CaptureFailure:
    """``exc`` as a :class:`CaptureFailure` with its reason and a redacted one-line detail."""
    if isinstance(exc, CaptureFailure):
        return exc
    detail = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]
    return CaptureFailure(classify(exc, timed_out=timed_out, address=address), detail)


def host_resolves(address: str) -> bool:
    """Whether the host of a URL resolves (``True`` when there is no host to check)."""
    try:
        host = urlsplit(address).hostname
    except ValueError:
        return False
    if not host:
        return True
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True
