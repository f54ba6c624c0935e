"""Logging set-up and secret redaction.

trakr logs one line per event that matters (camera up/down, alert stored, outbox backlog), never
one per frame at INFO. Anything that may contain a URL goes through :func:`redact` first, which
hides credentials in ``scheme://user:pass@host`` and ThingsBoard device tokens in
``/api/v1/<token>/``.

Example:
    >>> redact("POST https://tb.example/api/v1/A9nBr8X1X4Iehc4KSeFa/telemetry")
    'POST https://tb.example/api/v1/***/telemetry'
    >>> redact("rtsp://admin:secret@10.0.0.5:554/stream")
    'rtsp://***@10.0.0.5:554/stream'
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_TB_TOKEN = re.compile(r"(/api/v1/)[^/\s?]+")


def redact(text: object) -> str:
    """``text`` with URL credentials and ThingsBoard device tokens replaced by ``***``."""
    s = _USERINFO.sub(r"\g<scheme>***@", str(text))
    return _TB_TOKEN.sub(r"\1***", s)


class RedactingFilter(logging.Filter):
    """Redacts every record's final message, whatever the caller passed."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
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
