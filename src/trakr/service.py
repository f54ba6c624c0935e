"""Service-manager integration: systemd notifications and a container health heartbeat.

Under systemd (``Type=notify``) trakr tells the service manager, with the ``sd_notify`` protocol
spoken directly (one datagram per message to the unix socket named in ``$NOTIFY_SOCKET``; a
leading ``@`` names the abstract namespace; no extra dependency):

* ``READY=1`` once the pipeline has started (``systemctl start`` returns then);
* ``STATUS=<one line>`` with each tick, shown by ``systemctl status trakr``;
* ``WATCHDOG=1`` every ``WatchdogSec/2`` (``$WATCHDOG_USEC / 2``), **only while**
  ``pipeline.snapshot().threads_alive`` is true: a pipeline with a dead thread stops pinging and
  systemd restarts trakr after ``WatchdogSec``;
* ``STOPPING=1`` when shutdown begins.

In a container there is no systemd: with ``$TRAKR_HEARTBEAT_FILE`` set, the same tick rewrites
that file (its status line) while the threads are alive, and ``python -m trakr.service check``
(the image's ``HEALTHCHECK``) fails once the file is older than ``--max-age`` seconds. With neither
variable set everything here is a no-op. The ticking thread is itself supervised
(:func:`trakr.supervisor.supervise`, thread kind ``watchdog``): a tick that raises is logged,
counted and retried, and sends no ping.

Example (a socket standing in for systemd, and a stand-in pipeline):
    >>> import socket, tempfile
    >>> from types import SimpleNamespace
    >>> path = tempfile.mkdtemp() + "/notify"
    >>> systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); systemd.bind(path); systemd.settimeout(5)
    >>> snap = SimpleNamespace(threads_alive=True, cameras={1: None}, cameras_up=1, frames_analysed=7,
    ...                        alerts=2, detector_health="up")
    >>> notifier = ServiceNotifier(SimpleNamespace(snapshot=lambda: snap),
    ...                            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}).start()
    >>> systemd.recv(4096).decode().splitlines()
    ['READY=1', 'STATUS=running: 1/1 cameras up, 7 frames analysed, 2 alerts, detector up']
    >>> systemd.recv(4096).decode().splitlines()[0]
    'WATCHDOG=1'
    >>> notifier.stop()
    >>> while not systemd.recv(4096).startswith(b"STOPPING=1"): pass
    >>> systemd.close()
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trakr.logs import redact
from trakr.supervisor import supervise

if TYPE_CHECKING:
    from trakr.types import PipelineSnapshot

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "TRAKR_HEARTBEAT_FILE"
DEFAULT_TICK_S = 10.0
"""Tick period when systemd sets no watchdog (status line and heartbeat only)."""
DEFAULT_MAX_AGE_S = 60.0
"""``check`` fails when the heartbeat is older than this."""
SEND_TIMEOUT_S = 1.0


class _HasSnapshot(Protocol):
    def snapshot(self) -> PipelineSnapshot: ...


def socket_address(value: str | None) -> str | None:
    """The ``sendto`` address for ``$NOTIFY_SOCKET``: a path, or ``@name`` -> ``"\\0name"``.

    >>> socket_address("/run/systemd/notify"), socket_address("@trakr/1"), socket_address("")
    ('/run/systemd/notify', '\\x00trakr/1', None)
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET = {value!r}: expected an absolute path or '@name' (abstract socket)")


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``; ``None`` when systemd
    set no watchdog, or set it for another process (``$WATCHDOG_PID``).

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000"}), watchdog_interval({})
    (15.0, None)
    >>> watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    True
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        raise ValueError(f"WATCHDOG_USEC = {usec!r}: expected a whole number of microseconds") from None
    if value <= 0:
        raise ValueError(f"WATCHDOG_USEC = {usec!r}: expected a positive number of microseconds")
    return value / 2e6


def status_line(snap: Any) -> str:
    """One line for ``systemctl status`` and the heartbeat file (no newlines, no secrets)."""
    line = (
        f"{snap.cameras_up}/{len(snap.cameras)} cameras up, {snap.frames_analysed} frames analysed, "
        f"{snap.alerts} alerts, detector {snap.detector_health}"
    )
    return " ".join(line.split())


