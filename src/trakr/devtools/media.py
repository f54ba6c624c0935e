"""Sample media for trakr's demo, tests and benchmarks.

trakr ships no video. Its test clip is OpenCV's ``vtest.avi`` (768x576, 10 fps, pedestrians,
a van and a car), taken from Debian's ``opencv-doc`` package at
``usr/share/doc/opencv-doc/examples/data/vtest.avi`` (BSD/Apache licensed).

:func:`sample_clip_path` fetches the package once with ``apt-get download opencv-doc`` (no root
needed, nothing is installed), extracts that single file from the ``.deb`` with
``dpkg-deb --fsys-tarfile`` and keeps it in a cache directory: ``$TRAKR_CACHE`` if set, otherwise
``~/.cache/trakr``. :func:`h264_annexb_path` transcodes the clip once with the ``ffmpeg`` CLI into
an Annex-B H.264 elementary stream, which is what :mod:`trakr.devtools.rtsp_server` serves.

Both functions are safe to call from several processes at once (a lock file in the cache
directory serialises the work) and write their outputs atomically (temporary file, then rename),
so a crash never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_dir", "sample_clip_path", "h264_annexb_path"]

CLIP_NAME = "vtest.avi"
#: Path of the clip inside the opencv-doc package (tar members carry a leading ``./``).
DEB_MEMBER = "usr/share/doc/opencv-doc/examples/data/vtest.avi"
DEB_PACKAGE = "opencv-doc"

#: Native geometry and rate of vtest.avi.
CLIP_WIDTH = 768
CLIP_HEIGHT = 576
CLIP_FPS = 10

_DOWNLOAD_TIMEOUT_S = float(os.environ.get("TRAKR_FETCH_TIMEOUT", "600"))
_TRANSCODE_TIMEOUT_S = 600.0


def cache_dir() -> Path:
    """Return (and create) trakr's cache directory: ``$TRAKR_CACHE`` or ``~/.cache/trakr``."""
    env = os.environ.get("TRAKR_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "trakr"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(cache: Path, name: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``cache/.name.lock`` (serialises concurrent fetches)."""
    with open(cache / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(text: str | bytes | None, n: int = 2000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.strip()[-n:]


def _download_deb(workdir: Path) -> Path:
    """Run ``apt-get download opencv-doc`` in *workdir* and return the .deb it wrote."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise RuntimeError(
            "cannot fetch the sample clip: 'apt-get' is not on PATH (trakr fetches vtest.avi from "
            f"Debian's {DEB_PACKAGE} package; run scripts/setup on Debian 12, or put {CLIP_NAME} "
            "into $TRAKR_CACHE yourself)"
        )
    # apt drops privileges to the _apt user for downloads; let it write here to avoid a warning.
    workdir.chmod(0o777)
    try:
        proc = subprocess.run(
            [apt_get, "download", DEB_PACKAGE],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_DOWNLOAD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"cannot fetch the sample clip: 'apt-get download {DEB_PACKAGE}' did not finish within "
            f"{_DOWNLOAD_TIMEOUT_S:.0f} s (set TRAKR_FETCH_TIMEOUT to wait longer): {_tail(exc.stderr)}"
        ) from exc
    debs = sorted(workdir.glob(f"{DEB_PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        hint = ""
        if "Unable to locate package" in proc.stderr or "has no installation candidate" in proc.stderr:
            hint = " (the apt package lists look empty or stale: run 'apt-get update' first)"
        raise RuntimeError(
            f"cannot fetch the sample clip: 'apt-get download {DEB_PACKAGE}' failed with exit code "
            f"{proc.returncode}{hint}: {_tail(proc.stderr) or _tail(proc.stdout)}"
        )
    return debs[-1]


def _extract_member(deb: Path, dest: Path) -> None:
    """Extract :data:`DEB_MEMBER` from *deb* into *dest* via ``dpkg-deb --fsys-tarfile``."""
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise RuntimeError("cannot extract the sample clip: 'dpkg-deb' is not on PATH")
    wanted = {DEB_MEMBER, "./" + DEB_MEMBER}
    found = False
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            [dpkg_deb, "--fsys-tarfile", str(deb)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errfile,
        )
        try:
            assert proc.stdout is not None
            # Streaming mode ("r|"): the tar is read once, front to back, never held in memory.
            with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        src = tar.extractfile(member)
                        if src is None:  # pragma: no cover - isfile() guarantees a stream
                            break
                        with open(dest, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                        found = True
                        break
        except (tarfile.TarError, OSError) as exc:
            proc.kill()
            proc.wait()
            errfile.seek(0)
            raise RuntimeError(
                f"cannot extract {DEB_MEMBER} from {deb.name}: {exc}; dpkg-deb said: {_tail(errfile.read())}"
            ) from exc
        finally:
            if proc.stdout is not None:
                proc.stdout.close()  # we may stop reading early; dpkg-deb then exits on SIGPIPE
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not found:
            errfile.seek(0)
            raise RuntimeError(
                f"cannot extract the sample clip: {DEB_MEMBER} is not in {deb.name} "
                f"(dpkg-deb exit code {proc.returncode}: {_tail(errfile.read())})"
            )


def sample_clip_path() -> Path:
    """Return the path of ``vtest.avi`` in the cache, fetching it first if it is missing.

    The clip is fetched with ``apt-get download opencv-doc`` (run in a temporary directory inside
    the cache, with a timeout of ``$TRAKR_FETCH_TIMEOUT`` seconds, default 600) and only
    ``usr/share/doc/opencv-doc/examples/data/vtest.avi`` is extracted from the package; the
    ``.deb`` (about 96 MB) is deleted afterwards.

    Raises:
        RuntimeError: naming the step that failed (apt-get missing or failing, e.g. because the
            package lists need ``apt-get update``; dpkg-deb missing; the file not in the package).
    """
    cache = cache_dir()
    clip = cache / CLIP_NAME
    if clip.is_file() and clip.stat().st_size > 0:
        return clip
    with _locked(cache, CLIP_NAME):
        if clip.is_file() and clip.stat().st_size > 0:  # another process fetched it meanwhile
            return clip
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
            work = Path(tmp)
            deb = _download_deb(work)
            part = work / (CLIP_NAME + ".part")
            _extract_member(deb, part)
            if part.stat().st_size == 0:
                raise RuntimeError(f"cannot extract the sample clip: {DEB_MEMBER} in {deb.name} is empty")
            os.replace(part, clip)
    return clip


def h264_annexb_path(width: int | None = None) -> Path:
    """Return an Annex-B H.264 elementary stream of the sample clip, transcoding it once.

    The stream is made with the ``ffmpeg`` CLI for RTSP serving::

        ffmpeg -y -i vtest.avi -c:v libx264 -preset veryfast -tune zerolatency -g 20 -bf 0 \\
               -bsf:v h264_mp4toannexb -f h264 OUT

    i.e. no B-frames (decode order equals presentation order), a keyframe every 2 s and
    SPS/PPS repeated in-band, at the source's 10 fps. By default the resolution stays 768x576
    (cached as ``vtest.h264``); with *width* the video is scaled to that width keeping the aspect
    ratio (height rounded to even, cached as ``vtest_w{width}.h264``).

    Raises:
        RuntimeError: if ``ffmpeg`` is missing, fails, or times out (its stderr is included), or
            if the sample clip cannot be fetched (see :func:`sample_clip_path`).
    """
    if width is not None and (int(width) <= 0 or int(width) % 2):
        raise ValueError(f"width must be a positive even number, got {width!r}")
    clip = sample_clip_path()
    cache = clip.parent
    name = "vtest.h264" if width is None else f"vtest_w{int(width)}.h264"
    out = cache / name
    if out.is_file() and out.stat().st_size > 0:
        return out
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(
            "cannot transcode the sample clip: 'ffmpeg' is not on PATH (apt-get install ffmpeg, or run scripts/setup)"
        )
    with _locked(cache, name):
        if out.is_file() and out.stat().st_size > 0:
            return out
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
        os.close(fd)
        tmp = Path(tmp_name)
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(clip)]
        if width is not None:
            cmd += ["-vf", f"scale={int(width)}:-2"]
        cmd += [
            "-an",
            "-c:v", "libx264",
            "-preset", "veryfast",
            "-tune", "zerolatency",
            "-g", "20",
            "-bf", "0",
            "-pix_fmt", "yuv420p",
            "-bsf:v", "h264_mp4toannexb",
            "-f", "h264",
            str(tmp),
        ]  # fmt: skip
        try:
            try:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=_TRANSCODE_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(
                    f"cannot transcode the sample clip: ffmpeg did not finish within "
                    f"{_TRANSCODE_TIMEOUT_S:.0f} s: {_tail(exc.stderr)}"
                ) from exc
            if proc.returncode != 0 or tmp.stat().st_size == 0:
                raise RuntimeError(
                    f"cannot transcode the sample clip: ffmpeg exited with code {proc.returncode}: {_tail(proc.stderr)}"
                )
            tmp.chmod(0o644)  # mkstemp creates 0600; the cache is meant to be readable
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out
