"""The systemd notifier against a real unix datagram socket standing in for systemd.

The pipeline is a stand-in whose ``snapshot()`` returns a real ``PipelineSnapshot``; the test flips
its ``threads_alive``. Pings are counted by datagram, never by time.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import wait_until

from trakr.service import ServiceNotifier, check
from trakr.supervisor import restarts
from trakr.types import PipelineSnapshot

TICK_USEC = 100_000  # WATCHDOG_USEC: a ping every 50 ms


_ZERO = {"int": 0, "float": 0.0, "str": "", "bool": False}


def _snapshot(alive: bool) -> PipelineSnapshot:
    """A real PipelineSnapshot: the fields this test cares about, zero/empty for the rest."""
    known = {"cameras": {}, "frames_analysed": 42, "alerts": 5, "detector_health": "up", "threads_alive": alive}
    values = {}
    for f in dataclasses.fields(PipelineSnapshot):
        t = str(f.type)
        values[f.name] = known.get(f.name, {} if t.startswith("dict") else None if "None" in t else _ZERO.get(t))
    return PipelineSnapshot(**values)


class FakePipeline:
    """``snapshot()`` like ``Pipeline``'s; ``alive`` flips threads_alive; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.alive = True
        self.fail = 0
        self.calls = 0

    def snapshot(self) -> PipelineSnapshot:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("snapshot broke")
        return dataclasses.replace(_snapshot(self.alive), at=time.time())


