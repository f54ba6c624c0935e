"""Supervised threads: a long-lived loop that raises is logged, counted and restarted with backoff.

Every long-lived thread in trakr is started with :func:`supervise`. The target is called again
after it raises (with its traceback logged once per crash, exponential backoff capped at
``max_backoff_s``), and returns for good only when it returns normally or ``stop`` is set.
Restarts are counted per thread kind in :data:`RESTARTS`, which ``/metrics`` exports as
``trakr_thread_restarts_total{thread=...}``.

Example:
    >>> import threading
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise RuntimeError("boom")
    >>> t = supervise(flaky, "doc-flaky", threading.Event(), min_backoff_s=0.001)
    >>> t.join(5); len(calls), RESTARTS["doc-flaky"]
    (3, 2)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)

RESTARTS: Counter[str] = Counter()
"""Restarts per thread kind (the name up to its first ``-<digit>`` suffix is the kind)."""
_lock = threading.Lock()


def thread_kind(name: str) -> str:
    """``"reader-3"`` -> ``"reader"``, ``"inference-0"`` -> ``"inference"``, ``"output"`` -> ``"output"``."""
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() else name


def backoff_delay(failures: int, min_s: float, max_s: float) -> float:
    """Exponential backoff that never overflows: ``min_s * 2**(failures-1)`` capped at ``max_s``.

    >>> backoff_delay(1, 0.5, 15), backoff_delay(6, 0.5, 15), backoff_delay(10**9, 0.5, 15)
    (0.5, 15.0, 15.0)
    """
    if failures <= 0:
        return 0.0
    exp = min(failures - 1, 60)  # 2**60 * anything positive is past any sane cap
    return float(min(max_s, min_s * (2.0**exp)))


def run_supervised(
    target: Callable[[], None],
    name: str,
    stop: threading.Event,
    *,
    min_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> None:
    """Call ``target`` until it returns normally or ``stop`` is set; restart it when it raises."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            target()
            return
        except Exception:
            if stop.is_set():
                return
            if time.monotonic() - started > 60:
                failures = 0  # it ran fine for a while: start the backoff over
            failures += 1
            kind = thread_kind(name)
            with _lock:
                RESTARTS[kind] += 1
            delay = backoff_delay(failures, min_backoff_s, max_backoff_s) * random.uniform(0.8, 1.0)
            log.exception("thread %s crashed; restarting in %.1fs (restart %d)", name, delay, failures)
            if stop.wait(delay):
                return


def supervise(
    target: Callable[[], None],
    name: str,
    stop: threading.Event,
    *,
    min_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    start: bool = True,
) -> threading.Thread:
    """A daemon thread running ``target`` under :func:`run_supervised`; started unless ``start=False``."""
    t = threading.Thread(
        target=run_supervised,
        args=(target, name, stop),
        kwargs={"min_backoff_s": min_backoff_s, "max_backoff_s": max_backoff_s},
        name=name,
        daemon=True,
    )
    if start:
        t.start()
    return t


def restarts() -> dict[str, int]:
    """A copy of the restart counters."""
    with _lock:
        return dict(RESTARTS)
