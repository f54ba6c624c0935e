"""Start and stop the web console inside trakr's process.

:func:`start_console` checks the bind rule first (loopback by default; any other interface
refuses to start without ``trakr.ui.password_hash``), binds the socket in the caller's thread, so
a busy port is reported at once, then serves with uvicorn in a supervised thread. The console
registers two cheap sinks on the pipeline (the latest frame per camera, the alert index) and
starts a supervised thread that keeps the event index in line with the records on disk.

Example:
    >>> check_bind("127.0.0.1", None)
    >>> check_bind("0.0.0.0", None)
    Traceback (most recent call last):
    ...
    trakr.ui.server.ConsoleRefused: the console would listen on 0.0.0.0, which is not loopback, and no password is set: run 'trakr ui set-password --config FILE' first (or use --ui-bind 127.0.0.1)
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trakr.config import SysConfig
from trakr.supervisor import supervise
from trakr.ui.auth import is_loopback
from trakr.ui.state import ConsoleState

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 600.0
"""How often the event index re-reads the alert folders (retention deletes, records from elsewhere)."""


class ConsoleRefused(Exception):
    """The console must not start as asked (no password for a non-loopback bind, port busy)."""


def check_bind(bind: str, password_hash: str | None) -> None:
    """Refuse any non-loopback bind without a password."""
    if not is_loopback(bind) and not password_hash:
        raise ConsoleRefused(
            f"the console would listen on {bind}, which is not loopback, and no password is set: "
            "run 'trakr ui set-password --config FILE' first (or use --ui-bind 127.0.0.1)"
        )


def _bind_socket(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind.strip("[]"), port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConsoleRefused(f"the console cannot listen on {bind}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    """The console's uvicorn server in a supervised thread; :meth:`stop` ends it."""

    def __init__(self, state: ConsoleState, bind: str, port: int, password_hash: str | None):
        check_bind(bind, password_hash)
        self.state = state
        self.bind = bind
        self.password_hash = password_hash
        self._sock: socket.socket | None = _bind_socket(bind, port)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._server: Any = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = self.bind if ":" not in self.bind else f"[{self.bind}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self.state.attach()
        self._threads.append(supervise(self._sync_loop, "console-index", self._stop))
        self._threads.append(supervise(self._serve, "console-http", self._stop))
        log.info(
            "console on %s (%s)", self.url, "password required" if self.password_hash else "loopback only, no password"
        )

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            n = self.state.events.sync()
            if n:
                log.info("console: event index updated (%d record(s) added or removed)", n)
            self._stop.wait(SYNC_INTERVAL_S)

    def _serve(self) -> None:
        import uvicorn

        from trakr.ui.app import create_app

        sock, self._sock = self._sock, None
        if sock is None:  # restarted after a crash: uvicorn closed the first socket
            sock = _bind_socket(self.bind, self.port)
        config = uvicorn.Config(
            create_app(self.state, self.password_hash),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
            limit_concurrency=200,
        )
        self._server = uvicorn.Server(config)
        self._server.run(sockets=[sock])
        if not self._stop.is_set():
            raise RuntimeError("the console's HTTP server stopped by itself")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.state.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        for t in self._threads:
            t.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self.state.events.close()
        log.info("console stopped")


def start_console(
    pipeline,
    config: SysConfig,
    *,
    port: int | None = None,
    bind: str | None = None,
    config_path: str | Path | None = None,
    camera_list: str = "cameras",
    outbox=None,
    on_config: list[Callable[[SysConfig], Any]] | None = None,
    raw: dict | None = None,
) -> ConsoleServer | None:
    """Start the console for ``pipeline`` (``None`` when the port is 0); raises :class:`ConsoleRefused`.

    ``port`` and ``bind`` override ``trakr.ui``; ``on_config`` defaults to ``[pipeline.apply_config]``.
    """
    ui = config.trakr.ui
    port = ui.port if port is None else port
    bind = ui.bind if bind is None else bind
    if port == 0:
        return None
    check_bind(bind, ui.password_hash)
    state = ConsoleState(
        pipeline,
        config_path=Path(config_path) if config_path else None,
        camera_list=camera_list,
        outbox=outbox,
        on_config=list(on_config) if on_config is not None else [pipeline.apply_config],
        raw=raw,
        preview_fps=ui.preview_fps,
    )
    server = ConsoleServer(state, bind, port, ui.password_hash)
    server.start()
    return server
