"""Small helpers shared by trakr's tests (import as ``from helpers import free_port``)."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then close).

    There is an unavoidable race between closing the probe socket and the caller binding the
    port; on a test machine it is negligible.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, step: float = 0.05) -> bool:
    """Poll ``pred()`` until it is true (return True) or ``timeout`` seconds pass (return False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False
