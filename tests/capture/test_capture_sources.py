"""Camera readers on the other source kinds: an HTTP MJPEG camera, a file at its native rate,
CamDelay sampling."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest

from trakr.capture.reader import CameraReader
from trakr.capture.slot import LatestFrameSlot
from trakr.config import CameraConfig, CaptureOptions


@pytest.fixture
def mjpeg_camera(sample_clip):
    """A real HTTP server on 127.0.0.1 streaming the clip as multipart/x-mixed-replace JPEGs at 10 fps,
    the way IP cameras serve MJPEG."""
    cap = cv2.VideoCapture(str(sample_clip))
    jpegs = [cv2.imencode(".jpg", cap.read()[1])[1].tobytes() for _ in range(30)]
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            i = 0
            try:
                while not stop.is_set():
                    jpg = jpegs[i % len(jpegs)]
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpg)).encode()
                        + b"\r\n\r\n"
                        + jpg
                        + b"\r\n"
                    )
                    i += 1
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/video.mjpg"
    stop.set()
    srv.shutdown()
    srv.server_close()


def _read_for(address, seconds, sample_period=0.0, **opts):
    slot = LatestFrameSlot(1)
    frames = []
    slot.put = frames.append  # an eager consumer: every published frame is taken at once
    reader = CameraReader(
        CameraConfig(CameraId=1, Address=address),
        slot,
        CaptureOptions(open_timeout_s=3, read_timeout_s=3, **opts),
        sample_period_s=sample_period,
    )
    reader.start()
    time.sleep(seconds)
    reader.stop()
    return reader, frames


def test_http_mjpeg_camera(mjpeg_camera):
    reader, frames = _read_for(mjpeg_camera, 3.0)
    assert reader.stats.state == "up"
    assert len(frames) >= 10 and frames[0].image.shape == (576, 768, 3)
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
    assert all(b.captured_at >= a.captured_at for a, b in zip(frames, frames[1:]))


def test_file_camera_reads_at_native_rate_and_loops(sample_clip, tmp_path):
    # a 2 s clip (20 frames at 10 fps), looped, read for 3 s: ~30 frames, not hundreds
    short = tmp_path / "short.avi"
    cap = cv2.VideoCapture(str(sample_clip))
    w = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(20):
        w.write(cap.read()[1])
    w.release()
    reader, frames = _read_for(str(short), 3.0, loop_files=True)
    assert 20 <= len(frames) <= 40
    assert reader.stats.reconnects == 0 and reader.stats.state == "up"


def test_cam_delay_samples_one_frame_per_period(sample_clip):
    reader, frames = _read_for(str(sample_clip), 3.0, sample_period=1.0)
    assert 2 <= len(frames) <= 4  # ~30 frames grabbed, one published per second
    assert reader.stats.frames_read >= 20
