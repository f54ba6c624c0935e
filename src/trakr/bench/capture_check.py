"""``trakr bench --capture-check``: CPU per frame of one 720p/25 fps camera in a trakr reader, against
FFmpeg's and OpenCV's own decode of the same file.

Every measurement runs in a process of its own on the same file: ``ffmpeg -benchmark ... -f null -``
as fast as it can go and with ``-re`` (at the clip's 25 fps, like a live camera; decoding one frame
every 40 ms costs more CPU per frame than a tight loop: caches, thread wake-ups), in its native
pixel format and in bgr24; a bare OpenCV read loop (fast and paced); and a trakr
:class:`~trakr.capture.reader.CameraReader` paced like a camera, every frame decoded, with a consumer
taking from its slot like the batcher. The reader's figure is held against ``ffmpeg -re``. The
720p/25 fps clip is made from the sample clip with the ffmpeg CLI (cached).

Example:
    >>> from trakr.devtools.media import sample_clip_path
    >>> r = ffmpeg_decode(sample_clip_path())
    >>> r.frames, r.ms_per_frame > 0, "-benchmark" in (r.command or "")
    (795, True, True)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trakr.bench.figures import json_without_none

READER_TARGET = 1.2
"""The reader may spend this many times ``ffmpeg -re``'s CPU per frame."""


@dataclass
class CpuPerFrame:
    """CPU of one decoder (a process of its own) over a clip."""

    frames: int
    cpu_s: float
    ms_per_frame: float
    command: str | None = None
    wall_s: float | None = None
    published: int | None = None
    taken: int | None = None
    cpu_percent_per_camera: float | None = None

    def to_json(self) -> dict[str, Any]:
        return json_without_none(self, ("command", "wall_s", "published", "taken", "cpu_percent_per_camera"))


@dataclass
class CaptureCheck:
    """A trakr camera reader's CPU per frame against FFmpeg's and OpenCV's own decode."""

    clip: str
    resolution: str
    fps: int
    frames: int
    ffmpeg_decode: CpuPerFrame
    ffmpeg_decode_realtime: CpuPerFrame
    ffmpeg_decode_realtime_bgr24: CpuPerFrame
    opencv_read_loop: CpuPerFrame
    opencv_read_loop_paced: CpuPerFrame
    trakr_reader: CpuPerFrame
    pyav_decode_paced: CpuPerFrame
    """A bare PyAV decode loop at 25 fps, the reader's thread type, no conversion (issue 11's reference)."""
    trakr_reader_gated: CpuPerFrame
    """The reader with the default change gate (BGR only for the frames it passes)."""
    ratio_vs_pyav_paced: float
    ratio_gated_vs_pyav_paced: float
    ratio_vs_ffmpeg_realtime: float
    ratio_vs_ffmpeg_realtime_bgr24: float
    ratio_vs_ffmpeg_unpaced: float
    ratio_vs_opencv_paced: float
    target: str
    target_met: bool

    def to_json(self) -> dict[str, Any]:
        return {
            k: (v.to_json() if isinstance(v, CpuPerFrame) else v)
            for k, v in ((n, getattr(self, n)) for n in self.__dataclass_fields__)
        }


_READER_CHILD = r"""
import json, resource, sys, threading, time
from trakr.capture.reader import CameraReader
from trakr.config import CameraConfig, CaptureOptions
from trakr.capture.slot import LatestFrameSlot
from trakr.capture.gate import ChangeGate
path, seconds = sys.argv[1], float(sys.argv[2])
gated = len(sys.argv) > 3 and sys.argv[3] == "gated"  # the default change gate, as `trakr run` has it
slot = LatestFrameSlot(0)
taken = [0]
stop = threading.Event()
def consume():  # a consumer like the batcher: takes whatever is there every 40 ms
    while not stop.wait(0.04):
        if slot.take() is not None:
            taken[0] += 1
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic()
reader = CameraReader(CameraConfig(CameraId=0, Address=path), slot,
                      CaptureOptions(loop_files=False, realtime_files=True), sample_period_s=0.0,
                      gate=ChangeGate() if gated else None)
c = threading.Thread(target=consume, daemon=True); c.start()
reader.start()
while time.monotonic() - w0 < seconds:
    time.sleep(0.05)
reader.stop(); stop.set(); c.join()
r1 = resource.getrusage(resource.RUSAGE_SELF); wall = time.monotonic() - w0
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
st = reader.snapshot_fields()
print(json.dumps({"frames": st["frames_read"], "published": st["frames_published"],
                  "cpu_s": cpu, "wall_s": wall, "taken": taken[0]}))
"""

_CV2_CHILD = r"""
import json, resource, sys, time
import cv2
path, period = sys.argv[1], float(sys.argv[2])
cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic(); n = 0
while True:
    if period:  # paced like a live camera: frame n is there at w0 + n * period
        wait = w0 + n * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    ok, img = cap.read()
    if not ok:
        break
    n += 1
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"frames": n, "cpu_s": cpu, "wall_s": time.monotonic() - w0}))
"""


