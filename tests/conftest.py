"""Shared pytest fixtures: the sample clip, its H.264 stream and a local RTSP server.

Missing dependencies (apt-get, ffmpeg, Debian's python3-gi and GStreamer RTSP server) make these
fixtures *fail* with the error that names what is missing; they never skip. Run
``scripts/setup`` to install everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Must be set before OpenCV opens its first FFMPEG capture: RTSP over TCP (the test server offers
# TCP only) and a short probe (open in ~0.17 s instead of ~1.1 s).
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;100000")

_ROOT = Path(__file__).resolve().parent.parent
# Test the working tree even when trakr is not (or not editably) installed in the venv.
sys.path.insert(0, str(_ROOT / "src"))
# Make tests/helpers.py importable as ``helpers`` whatever pytest's rootdir/import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trakr.devtools.media import h264_annexb_path, sample_clip_path  # noqa: E402
from trakr.devtools.rtsp_server import RtspServer  # noqa: E402

RTSP_MOUNTS = 4


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """Path of vtest.avi (768x576, 10 fps), fetched into the cache on first use."""
    return sample_clip_path()


@pytest.fixture(scope="session")
def h264_clip(sample_clip: Path) -> Path:
    """Annex-B H.264 elementary stream of the sample clip (768x576, 10 fps, no B-frames)."""
    return h264_annexb_path()


@pytest.fixture(scope="session")
def rtsp_server(h264_clip: Path) -> Iterator[RtspServer]:
    """A running RTSP server with 4 mounts (``server.url(0)`` .. ``url(3)``), shared by the session.

    Do not stop or restart it in a test; use ``rtsp_server_fn`` for that.
    """
    with RtspServer(h264_clip, mounts=RTSP_MOUNTS) as server:
        yield server


@pytest.fixture
def rtsp_server_fn(h264_clip: Path) -> Iterator[RtspServer]:
    """A private RTSP server with 4 mounts for one test, which may stop/restart/kill it."""
    server = RtspServer(h264_clip, mounts=RTSP_MOUNTS)
    server.start()
    try:
        yield server
    finally:
        server.stop()
