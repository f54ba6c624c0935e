"""The console's access rules as a user meets them through the ``trakr`` command: a non-loopback
bind without a password refuses to start; ``trakr ui set-password`` stores only a salted hash;
then the LAN console asks for a login, with HttpOnly/SameSite=Strict cookies, CSRF-checked writes
and rate-limited logins."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from helpers import free_port, wait_until

TRAKR = [sys.executable, "-m", "trakr.cli"]
PASSWORD = "correct horse battery"


def _config(tmp_path, sample_clip, **ui) -> dict:
    return {
        "vendor_section": {"keep": True},
        "common": {"batch_size": 1, "CamDelay": 0.5},
        "trakr": {
            "detector": {"imgsz": 320},
            "capture": {"loop_files": True},
            "output": {"directory": str(tmp_path / "out")},
            "ui": ui,
        },
        "cameras": [{"CameraId": 5, "CamName": "gate", "Address": str(sample_clip), "Detection": "person"}],
    }


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("how", ["flag", "config"])
def test_a_non_loopback_bind_without_a_password_refuses_to_start(tmp_path, sample_clip, how):
    port = free_port()
    cfg = _config(tmp_path, sample_clip, **({"bind": "0.0.0.0"} if how == "config" else {}))
    path = tmp_path / "site.json"
    path.write_text(json.dumps(cfg))
    args = ["run", "--config", str(path), "--ui-port", str(port), "--duration", "30"]
    if how == "flag":
        args += ["--ui-bind", "0.0.0.0"]
    r = subprocess.run([*TRAKR, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "refusing to run" in r.stderr and "0.0.0.0, which is not loopback" in r.stderr
    assert "trakr ui set-password" in r.stderr
    assert not _listening(port)
    assert not (tmp_path / "out" / "alerts").exists()  # nothing ran


def test_set_password_then_the_lan_console_needs_a_login(tmp_path, sample_clip):
    path = tmp_path / "site.json"
    original = json.dumps(_config(tmp_path, sample_clip, bind="0.0.0.0"), indent=2)
    path.write_text(original)
    short = subprocess.run(
        [*TRAKR, "ui", "set-password", "--config", str(path), "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    r = subprocess.run(
        [*TRAKR, "ui", "set-password", "--config", str(path), "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    saved = json.loads(path.read_text())
    stored = saved["trakr"]["ui"]["password_hash"]
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in path.read_text()
    assert saved["vendor_section"] == {"keep": True} and saved["cameras"] == json.loads(original)["cameras"]
    assert path.with_name("site.json.prev").read_text() == original

    port = free_port()
    proc = subprocess.Popen(
        [*TRAKR, "run", "--config", str(path), "--ui-port", str(port), "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: proc.poll() is None and _listening(port), 60, 0.2), proc.poll()
        assert httpx.get(base + "/api/cameras").status_code == 401
        r = httpx.get(base + "/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
        assert httpx.get(base + "/login").status_code == 200
        with httpx.Client(base_url=base, timeout=10) as c:
            info = c.get("/api/session").json()
            assert info["password_required"] is True and info["authenticated"] is False
            assert c.post("/api/login", json={"password": PASSWORD}).status_code == 403  # no CSRF token
            h = {"X-CSRF-Token": info["csrf_token"]}
            assert c.post("/api/login", json={"password": "wrong password"}, headers=h).status_code == 401
            r = c.post("/api/login", json={"password": PASSWORD}, headers=h)
            assert r.status_code == 200
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            token = r.json()["csrf_token"]
            assert token != info["csrf_token"]  # a new session after login
            cams = c.get("/api/cameras")
            assert cams.status_code == 200 and [x["camera_id"] for x in cams.json()] == [5]
            assert stored not in c.get("/api/health").text and stored not in c.get("/health").text
            edit = {"camera": {"points": None, "triggers": ["person"]}, "rois": []}
            assert c.put("/api/cameras/5/rois", json=edit).status_code == 403  # logged in, no token
        # guessing: the limiter stops it, and then even the right password waits
        with httpx.Client(base_url=base, timeout=10) as g:
            h = {"X-CSRF-Token": g.get("/api/session").json()["csrf_token"]}
            codes = [g.post("/api/login", json={"password": f"guess{i}"}, headers=h).status_code for i in range(6)]
            assert codes[:4] == [401] * 4 and codes[-1] == 429
            r = g.post("/api/login", json={"password": PASSWORD}, headers=h)
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "console on http://0.0.0.0:" in out and "password required" in out
    assert PASSWORD not in out and stored not in out
