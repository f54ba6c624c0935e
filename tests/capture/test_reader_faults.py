"""Camera readers against dead, hung and hostile cameras: no camera holds up another, stop is
prompt, failures say why, a crash is logged, counted and retried, and nothing kills a reader."""

import logging
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import free_port, wait_until

from trakr.capture.gate import ChangeGate
from trakr.capture.reader import CameraReader
from trakr.capture.slot import LatestFrameSlot
from trakr.config import CameraConfig, CaptureOptions
from trakr.supervisor import restarts


class HungCamera:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def hung_camera():
    cam = HungCamera()
    yield cam
    cam.close()


@pytest.fixture
def http_401():
    """An HTTP camera that wants credentials we do not have."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/video.mjpg"
    srv.shutdown()
    srv.server_close()


FAST = dict(open_timeout_s=3, read_timeout_s=3, backoff_min_s=0.05, backoff_max_s=0.2)


def _reader(cid, address, limit=1, events=None, slot=None, gate=None, **opts):
    return CameraReader(
        CameraConfig(CameraId=cid, Address=address),
        slot or LatestFrameSlot(cid),
        CaptureOptions(**{**FAST, **opts}),
        not_reachable_limit=limit,
        on_health=events.append if events is not None else None,
        gate=gate,
    )


def test_dead_cameras_do_not_hold_up_a_live_one_and_stop_is_prompt(rtsp_server, hung_camera, tmp_path):
    refused = free_port()
    dead = {
        1: f"rtsp://127.0.0.1:{hung_camera.port}/stream",  # accepts, never answers
        2: f"rtsp://127.0.0.1:{refused}/stream",  # nothing listening
        3: str(tmp_path / "no-such-camera.mp4"),  # not there at all
    }
    readers = {cid: _reader(cid, a) for cid, a in dead.items()}
    for r in readers.values():  # the dead ones first: an open lock would make the live one queue
        r.start()
    assert hung_camera.accepted.wait(5)  # the hung camera's open is in progress...
    readers[0] = live = _reader(0, rtsp_server.url(0))
    live.start()
    assert wait_until(lambda: live.stats.state == "up", 8)
    assert readers[1].stats.state == "starting"  # ...and still is: the live one did not wait for it
    assert wait_until(lambda: all(readers[c].stats.state == "down" for c in dead), 15)
    assert {c: readers[c].stats.reason for c in dead} == {1: "timeout", 2: "refused", 3: "not found"}
    assert all(readers[c].stats.fps == 0.0 for c in dead)
    assert wait_until(lambda: live.stats.frames_published >= 5, 8)

    t0 = time.monotonic()
    for r in readers.values():
        r.request_stop()
    finished = {cid: r.stop() for cid, r in readers.items()}
    assert time.monotonic() - t0 < 8  # hang guard: each stop() returned
    assert finished[0] and finished[2] and finished[3]


def test_stop_returns_while_an_open_hangs(hung_camera):
    r = _reader(5, f"rtsp://127.0.0.1:{hung_camera.port}/x", open_timeout_s=60, read_timeout_s=60)
    r.start()
    assert hung_camera.accepted.wait(5)
    t0 = time.monotonic()
    finished = r.stop()
    assert time.monotonic() - t0 < 8  # hang guard: a 60 s open does not hold up stop()
    assert not finished  # it is still inside the open...
    hung_camera.close()
    assert wait_until(lambda: not r.alive, 10)  # ...and leaves as soon as the open ends


def test_failures_say_why_and_log_once_without_credentials(rtsp_server, http_401, tmp_path, caplog):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 100)
    refused = free_port()
    cases = {
        11: (f"rtsp://admin:s3cret@127.0.0.1:{refused}/live", "refused"),
        12: (rtsp_server.url(0).replace("/cam0", "/no-such-mount"), "not found"),
        13: (http_401, "unauthorised"),
        14: (str(not_video), "not a video"),
        15: ("7", "not found"),  # a USB index with no camera behind it (OpenCV)
        16: ("rtsp://camera.invalid/stream", "not found"),  # a host name that does not resolve
    }
    events = []
    caplog.set_level(logging.INFO, logger="trakr")
    readers = [_reader(cid, a, events=events) for cid, (a, _) in cases.items()]
    for r in readers:
        r.start()
    assert wait_until(lambda: all(r.stats.state == "down" for r in readers), 15)
    time.sleep(0.5)  # several more failed attempts each, which must not log again
    for r in readers:
        r.stop()
    assert {r.cam.camera_id: r.stats.reason for r in readers} == {cid: why for cid, (_, why) in cases.items()}
    assert sorted((e.camera_id, e.state, e.reason) for e in events) == [
        (cid, "down", why) for cid, (_, why) in sorted(cases.items())
    ]
    lines = [rec.getMessage() for rec in caplog.records if "down:" in rec.getMessage()]
    assert len(lines) == len(cases)  # once per state change, not once per retry
    assert f"camera 11 down: refused (rtsp://***@127.0.0.1:{refused}/live)" in lines
    assert "s3cret" not in caplog.text
    assert all(r.stats.failures >= 2 and "s3cret" not in r.stats.last_error for r in readers)


class FlakySlot(LatestFrameSlot):
    """A consumer whose first two puts blow up (a bug downstream of the reader)."""

    def __init__(self, camera_id):
        super().__init__(camera_id)
        self.blown = 0

    def put(self, frame):
        if self.blown < 2:
            self.blown += 1
            raise RuntimeError("boom in the consumer")
        super().put(frame)


def test_a_crash_is_logged_counted_reported_and_retried(sample_clip, caplog):
    events = []
    before = restarts().get("camera", 0)
    caplog.set_level(logging.INFO, logger="trakr")
    r = _reader(21, str(sample_clip), events=events, slot=FlakySlot(21), limit=3)
    r.start()
    try:
        assert wait_until(lambda: r.slot.put_count >= 3, 15)  # it came back and publishes
    finally:
        r.stop()
    assert restarts().get("camera", 0) - before == 2
    crashes = [rec for rec in caplog.records if rec.exc_info and "camera-21" in rec.getMessage()]
    assert len(crashes) == 2 and "boom in the consumer" in caplog.text  # with the traceback
    assert [(e.state, e.reason) for e in events][:2] == [("up", "frames arriving"), ("down", "error")]
    assert events[-1].state == "up"
    assert r.stats.crashes == 2 and "RuntimeError: boom" in r.stats.last_error


def test_absurd_settings_do_not_kill_a_reader(rtsp_server):
    before = restarts().get("camera", 0)
    absurd = CaptureOptions.model_construct(
        open_timeout_s=1e7, read_timeout_s=float("inf"), backoff_min_s=1e-9, backoff_max_s=1e999
    )
    refused = free_port()
    # what a loader that let these through would hand over (config.py refuses them today)
    usb = CameraConfig.model_construct(camera_id=31, address="9" * 40)
    huge_usb = CameraReader(usb, LatestFrameSlot(31), absurd, 0.0, 1)
    long_down = CameraReader(
        CameraConfig(CameraId=32, Address=f"rtsp://127.0.0.1:{refused}/x"), LatestFrameSlot(32), absurd, 0.0, 1
    )
    long_down.stats.failures = 10**6  # down for months: 2**(n-1) must not overflow
    live = CameraReader(CameraConfig(CameraId=33, Address=rtsp_server.url(1)), LatestFrameSlot(33), absurd, 0.0, 1)
    readers = [huge_usb, long_down, live]
    for r in readers:
        r.start()
    try:
        assert wait_until(lambda: huge_usb.stats.state == "down" and long_down.stats.state == "down", 10)
        assert wait_until(lambda: live.stats.state == "up", 10)
        assert huge_usb.stats.reason == "not found" and long_down.stats.reason == "refused"
        assert long_down.stats.failures > 10**6
        assert all(r.alive for r in readers) and all(r.stats.crashes == 0 for r in readers)
    finally:
        for r in readers:
            r.request_stop()
        assert all(r.stop() for r in readers)
    assert restarts().get("camera", 0) == before


def test_capture_fps_is_steady_after_connecting_and_zero_when_down(rtsp_server_fn):
    r = _reader(41, rtsp_server_fn.url(2), limit=1, open_timeout_s=1.5, read_timeout_s=1.5)
    r.start()
    try:
        assert wait_until(lambda: r.stats.state == "up", 10)
        samples = []
        for _ in range(30):  # the first 3 s, while the server's buffered frames burst in
            samples.append(r.stats.fps)
            time.sleep(0.1)
        assert max(samples) <= 13.0, samples  # the clip is 10 fps: no spike
        assert samples[-1] > 5.0, samples
        os.kill(rtsp_server_fn.pid, signal.SIGSTOP)  # the camera hangs mid-stream
        try:
            assert wait_until(lambda: r.stats.state == "down", 15)
            assert r.stats.reason == "timeout"  # the read timeout, then opens that time out
            assert r.stats.fps == 0.0 and r.snapshot_fields()["capture_fps"] == 0.0
        finally:
            os.kill(rtsp_server_fn.pid, signal.SIGCONT)
        assert wait_until(lambda: r.stats.state == "up", 15)  # and it comes back by itself
        assert r.stats.reconnects >= 1
    finally:
        r.stop()


def test_the_gate_runs_in_the_reader_and_only_passed_frames_are_published(sample_clip):
    frames = []
    slot = LatestFrameSlot(51)
    slot.put = frames.append  # an eager consumer takes every published frame
    gate = ChangeGate(keyframe_s=1000)
    r = _reader(51, str(sample_clip), slot=slot, gate=gate, realtime_files=False)
    r.start()
    try:
        assert wait_until(lambda: r.stats.state == "down" and r.stats.reason == "end of file", 30)
    finally:
        r.stop()
    f = r.snapshot_fields()
    assert f["frames_read"] == 795 and f["gate_seen"] == 795  # every frame decoded and offered
    assert f["frames_published"] == f["gate_passed"] == len(frames)  # only what passed was published
    assert f["gate_reasons"]["skipped"] > 0 and f["gate_reasons"]["motion"] > 100
    assert f["gate_reasons"]["keyframe"] == 1  # the first frame only (keyframe_s is long)
    assert sum(f["gate_reasons"].values()) == f["gate_seen"]
    assert all(fr.image.shape == (576, 768, 3) for fr in frames)
    assert [fr.seq for fr in frames] == list(range(1, len(frames) + 1))
