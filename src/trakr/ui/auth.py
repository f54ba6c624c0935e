"""Console security: password hashes, sessions, CSRF tokens and a login rate limit.

The password is stored only as a salted scrypt hash (``scrypt$n$r$p$salt$hash``, base64 parts),
written by ``trakr ui set-password`` into ``trakr.ui.password_hash``. Every browser gets a random
session id in an ``HttpOnly``, ``SameSite=Strict`` cookie; its CSRF token is an HMAC of that id
under a per-process secret, so a write must carry a value that only a page of this console can
read. Failed logins are limited per client address and in total.

Example:
    >>> h = hash_password("correct horse")
    >>> h.startswith("scrypt$"), verify_password("correct horse", h), verify_password("wrong", h)
    (True, True, False)
    >>> verify_password("x", "garbage")
    False
    >>> limiter = LoginLimiter(max_failures=2, window_s=60)
    >>> limiter.failed("10.0.0.9", now=0); limiter.failed("10.0.0.9", now=1)
    >>> limiter.allowed("10.0.0.9", now=2), limiter.allowed("10.0.0.7", now=2), limiter.allowed("10.0.0.9", now=61)
    (False, True, True)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_COOKIE = "trakr_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password`` in the form ``scrypt$n$r$p$salt$hash``."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare; a malformed hash is False)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` and the rest of 127/8 are loopback; all else is not.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("::")
    (True, True, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Session:
    sid: str
    created: float
    last_seen: float
    authenticated: bool = False


@dataclass
class Sessions:
    """In-memory sessions (bounded, idle ones expire); CSRF tokens are derived, never stored."""

    max_sessions: int = 2000
    idle_s: float = 12 * 3600
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _items: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.time()
        with self._lock:
            s = self._items.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s:
                del self._items[sid]
                return None
            s.last_seen = now
            self._items.move_to_end(sid)
            return s

    def new(self, authenticated: bool = False) -> Session:
        now = time.time()
        s = Session(secrets.token_urlsafe(32), now, now, authenticated)
        with self._lock:
            self._items[s.sid] = s
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)
        return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, sid: str | None, token: str | None) -> bool:
        if not sid or not token or self.get(sid) is None:
            return False
        return hmac.compare_digest(self.csrf_token(sid), token)


@dataclass
class LoginLimiter:
    """At most ``max_failures`` failed logins per client per ``window_s`` (and 5x that in total)."""

    max_failures: int = 5
    window_s: float = 60.0
    _per_client: dict[str, deque] = field(default_factory=dict)
    _all: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _trim(self, q: deque, now: float) -> None:
        while q and now - q[0] > self.window_s:
            q.popleft()

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until ``client`` may try again (0 = now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._per_client.get(client, deque())
            self._trim(q, now)
            self._trim(self._all, now)
            waits = []
            if len(q) >= self.max_failures:
                waits.append(self.window_s - (now - q[0]))
            if len(self._all) >= 5 * self.max_failures:
                waits.append(self.window_s - (now - self._all[0]))
            return max(waits, default=0.0)

    def allowed(self, client: str, now: float | None = None) -> bool:
        return self.retry_after(client, now) <= 0

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._per_client.setdefault(client, deque()).append(now)
            self._all.append(now)
            if len(self._per_client) > 10000:  # forget the quietest clients
                for k in list(self._per_client)[:5000]:
                    del self._per_client[k]


MIN_PASSWORD_LENGTH = 8


def store_password_hash(config_path: str | Path, password: str) -> Path:
    """Write a salted hash of ``password`` into the config file's ``trakr.ui.password_hash``
    (atomic, previous file kept as ``<file>.prev``, everything else unchanged); returns the path."""
    from trakr.ui.roi import save_config_file

    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    path = Path(config_path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    trakr = raw.setdefault("trakr", {})
    if not isinstance(trakr, dict):
        raise ValueError(f"{path}: 'trakr' is not a JSON object")
    ui = trakr.setdefault("ui", {})
    if not isinstance(ui, dict):
        raise ValueError(f"{path}: 'trakr.ui' is not a JSON object")
    ui["password_hash"] = hash_password(password)
    save_config_file(path, raw)
    return path