_PYAV_CHILD = r"""
import json, resource, sys, time
import av
from trakr.capture.sources import thread_type_for
path, period = sys.argv[1], float(sys.argv[2])
container = av.open(path, timeout=10)
stream = container.streams.video[0]
stream.thread_type = thread_type_for(stream.codec_context.height)  # as the reader picks it
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic(); n = 0
for frame in container.decode(stream):  # decode only: no colour conversion, no copy
    n += 1
    if period:  # paced like a live camera: frame n is due at w0 + n * period
        wait = w0 + n * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
r1 = resource.getrusage(resource.RUSAGE_SELF)
container.close()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"frames": n, "cpu_s": cpu, "wall_s": time.monotonic() - w0}))
"""


def make_720p25_clip(seconds: float = 10.0) -> Path:
    """A 1280x720 25 fps H.264 MP4 made from the sample clip with the ffmpeg CLI (cached)."""
    from trakr.devtools.media import sample_clip_path

    clip = sample_clip_path()
    out = clip.parent / f"vtest_720p25_{int(seconds)}s.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise RuntimeError("the capture check needs the ffmpeg CLI")
    tmp = out.with_suffix(".part.mp4")
    subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-i",
            str(clip),
            "-t",
            str(seconds),
            "-vf",
            "scale=1280:720,fps=25",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            str(tmp),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    os.replace(tmp, out)
    return out


def ffmpeg_decode(path: Path, pix_fmt: str | None = None, realtime: bool = False) -> CpuPerFrame:
    """CPU of ``ffmpeg -benchmark`` decoding ``path`` to the null muxer (``-re``: at its frame rate)."""
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-nostdin", "-benchmark"]
    if realtime:
        cmd += ["-re"]
    cmd += ["-i", str(path)]
    if pix_fmt:
        cmd += ["-pix_fmt", pix_fmt]
    cmd += ["-f", "null", "-"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    m = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s", p.stderr)
    frames = re.findall(r"frame=\s*(\d+)", p.stderr)
    if p.returncode != 0 or not m or not frames:
        raise RuntimeError(f"ffmpeg -benchmark failed: {p.stderr[-500:]}")
    cpu = float(m.group(1)) + float(m.group(2))
    n = int(frames[-1])
    return CpuPerFrame(
        frames=n, cpu_s=round(cpu, 3), ms_per_frame=round(1000 * cpu / n, 3), command=" ".join(["ffmpeg", *cmd[1:]])
    )


def child(code: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"capture check child failed: {p.stderr[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpu_per_frame(d: dict[str, Any], **extra: Any) -> CpuPerFrame:
    return CpuPerFrame(
        frames=d["frames"],
        cpu_s=round(d["cpu_s"], 3),
        ms_per_frame=round(1000 * d["cpu_s"] / max(1, d["frames"]), 3),
        wall_s=round(d["wall_s"], 2),
        published=d.get("published"),
        taken=d.get("taken"),
        **extra,
    )


def capture_check(seconds: float = 10.0) -> CaptureCheck:
    """CPU per frame of a trakr CameraReader on a 720p/25 fps camera vs FFmpeg's own decode."""
    clip = make_720p25_clip(max(seconds, 4.0))
    ff = ffmpeg_decode(clip)
    ff_re = ffmpeg_decode(clip, realtime=True)
    ff_re_bgr = ffmpeg_decode(clip, "bgr24", realtime=True)
    cv = _cpu_per_frame(child(_CV2_CHILD, str(clip), "0"))
    cv_paced = _cpu_per_frame(child(_CV2_CHILD, str(clip), "0.04"))
    rd_raw = child(_READER_CHILD, str(clip), str(seconds + 2))
    rd = _cpu_per_frame(rd_raw, cpu_percent_per_camera=round(100 * rd_raw["cpu_s"] / rd_raw["wall_s"], 1))
    reader_ms = 1000 * rd_raw["cpu_s"] / max(1, rd_raw["frames"])
    pyav = _cpu_per_frame(child(_PYAV_CHILD, str(clip), "0.04"))
    gated_raw = child(_READER_CHILD, str(clip), str(seconds + 2), "gated")
    gated = _cpu_per_frame(gated_raw, cpu_percent_per_camera=round(100 * gated_raw["cpu_s"] / gated_raw["wall_s"], 1))
    return CaptureCheck(
        clip=clip.name,
        resolution="1280x720",
        fps=25,
        frames=ff.frames,
        ffmpeg_decode=ff,
        ffmpeg_decode_realtime=ff_re,
        ffmpeg_decode_realtime_bgr24=ff_re_bgr,
        opencv_read_loop=cv,
        opencv_read_loop_paced=cv_paced,
        trakr_reader=rd,
        pyav_decode_paced=pyav,
        trakr_reader_gated=gated,
        ratio_vs_pyav_paced=round(reader_ms / max(pyav.ms_per_frame, 1e-9), 2),
        ratio_gated_vs_pyav_paced=round(gated.ms_per_frame / max(pyav.ms_per_frame, 1e-9), 2),
        ratio_vs_ffmpeg_realtime=round(reader_ms / ff_re.ms_per_frame, 2),
        ratio_vs_ffmpeg_realtime_bgr24=round(reader_ms / ff_re_bgr.ms_per_frame, 2),
        ratio_vs_ffmpeg_unpaced=round(reader_ms / ff.ms_per_frame, 2),
        ratio_vs_opencv_paced=round(reader_ms / cv_paced.ms_per_frame, 2),
        target=f"reader CPU per frame <= {READER_TARGET:g} x ffmpeg -re decode of the same 720p/25 fps file",
        target_met=reader_ms <= READER_TARGET * ff_re.ms_per_frame,
    )
