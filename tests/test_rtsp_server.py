"""The RTSP test server: real frames, real-time pacing, real timestamps, survives a restart."""

from __future__ import annotations

import threading
import time

import cv2
import pytest

from trakr.devtools.rtsp_server import RtspServer

WIDTH, HEIGHT = 768, 576
WINDOW_S = 3.0


def _open(url: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000],
    )
    assert cap.isOpened(), f"cannot open {url}"
    return cap


def _read_for(url: str, seconds: float, out: dict) -> None:
    """Read *url* for *seconds*; store shapes, POS_MSEC stamps and the measured rate in *out*."""
    try:
        cap = _open(url)
        try:
            ok, frame = cap.read()  # first frame: excluded from the rate (open/probe latency)
            assert ok, f"no first frame from {url}"
            shapes, stamps = {frame.shape}, []
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < seconds:
                ok, frame = cap.read()
                assert ok, f"read failed on {url} after {elapsed:.1f} s"
                shapes.add(frame.shape)
                stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
            out.update(shapes=shapes, stamps=stamps, fps=len(stamps) / (time.monotonic() - t0))
        finally:
            cap.release()
    except BaseException as exc:  # reported by the main thread
        out["error"] = exc


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_two_mounts_real_time_with_timestamps_and_restart(rtsp_server_fn: RtspServer) -> None:
    server = rtsp_server_fn
    results: list[dict] = [{}, {}]
    threads = [
        threading.Thread(target=_read_for, args=(server.url(i), WINDOW_S, results[i]), daemon=True) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WINDOW_S + 15)
        assert not t.is_alive(), "reader thread hung"

    for i, res in enumerate(results):
        if "error" in res:
            raise res["error"]
        assert res["shapes"] == {(HEIGHT, WIDTH, 3)}, f"cam{i}: unexpected frame shapes {res['shapes']}"
        # Server pacing, not a performance threshold: the clip is 10 fps; an unpaced server
        # would deliver hundreds of frames per second.
        assert 5.0 <= res["fps"] <= 20.0, f"cam{i}: {res['fps']:.1f} fps, expected ~10"
        stamps = res["stamps"]
        assert max(stamps) > 0, f"cam{i}: POS_MSEC stuck at 0: {stamps[:10]}"
        # The first few frames after opening can carry stale stamps; after that, they rise.
        steady = stamps[3:]
        assert steady[-1] - steady[0] >= 1000 * (WINDOW_S - 1.5), f"cam{i}: {stamps}"
        assert all(b >= a for a, b in zip(steady, steady[1:])), f"cam{i}: not increasing: {stamps}"

    port = server.port
    server.restart()
    assert server.port == port
    cap = _open(server.url(0))
    try:
        for _ in range(5):
            ok, frame = cap.read()
            assert ok, "no frames after restart"
            assert frame.shape == (HEIGHT, WIDTH, 3)
    finally:
        cap.release()


def test_url_and_bad_input(h264_clip) -> None:
    server = RtspServer(h264_clip, mounts=2, port=8554)
    assert server.url(1) == "rtsp://127.0.0.1:8554/cam1"
    with pytest.raises(IndexError):
        server.url(2)
    with pytest.raises(RuntimeError, match="no such file"):
        RtspServer(h264_clip.with_name("missing.h264")).start()
