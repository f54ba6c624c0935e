"""A local RTSP server for trakr's tests, demo and benchmarks.

:class:`RtspServer` serves one Annex-B H.264 file (see :func:`trakr.devtools.media.h264_annexb_path`) on
``N`` mounts, ``rtsp://127.0.0.1:PORT/cam0`` .. ``/cam{N-1}``, looped forever at the clip's
real-time rate (10 fps for vtest.avi), like a set of live IP cameras.

The server itself is GStreamer's ``gst-rtsp-server`` driven by ``_gst_rtsp_server.py`` in this
package. Debian's ``python3-gi`` imports only under Debian's ``/usr/bin/python3``, not in the
project's virtual environment, so the script runs as a subprocess of that interpreter (Debian
packages ``gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,bad,ugly}``,
installed by ``scripts/setup``). It binds 127.0.0.1 only, carries RTP over the RTSP TCP
connection only (no UDP), shares one pipeline per mount among that mount's clients, and copies
DTS into PTS so clients see real timestamps.

Clients: OpenCV's FFMPEG backend needs TCP transport, and a short probe makes opening ~6x faster
(0.17 s instead of 1.1 s). Set, before the first ``cv2.VideoCapture`` is created::

    OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp|analyzeduration;100000"

(:data:`OPENCV_CAPTURE_OPTIONS`), then ``cv2.VideoCapture(server.url(0), cv2.CAP_FFMPEG)``.

Example::

    from trakr.devtools.media import h264_annexb_path
    from trakr.devtools.rtsp_server import RtspServer

    with RtspServer(h264_annexb_path(), mounts=2) as srv:
        print(srv.url(0), srv.url(1))
        srv.restart()          # camera outage; comes back on the same port
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["OPENCV_CAPTURE_OPTIONS", "SYSTEM_PYTHON", "RtspServer"]

#: Value for the ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` environment variable when reading this server.
OPENCV_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;100000"

#: Debian's interpreter, the only one where ``python3-gi`` imports.
SYSTEM_PYTHON = "/usr/bin/python3"

_SCRIPT = Path(__file__).with_name("_gst_rtsp_server.py")
_EXIT_BIND = 3  # must match EXIT_BIND in _gst_rtsp_server.py


class _BindError(RuntimeError):
    """The server could not listen on the requested port (script exit code 3)."""


class RtspServer:
    """Serve an Annex-B H.264 file on ``mounts`` RTSP mounts from a ``/usr/bin/python3`` subprocess.

    Args:
        h264_path: Annex-B H.264 elementary stream to loop (no B-frames; e.g.
            :func:`trakr.devtools.media.h264_annexb_path`).
        mounts: number of mounts, served as ``/cam0`` .. ``/cam{mounts-1}``.
        port: TCP port on 127.0.0.1; 0 picks a free one. After :meth:`start`, :attr:`port` holds
            the bound port, and :meth:`restart` comes back on that same port.
        fps: frame rate of the file, used to timestamp and pace the stream (vtest.avi: 10).
        start_timeout: seconds :meth:`start` waits for the server to report its port.
        python: interpreter that runs the GStreamer script.

    Usable as a context manager (starts on enter, stops on exit). The subprocess also exits by
    itself when this process dies (it watches its stdin pipe), so no server outlives its owner.
    """

    def __init__(
        self,
        h264_path: str | os.PathLike[str],
        mounts: int = 4,
        port: int = 0,
        *,
        fps: int = 10,
        start_timeout: float = 15.0,
        python: str = SYSTEM_PYTHON,
    ) -> None:
        if mounts < 1:
            raise ValueError(f"mounts must be >= 1, got {mounts}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.h264_path = Path(h264_path)
        self.mounts = int(mounts)
        #: Bound TCP port once started (the requested port, possibly 0, before that).
        self.port = int(port)
        self.fps = int(fps)
        self.start_timeout = float(start_timeout)
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True while the server subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server subprocess, or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> RtspServer:
        """Start the server and wait until it listens; sets :attr:`port`. Returns ``self``.

        Raises:
            RuntimeError: if the interpreter, script or file is missing, or the server exits or
                does not report its port within ``start_timeout`` s (its stderr is included).
        """
        if self.running:
            raise RuntimeError(f"RTSP server already running on port {self.port}")
        if not Path(self.python).is_file():
            raise RuntimeError(
                f"cannot start the RTSP server: {self.python} not found (it needs Debian's python3 "
                "with python3-gi and gir1.2-gst-rtsp-server-1.0; run scripts/setup)"
            )
        if not self.h264_path.is_file():
            raise RuntimeError(f"cannot start the RTSP server: no such file {self.h264_path}")
        # When restarting on a fixed port, the old socket may linger for a moment: retry briefly.
        deadline = time.monotonic() + (3.0 if self.port else 0.0)
        while True:
            try:
                self._start_once()
                return self
            except _BindError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _start_once(self) -> None:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        }
        cmd = [
            self.python, "-I", str(_SCRIPT),
            "--file", str(self.h264_path.resolve()),
            "--mounts", str(self.mounts),
            "--port", str(self.port),
            "--fps", str(self.fps),
            "--watch-stdin",
        ]  # fmt: skip
        stderr = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            close_fds=True,
        )
        try:
            port = self._wait_for_port(proc)
        except BaseException as exc:
            _terminate(proc)
            msg = _read_all(stderr)
            stderr.close()
            if isinstance(exc, RuntimeError):
                raise type(exc)(f"{exc}; server stderr:\n{msg or '(empty)'}") from None
            raise
        self._proc, self._stderr, self.port = proc, stderr, port

    def _wait_for_port(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"RTSP server did not report its port within {self.start_timeout:.0f} s")
                if sel.select(left):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        proc.wait(timeout=5)
                        if proc.returncode == _EXIT_BIND:
                            raise _BindError(f"RTSP server cannot listen on 127.0.0.1:{self.port}")
                        raise RuntimeError(f"RTSP server exited with code {proc.returncode} before listening")
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode("ascii", "replace").strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"unexpected first line from the RTSP server: {line!r}")
        return int(line.split()[1])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` s; waits for it to exit.

        :attr:`port` is kept so that :meth:`start` / :meth:`restart` reuse it. Idempotent.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def restart(self) -> RtspServer:
        """Stop and start again on the same port (simulates a camera or NVR outage)."""
        self.stop()
        return self.start()

    def stderr_text(self) -> str:
        """What the running server has written to stderr so far (GStreamer warnings)."""
        return _read_all(self._stderr) if self._stderr is not None else ""

    # ------------------------------------------------------------------ addresses

    def url(self, i: int = 0) -> str:
        """RTSP URL of mount ``i``: ``rtsp://127.0.0.1:PORT/cam{i}``."""
        if not 0 <= i < self.mounts:
            raise IndexError(f"mount {i} out of range 0..{self.mounts - 1}")
        if not self.port:
            raise RuntimeError("RTSP server not started: port unknown")
        return f"rtsp://127.0.0.1:{self.port}/cam{i}"

    def urls(self) -> list[str]:
        """URLs of all mounts."""
        return [self.url(i) for i in range(self.mounts)]

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> RtspServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RtspServer({str(self.h264_path)!r}, mounts={self.mounts}, port={self.port}, {state})"


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate *proc* (SIGTERM, then SIGKILL), reap it and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def _read_all(fh: IO[bytes] | None) -> str:
    if fh is None:
        return ""
    try:
        fh.flush()
        fh.seek(0)
        return fh.read().decode("utf-8", "replace").strip()[-4000:]
    except (OSError, ValueError):
        return ""
