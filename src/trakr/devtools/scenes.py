"""Labelled test scenes made from the sample clip.

:func:`quiet_scene` writes (once, into the cache) a quiet clip: the sample clip's empty background
(the per-pixel median of every 10th frame: the walkers vanish, the parked van and car stay), still
but for a little sensor noise, and one far-away person walking along the upper path across a
small zone, six times. The walker is real: the person of frames 100-160 of the sample clip, cut
from each frame at their (interpolated) box and pasted onto the background at the same place, so
the motion, size and look are those of the recording. Each crossing of the zone takes 1.6 s;
between walks the scene stays still for 6 s. The clip is 768x576 at 10 fps, 786 frames (78.6 s), MPEG-4.

The labels come from the geometry, not from a detector: :attr:`QuietScene.crossings` are the
times at which the walker's foot point is inside :data:`QUIET_ZONE`.

Example:
    >>> scene = quiet_scene()
    >>> scene.path.name, len(scene.crossings), [round(b - a, 1) for a, b in scene.crossings]
    ('quiet_scene_v1.avi', 6, [1.6, 1.6, 1.6, 1.6, 1.6, 1.6])
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from trakr.devtools.media import CLIP_FPS, _locked, cache_dir, sample_clip_path

QUIET_ZONE = ["130,96", "182,86", "188,118", "136,130"]
"""A small zone on the far path (pixels of the 768x576 clip)."""
WALK_FRAMES = (100, 160)
"""Frames of the sample clip the walker is taken from (inclusive)."""
# The walker's box (x1, y1, x2, y2) in the sample clip at a few frames, from YOLO11n and checked by
# eye; frames in between are interpolated. The person walks left along the path at about 3 px/frame.
_WALKER_KEYS = {
    100: (223.0, 60.0, 237.0, 95.0),
    107: (198.0, 64.0, 216.0, 100.0),
    112: (190.0, 66.0, 208.0, 102.0),
    116: (179.0, 68.0, 194.0, 104.0),
    123: (157.0, 73.0, 171.0, 108.0),
    130: (134.0, 76.0, 149.0, 114.0),
    136: (119.0, 81.0, 135.0, 118.0),
    142: (100.0, 84.0, 116.0, 123.0),
    148: (79.0, 88.0, 94.0, 126.0),
    154: (59.0, 90.0, 74.0, 131.0),
    160: (31.0, 94.0, 55.0, 138.0),
}
STILL_S = 6.0
CROSSINGS = 6
NAME = "quiet_scene_v1.avi"


@dataclass(frozen=True)
class QuietScene:
    path: Path
    zone: list[str]
    """:data:`QUIET_ZONE`, as ``"x,y"`` pixel strings for a config."""
    crossings: list[tuple[float, float]]
    """Clip times (s) of the first and last frame with the walker's foot inside the zone."""


def walker_box(frame: int) -> np.ndarray:
    """The walker's box at a frame of :data:`WALK_FRAMES` (linear between the key boxes)."""
    keys = sorted(_WALKER_KEYS)
    boxes = np.array([_WALKER_KEYS[k] for k in keys])
    return np.array([np.interp(frame, keys, boxes[:, i]) for i in range(4)])


def _timeline() -> list[int | None]:
    """Per output frame: the sample-clip frame whose walker is pasted, or ``None`` (still)."""
    walk = list(range(WALK_FRAMES[0], WALK_FRAMES[1] + 1))
    still: list[int | None] = [None] * round(STILL_S * CLIP_FPS)
    out: list[int | None] = []
    for _ in range(CROSSINGS):
        out += [*still, *walk]
    return [*out, *still]


def _crossings(timeline: list[int | None]) -> list[tuple[float, float]]:
    zone = np.array([[float(v) for v in p.split(",")] for p in QUIET_ZONE], dtype=np.float32)
    spans: list[tuple[float, float]] = []
    start = None
    for i, src in enumerate([*timeline, None]):
        inside = False
        if src is not None:
            x1, _, x2, y2 = walker_box(src)
            inside = cv2.pointPolygonTest(zone.reshape(-1, 1, 2), ((x1 + x2) / 2, y2), False) >= 0
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((round(start / CLIP_FPS, 1), round((i - 1) / CLIP_FPS, 1)))
            start = None
    return spans


def _write(path: Path, timeline: list[int | None]) -> None:
    src = av.open(str(sample_clip_path()))
    frames: dict[int, np.ndarray] = {}
    sample: list[np.ndarray] = []
    for f in src.decode(src.streams.video[0]):
        k = int(f.pts or 0)
        if k % 10 == 0:
            sample.append(f.to_ndarray(format="bgr24"))
        if WALK_FRAMES[0] <= k <= WALK_FRAMES[1]:
            frames[k] = f.to_ndarray(format="bgr24")
    src.close()
    background = np.median(np.stack(sample).astype(np.float32), axis=0).astype(np.uint8)
    rng = np.random.default_rng(0)
    out = av.open(str(path), "w", format="avi")
    stream = out.add_stream("mpeg4", rate=CLIP_FPS)
    stream.width, stream.height, stream.pix_fmt = background.shape[1], background.shape[0], "yuv420p"
    stream.bit_rate = 4_000_000
    try:
        for i, walker in enumerate(timeline):
            img = background.copy()
            if walker is not None:
                x1, y1, x2, y2 = np.round(walker_box(walker)).astype(int) + np.array([-2, -2, 2, 2])
                img[y1:y2, x1:x2] = frames[walker][y1:y2, x1:x2]
            noise = rng.normal(0.0, 1.5, img.shape)
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    finally:
        out.close()


def quiet_scene() -> QuietScene:
    """The quiet scene, written into :func:`~trakr.devtools.media.cache_dir` on first use."""
    cache = cache_dir()
    path = cache / NAME
    timeline = _timeline()
    if not (path.is_file() and path.stat().st_size > 0):
        with _locked(cache, NAME):
            if not (path.is_file() and path.stat().st_size > 0):
                fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", suffix=".avi", dir=cache)
                os.close(fd)
                try:
                    _write(Path(tmp), timeline)
                    Path(tmp).chmod(0o644)  # mkstemp creates 0600; the cache is meant to be readable
                    os.replace(tmp, path)
                finally:
                    Path(tmp).unlink(missing_ok=True)
    return QuietScene(path, list(QUIET_ZONE), _crossings(timeline))
