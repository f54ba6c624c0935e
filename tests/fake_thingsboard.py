"""A real HTTP server on 127.0.0.1 implementing the ThingsBoard device API subset trakr uses, plus
image-upload and speaker endpoints. It records every request it answers.

Endpoints:
    POST /api/v1/<token>/telemetry            JSON {"ts", "values"} (or a list of them)
    POST /api/v1/<token>/attributes           client attributes
    GET  /api/v1/<token>/attributes?sharedKeys=a,b   -> {"shared": {...}}
    GET  /api/v1/<token>/attributes/updates?timeout=ms  -> changed shared attributes, or 408
    POST /upload/<anything>                   multipart/form-data image + fields
    GET|POST /speaker/<anything>              speaker calls (query recorded)

Modes: ``ok`` (default), ``error`` (every request but the long-poll answers ``error_status``,
503 by default), and :meth:`FakeThingsBoard.refuse` closes the listening socket so connections
are refused; :meth:`FakeThingsBoard.accept` binds the same port again.

Run standalone (for a subprocess test): ``python tests/fake_thingsboard.py PORT``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict
    token: str | None
    kind: str
    """telemetry, attributes, shared_get, updates, upload, speaker, other"""
    headers: dict
    body: object = None
    fields: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    """multipart file field -> (filename, bytes)"""
    status: int = 0
    at: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def _reply(self, status: int, body: object = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake: FakeThingsBoard = self.server.fake
        u = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(u.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = u.path.strip("/").split("/")
        token = parts[2] if len(parts) >= 4 and parts[:2] == ["api", "v1"] else None
        rest = parts[3:] if token else []
        if token and rest == ["telemetry"]:
            kind = "telemetry"
        elif token and rest == ["attributes"]:
            kind = "attributes" if method == "POST" else "shared_get"
        elif token and rest == ["attributes", "updates"]:
            kind = "updates"
        elif parts[0] == "upload":
            kind = "upload"
        elif parts[0] == "speaker":
            kind = "speaker"
        else:
            kind = "other"
        req = Request(method, u.path, query, token, kind, dict(self.headers.items()), at=time.time())
        if kind in ("telemetry", "attributes") and raw:
            try:
                req.body = json.loads(raw)
            except ValueError:
                req.body = raw.decode(errors="replace")
        elif kind == "upload":
            ctype = self.headers.get("Content-Type", "")
            msg = BytesParser(policy=email_policy).parsebytes(
                f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + raw
            )
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fname = part.get_filename()
                payload = part.get_payload(decode=True)
                if fname is not None:
                    req.files[name] = (fname, payload)
                else:
                    req.fields[name] = payload.decode()
        if kind == "updates":
            status, body = fake._long_poll(token, float(query.get("timeout", "20000")) / 1000)
        elif fake.mode == "error":
            status, body = fake.error_status, {"error": "unavailable"}
        elif kind == "shared_get":
            keys = [k for k in query.get("sharedKeys", "").split(",") if k]
            with fake._lock:
                shared = fake.shared.get(token, {})
                status, body = 200, {"shared": {k: shared[k] for k in keys if k in shared}}
        elif kind == "other":
            status, body = 404, {"error": "not found"}
        elif token and fake.valid_tokens is not None and token not in fake.valid_tokens:
            status, body = 401, {"error": "unauthorized"}
        else:
            status, body = 200, None
        req.status = status
        with fake._lock:
            fake.requests.append(req)
        if fake.delay_s:
            time.sleep(fake.delay_s)
        self._reply(status, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeThingsBoard

    def handle_error(self, request, client_address):  # clients hanging up mid-request: not news
        pass


class FakeThingsBoard:
    """The fake server; use as a context manager or start()/stop()."""

    def __init__(self, port: int = 0):
        self.port = port
        self.requests: list[Request] = []
        self.shared: dict[str, dict] = {}
        self._versions: dict[str, int] = {}
        self._changed: dict[str, list[tuple[int, str]]] = {}
        self.pollers: dict[str, int] = {}
        """Long-poll requests received per token (counted on arrival)."""
        self.waiting: dict[str, int] = {}
        """Long-poll requests of each token waiting right now."""
        self.mode = "ok"
        self.error_status = 503
        self.delay_s = 0.0
        self.valid_tokens: set[str] | None = None
        self._lock = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeThingsBoard:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused until :meth:`accept`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            self._lock.notify_all()

    def accept(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            for _ in range(50):
                try:
                    self.start()
                    return
                except OSError:
                    time.sleep(0.1)
            raise RuntimeError(f"cannot re-bind 127.0.0.1:{self.port}")

    def stop(self) -> None:
        self.refuse()

    def __enter__(self) -> FakeThingsBoard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, token: str, what: str = "telemetry") -> str:
        return f"{self.base}/api/v1/{token}/{what}"

    # -- shared attributes ----------------------------------------------------------------------
    def set_shared(self, token: str, key: str, value: object) -> None:
        """Change a shared attribute; wakes long-polls of ``token`` waiting since before the change."""
        with self._lock:
            self.shared.setdefault(token, {})[key] = value
            v = self._versions.get(token, 0) + 1
            self._versions[token] = v
            self._changed.setdefault(token, []).append((v, key))
            self._lock.notify_all()

    def _long_poll(self, token: str, timeout: float) -> tuple[int, object]:
        deadline = time.monotonic() + timeout
        with self._lock:
            self.pollers[token] = self.pollers.get(token, 0) + 1
            self.waiting[token] = self.waiting.get(token, 0) + 1
            try:
                seen = self._versions.get(token, 0)
                while self._versions.get(token, 0) == seen:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._server is None:
                        return 408, None
                    self._lock.wait(left)
                keys = {k for v, k in self._changed.get(token, []) if v > seen}
                return 200, {k: self.shared[token][k] for k in keys}
            finally:
                self.waiting[token] -= 1

    # -- inspection ------------------------------------------------------------------------------
    def received(self, kind: str | None = None, token: str | None = None, ok_only: bool = True) -> list[Request]:
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if (kind is None or r.kind == kind)
            and (token is None or r.token == token)
            and (not ok_only or r.status == 200)
        ]

    def telemetry_values(self, token: str) -> list[dict]:
        """``values`` of every accepted telemetry POST of ``token``, in arrival order."""
        out = []
        for r in self.received("telemetry", token):
            for item in r.body if isinstance(r.body, list) else [r.body]:
                out.append(item["values"])
        return out

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())


if __name__ == "__main__":  # pragma: no cover - used by subprocess tests
    import sys

    fake = FakeThingsBoard(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(fake.port, flush=True)
    threading.Event().wait()