@pytest.fixture
def systemd():
    """A bound datagram socket (a short path: AF_UNIX paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="sd")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    yield s, path
    s.close()
    os.unlink(path)
    os.rmdir(d)


def _recv(s: socket.socket) -> list[str]:
    return s.recv(65536).decode().split("\n")


def _recv_until(s: socket.socket, pred, limit: int = 200) -> list[list[str]]:
    """Datagrams up to and including the first one for which ``pred(lines)`` holds."""
    got = []
    for _ in range(limit):
        lines = _recv(s)
        got.append(lines)
        if pred(lines):
            return got
    raise AssertionError(f"no matching datagram in {limit}: {got[-3:]}")


def test_ready_then_pings_only_while_threads_alive(systemd):
    s, path = systemd
    pipe = FakePipeline()
    n = ServiceNotifier(pipe, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(TICK_USEC)}).start()
    try:
        first = _recv(s)
        assert first[0] == "READY=1"
        assert first[1] == "STATUS=running: 0/0 cameras up, 42 frames analysed, 5 alerts, detector up"
        pings = [_recv(s) for _ in range(3)]
        assert all(p[0] == "WATCHDOG=1" and p[1].startswith("STATUS=running") for p in pings)

        pipe.alive = False  # a thread died: systemd must stop hearing from us
        _recv_until(s, lambda lines: "withheld" in lines[0])
        after = [_recv(s) for _ in range(5)]  # five more ticks, each reading a dead snapshot
        assert not any("WATCHDOG=1" in lines for lines in after), after
        assert all(lines[0].startswith("STATUS=threads not alive") for lines in after)

        pipe.alive = True  # back (a supervised thread restarted): pings resume
        _recv_until(s, lambda lines: lines[0] == "WATCHDOG=1")
    finally:
        n.stop()
    _recv_until(s, lambda lines: lines[0] == "STOPPING=1")
    s.settimeout(10 * TICK_USEC / 2e6)  # ten tick periods of silence: the pinger has ended
    with pytest.raises(TimeoutError):
        print(_recv(s))


def test_abstract_namespace_socket():
    name = f"trakr-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(10)
        n = ServiceNotifier(FakePipeline(), env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": str(TICK_USEC)})
        n.start()
        try:
            assert _recv(s)[0] == "READY=1"
            assert _recv(s)[0] == "WATCHDOG=1"
        finally:
            n.stop()


def test_no_watchdog_requested_sends_ready_and_status_but_no_ping(systemd):
    s, path = systemd
    # systemd set a watchdog for another process (WATCHDOG_PID): ours gets none
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(TICK_USEC), "WATCHDOG_PID": str(os.getpid() + 1)}
    n = ServiceNotifier(FakePipeline(), env=env, tick_s=0.05).start()
    try:
        assert _recv(s)[0] == "READY=1"
        ticks = [_recv(s) for _ in range(3)]
        assert all(t == ["STATUS=running: 0/0 cameras up, 42 frames analysed, 5 alerts, detector up"] for t in ticks)
    finally:
        n.stop()


def test_snapshot_that_raises_is_supervised_no_ping_meanwhile(systemd):
    s, path = systemd
    pipe = FakePipeline()
    before = restarts().get("watchdog", 0)
    n = ServiceNotifier(pipe, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(TICK_USEC)})
    pipe.fail = 1  # the first status line (READY) survives a failing snapshot
    n.start()
    try:
        assert _recv(s) == ["READY=1", "STATUS=running: status unavailable (RuntimeError)"]
        assert _recv(s)[0] == "WATCHDOG=1"
        pipe.fail = 3  # the pinger thread raises three times: logged, counted, restarted
        assert wait_until(lambda: restarts().get("watchdog", 0) - before == 3, 10)
        s.setblocking(False)  # drop what came before; the restarted pinger pings again
        while True:
            try:
                s.recv(65536)
            except BlockingIOError:
                break
        s.settimeout(10)
        assert _recv(s)[0] == "WATCHDOG=1"
        assert [t.name for t in threading.enumerate()].count("watchdog") == 1
    finally:
        n.stop()


def test_off_without_notify_socket():
    n = ServiceNotifier(FakePipeline(), env={}).start()
    assert not n.enabled and n._thread is None
    assert not n.notify("READY=1")
    n.stop()


def test_bad_notify_socket_is_reported_not_raised(caplog):
    n = ServiceNotifier(FakePipeline(), env={"NOTIFY_SOCKET": "relative/path", "WATCHDOG_USEC": "x"}).start()
    assert not n.enabled
    assert "NOTIFY_SOCKET = 'relative/path'" in caplog.text
    n.stop()


def test_heartbeat_health_check_follows_threads(tmp_path):
    hb = tmp_path / "run" / "heartbeat"
    pipe = FakePipeline()
    assert "missing" in check(hb, 2.0, None, 1.0)
    n = ServiceNotifier(pipe, env={"TRAKR_HEARTBEAT_FILE": str(hb)}, tick_s=0.05).start()
    try:
        assert wait_until(hb.exists, 10)
        assert "42 frames analysed" in hb.read_text()
        ok = subprocess.run(
            [sys.executable, "-m", "trakr.service", "check", "--max-age", "5"],
            env={**os.environ, "TRAKR_HEARTBEAT_FILE": str(hb)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stderr
        pipe.alive = False  # heartbeat no longer refreshed: the check fails once it is older than max-age
        assert wait_until(lambda: check(hb, 0.3, None, 1.0) is not None, 10)
        assert "pipeline threads dead or hung" in check(hb, 0.3, None, 1.0)
        pipe.alive = True
        assert wait_until(lambda: check(hb, 0.3, None, 1.0) is None, 10)
    finally:
        n.stop()


def test_health_check_url(tmp_path):
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert check(None, 60, f"{base}/metrics", 5) is None
        assert "404" in check(None, 60, f"{base}/nope", 5)
    finally:
        srv.shutdown()
        srv.server_close()
    assert "refused" in check(None, 60, f"{base}/metrics", 5).lower()
    assert check(None, 60, None, 5).startswith("nothing to check")
    r = subprocess.run([sys.executable, "-m", "trakr.service", "check", "--heartbeat", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1 and r.stderr.startswith("unhealthy: heartbeat") and "missing" in r.stderr


def test_heartbeat_write_is_atomic(tmp_path):
    hb = tmp_path / "hb"
    n = ServiceNotifier(FakePipeline(), env={}, heartbeat=hb, tick_s=0.01).start()
    try:
        for _ in range(200):  # a reader never sees a half-written file
            if hb.exists():
                text = hb.read_text()
                assert text.endswith("detector up\n"), text
    finally:
        n.stop()
    assert [p.name for p in Path(tmp_path).iterdir()] == ["hb"]  # no temp files left behind
