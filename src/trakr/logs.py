"""Logging set-up and secret redaction.

trakr logs one line per event that matters (camera up/down, alert stored, outbox backlog), never
one per frame at INFO. Every record that reaches trakr's handlers, traceback included, goes
through :func:`redact`, and so should anything that may contain a URL and is shown elsewhere.

:func:`redact` finds each ``scheme://`` in a text and takes the URL apart with
:mod:`urllib.parse`: it hides the user-info (``user:password@``), ThingsBoard device tokens
(``/api/v1/<token>/...``) and the values of secret query or fragment parameters
(``access_token``, ``token``, ``password``...). A password may contain ``@``, ``/``, ``:`` or a
space: the user-info runs to the *last* ``@`` on the line that is followed by a valid host, so it
errs on the side of hiding (``rtsp://cam/x down, ask ops@site`` loses ``cam/x down, ask ops``).

Example:
    >>> redact("POST https://tb.example/api/v1/A9nBr8X1X4Iehc4KSeFa/telemetry")
    'POST https://tb.example/api/v1/***/telemetry'
    >>> redact("rtsp://admin:secret@10.0.0.5:554/stream")
    'rtsp://***@10.0.0.5:554/stream'
    >>> redact("camera rtsp://admin:p@ss w/rd@10.0.0.5/live timed out")
    'camera rtsp://***@10.0.0.5/live timed out'
    >>> redact("GET https://tb/x?access_token=abc&limit=5")
    'GET https://tb/x?access_token=***&limit=5'
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

MASK = "***"
SECRET_PARAMS = frozenset(
    {
        "access_token",
        "token",
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "api_key",
        "apikey",
        "key",
        "auth",
        "authorization",
        "sig",
        "signature",
        "x-amz-signature",
        "refresh_token",
        "id_token",
        "client_secret",
    }
)
"""Query/fragment parameters whose values are hidden (compared case-insensitively)."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://")
"""Where a URL starts (finding it is all the pattern does; the URL itself is parsed)."""
_URL_END = frozenset(" \t\r\n\"'<>`")
"""Characters that end a URL's host-and-path part."""
_TB_PATH = re.compile(r"(/api/v1/)[^/\s?#\"']+")
"""A ThingsBoard device-API path outside a URL, e.g. ``POST /api/v1/<token>/telemetry``."""
_MAX_USERINFO = 1024


def _tb_token_path(path: str) -> str:
    """``/api/v1/<token>/telemetry`` -> ``/api/v1/***/telemetry`` (a path of a URL)."""
    parts = path.split("/")
    for i in range(len(parts) - 2):
        if parts[i].lower() == "api" and parts[i + 1].lower() == "v1" and parts[i + 2]:
            parts[i + 2] = MASK
    return "/".join(parts)


def _secret_params(query: str) -> str:
    """``a=1&token=xyz`` -> ``a=1&token=***``; other parameters are kept as written."""
    if not query:
        return query
    out = []
    for item in re.split(r"([&;])", query):
        name, eq, _ = item.partition("=")
        out.append(f"{name}={MASK}" if eq and unquote(name).strip().lower() in SECRET_PARAMS else item)
    return "".join(out)


def _host_ok(rest: str) -> bool:
    """Whether ``rest`` (what follows an ``@``) starts with a host that a URL parser accepts."""
    head = rest
    for i, ch in enumerate(rest):
        if ch in _URL_END or ch in "/?#":
            head = rest[:i]
            break
    if not head:
        return False
    try:
        parts = urlsplit("x://" + head)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return False
    host = parts.hostname or ""
    return bool(host) and "@" not in head and all(c.isalnum() or c in ".-_~%:[]" for c in host)


def _redact_url(s: str, start: int, after: int, limit: int, stop: int) -> tuple[str, int]:
    """The redacted URL that starts at ``s[start]`` (its scheme ends at ``after``) and where it
    ends. Its user-info ends before ``limit``, and the URL before ``stop`` (the next URL)."""
    # User-info: up to the last "@" before ``limit`` that is followed by a valid host.
    at = -1
    pos = s.find("@", after, limit)
    while pos != -1:
        if _host_ok(s[pos + 1 : limit]):
            at = pos
        pos = s.find("@", pos + 1, limit)
    head = s[start:after]
    rest_start = at + 1 if at != -1 else after
    if at != -1:
        head += MASK + "@"
    end = rest_start
    while end < stop and s[end] not in _URL_END:
        end += 1
    rest = s[rest_start:end]
    try:
        parts = urlsplit("x://" + rest)
    except ValueError:  # e.g. an unbalanced "[" in the host: hide the whole address
        return head + MASK, end
    netloc = parts.netloc
    if "@" in netloc:  # an "@" not followed by a valid host: hide everything before it
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    out = head + netloc + _tb_token_path(parts.path)
    before_fragment = rest.partition("#")[0]
    if "?" in before_fragment[len(parts.netloc) :]:
        out += "?" + _secret_params(parts.query)
    if "#" in rest:
        out += "#" + _secret_params(parts.fragment)
    return out, end


def redact(text: object) -> str:
    """``text`` with URL credentials, ThingsBoard device tokens and secret parameters as ``***``.

    Never raises: if the text cannot be taken apart, every URL in it is hidden whole.
    """
    s = str(text)
    if "://" not in s and "/api/v1/" not in s:
        return s
    try:
        return _redact(s)
    except Exception:  # never let redaction break a log line: hide rather than leak
        m = _SCHEME.search(s)
        head = s[: m.start()] + m.group(0) + MASK if m else s
        return _TB_PATH.sub(r"\1" + MASK, head)


def _redact(s: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        m = _SCHEME.search(s, pos)
        if m is None:
            out.append(_TB_PATH.sub(r"\1" + MASK, s[pos:]))
            return "".join(out)
        out.append(_TB_PATH.sub(r"\1" + MASK, s[pos : m.start()]))
        nxt = _SCHEME.search(s, m.end())
        stop = nxt.start() if nxt else len(s)
        line_end = s.find("\n", m.end())
        limit = min(stop, line_end if line_end != -1 else len(s), m.end() + _MAX_USERINFO)
        url, end = _redact_url(s, m.start(), m.end(), limit, stop)
        out.append(url)
        pos = max(end, m.end())


class RedactingFilter(logging.Filter):
    """Redacts every record's final message and traceback, whatever the caller passed."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # bad format arguments: logging reports those itself
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(
    level: str = "INFO", log_file: str | Path | None = None, max_bytes: int = 10_000_000, backups: int = 5
) -> None:
    """Console logging (and a rotating file if ``log_file``) for the ``trakr`` logger tree."""
    root = logging.getLogger("trakr")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups))
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(RedactingFilter())
        root.addHandler(h)
    root.propagate = False