class ServiceNotifier:
    """READY / STATUS / WATCHDOG / STOPPING for systemd, and a heartbeat file for containers.

    ``env`` defaults to ``os.environ``; ``tick_s`` overrides the tick period (default: half the
    systemd watchdog, else :data:`DEFAULT_TICK_S`). Call :meth:`start` after the pipeline has
    started and :meth:`stop` before stopping it (a stopping pipeline's threads are not alive).
    """

    def __init__(
        self,
        pipeline: _HasSnapshot,
        *,
        env: Mapping[str, str] | None = None,
        tick_s: float | None = None,
        heartbeat: str | Path | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.pipeline = pipeline
        try:
            self.address = socket_address(env.get("NOTIFY_SOCKET"))
            watchdog = watchdog_interval(env) if self.address else None
        except ValueError as e:  # a wrong environment must not stop trakr: say so and run without it
            log.error("systemd notifications off: %s", e)
            self.address, watchdog = None, None
        self.watchdog_s = watchdog
        hb = heartbeat if heartbeat is not None else env.get(HEARTBEAT_ENV) or None
        self.heartbeat = Path(hb) if hb else None
        self.tick_s = tick_s or watchdog or DEFAULT_TICK_S
        self._stop = threading.Event()
        self._lock = threading.Lock()  # no tick's ping can follow STOPPING=1
        self._thread: threading.Thread | None = None
        self._withheld = False
        self._send_failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None or self.heartbeat is not None

    # -- protocol ------------------------------------------------------------------------------
    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; ``False`` when off or the send failed."""
        if self.address is None:
            return False
        msg = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.settimeout(SEND_TIMEOUT_S)
                s.sendto(msg, self.address)
        except OSError as e:
            if not self._send_failed:  # once, not every tick: systemd may be re-executing
                log.warning("systemd notification failed: %s", e)
            self._send_failed = True
            return False
        self._send_failed = False
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ServiceNotifier:
        """``READY=1`` with a first status line, then ticks on a supervised thread."""
        if not self.enabled:
            return self
        self.notify("READY=1", f"STATUS=running: {self._status()}")
        log.info(
            "service: %s%s%s",
            "READY sent to systemd" if self.address else "started",
            f", watchdog ping every {self.watchdog_s:g}s" if self.watchdog_s else "",
            f", heartbeat file {self.heartbeat} every {self.tick_s:g}s" if self.heartbeat else "",
        )
        self._thread = supervise(self._loop, "watchdog", self._stop, min_backoff_s=min(1.0, self.tick_s))
        return self

    def stop(self) -> None:
        """``STOPPING=1`` and end the ticks (no ping after this)."""
        if not self.enabled:
            return
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            self.notify("STOPPING=1", "STATUS=stopping")
        if self._thread is not None:
            self._thread.join(timeout=2 * SEND_TIMEOUT_S + 1)

    def _status(self) -> str:
        try:
            return status_line(self.pipeline.snapshot())
        except Exception as e:  # the first status line must not stop READY
            return f"status unavailable ({type(e).__name__})"

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            if self._stop.wait(self.tick_s):
                return

    def tick(self) -> bool:
        """One watchdog period: ping (and refresh the heartbeat) only if every thread is alive."""
        snap = self.pipeline.snapshot()
        line = status_line(snap)
        with self._lock:
            if self._stop.is_set():
                return False
            return self._report(snap.threads_alive, line)

    def _report(self, alive: bool, line: str) -> bool:
        if not alive:
            if not self._withheld:
                log.error(
                    "service: a pipeline thread is not alive; watchdog pings withheld "
                    "(systemd restarts trakr after WatchdogSec; the container health check fails)"
                )
            self._withheld = True
            self.notify(f"STATUS=threads not alive, watchdog pings withheld: {line}")
            return False
        if self._withheld:
            log.warning("service: pipeline threads alive again; watchdog pings resumed")
            self._withheld = False
        if self.watchdog_s:
            self.notify("WATCHDOG=1", f"STATUS=running: {line}")
        else:
            self.notify(f"STATUS=running: {line}")
        if self.heartbeat is not None:
            write_heartbeat(self.heartbeat, line)
        return True


def write_heartbeat(path: Path, line: str) -> None:
    """Replace ``path`` with ``line`` (atomic rename: ``check`` never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{time.time():.3f} {line}\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- health check


def check(heartbeat: Path | None, max_age_s: float, url: str | None, timeout_s: float) -> str | None:
    """``None`` when healthy, else one line saying why not.

    Healthy: the heartbeat file (if given) was rewritten in the last ``max_age_s`` seconds, and
    ``url`` (if given, e.g. ``http://127.0.0.1:9108/metrics``) answers 200 within ``timeout_s``.
    """
    if heartbeat is None and url is None:
        return f"nothing to check: set {HEARTBEAT_ENV} or pass --heartbeat / --url"
    if heartbeat is not None:
        try:
            age = time.time() - heartbeat.stat().st_mtime
        except FileNotFoundError:
            return f"heartbeat {heartbeat}: missing (trakr not started yet, or not run with {HEARTBEAT_ENV})"
        except OSError as e:
            return f"heartbeat {heartbeat}: {e}"
        if age > max_age_s:
            return f"heartbeat {heartbeat}: {age:.0f}s old (> {max_age_s:g}s): pipeline threads dead or hung"
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 (local URL from the operator)
                if r.status != 200:
                    return f"{redact(url)}: HTTP {r.status}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return f"{redact(url)}: {redact(e)}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m trakr.service check``: exit 0 when healthy, 1 (and one line on stderr) if not."""
    parser = argparse.ArgumentParser(prog="python -m trakr.service", description="trakr health check.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="Exit 0 while trakr's threads are alive (heartbeat fresh, URL answers).")
    p.add_argument(
        "--heartbeat",
        type=Path,
        default=os.environ.get(HEARTBEAT_ENV) or None,
        help=f"Heartbeat file (default ${HEARTBEAT_ENV}).",
    )
    p.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, help="Oldest acceptable heartbeat, seconds.")
    p.add_argument("--url", default=None, help="Also require this URL to answer 200, e.g. the /metrics endpoint.")
    p.add_argument("--timeout", type=float, default=5.0, help="Timeout of the URL request, seconds.")
    args = parser.parse_args(argv)
    problem = check(args.heartbeat, args.max_age, args.url, args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
