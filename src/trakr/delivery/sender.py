"""The sender: delivers outbox messages by priority, one message at a time, on supervised threads.

Every pending channel of the :class:`~trakr.delivery.outbox.Outbox` is a *lane*. A sender thread
picks the lane that is due and has the highest :data:`PRIORITY` (alerts first, training last;
the least recently served lane among equals), sends that lane's oldest message, and goes back to
picking: no thread keeps a channel until it is empty, so an alert queued behind hundreds of
training uploads is the next message sent. A lane that failed is not due until its backoff
expires, and meanwhile the other lanes are served; when it is due, its retry goes first if its
priority is higher (after an outage alerts are retried, and sent, first). One lane is served by
one thread at a time, so each channel stays in order.

A failed send backs the lane off (:func:`trakr.supervisor.backoff_delay`: ``retry_min_s * 2**(n-1)``
capped at ``retry_max_s``, never overflowing however long the outage; jittered between half and
all of it); the other lanes go on. A *blocked* answer (401/403/404: a wrong or revoked token, a
missing device) keeps the message, retries at the cap straight away and is reported with its
HTTP status in :meth:`Sender.blocked`; :meth:`Sender.retry_now` (called when a new config
arrives) retries every lane at once, so a corrected token delivers the backlog. Sender threads
run under :func:`trakr.supervisor.supervise`: one that crashes is logged, counted and restarted.

Example:
    >>> import tempfile
    >>> from trakr.delivery.outbox import Outbox
    >>> box = Outbox(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     _ = box.put(f"train:{i}", "up:train", "training", {"i": i})
    >>> _ = box.put("alert:1", "tb:alert", "alert", {"ts": 1})
    >>> s = Sender(box, lambda m: Outcome(OK))
    >>> [s.send_next() for _ in range(3)]  # the alert first, though it was queued last
    ['tb:alert', 'up:train', 'up:train']
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trakr.delivery.outbox import Message, Outbox
from trakr.logs import redact
from trakr.supervisor import backoff_delay, supervise

log = logging.getLogger(__name__)

OK, RETRY, REJECT, BLOCKED = "ok", "retry", "reject", "blocked"

PRIORITY = {"alert": 0, "roi": 0, "speaker": 0, "alert_image": 1, "config": 2, "health": 2, "training": 3}
"""Serving order by category, lowest first (unknown categories: 2). Alert telemetry, ROI events
and speaker calls first, then alert images, then config status and health, training last."""

REFRESH_S = 10.0
"""Re-read the outbox's channel list this often (new messages also announce themselves)."""


@dataclass
class Outcome:
    """What a delivery attempt came to: ``ok``, ``retry`` (transient), ``reject`` (never: the
    message itself is bad) or ``blocked`` (the destination refuses us: keep it, retry slowly)."""

    status: str
    detail: str = ""
    http_status: int | None = None


Deliver = Callable[[Message], Outcome]


class _Lane:
    __slots__ = ("failures", "next_at", "busy", "priority", "served_at", "generation", "blocked")

    def __init__(self, priority: int):
        self.failures = 0
        self.next_at = 0.0
        self.busy = False
        self.priority = priority
        self.served_at = 0.0
        self.generation = 0
        """Bumped by each new message: an empty read of an older generation does not retire the lane."""
        self.blocked: int | None = None
        """HTTP status of a blocked destination (401/403/404), else ``None``."""


class Sender:
    """Delivers outbox messages on ``workers`` supervised threads (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        deliver: Deliver,
        *,
        workers: int = 2,
        retry_min_s: float = 1.0,
        retry_max_s: float = 120.0,
        max_age_s: dict[str, float] | None = None,
    ):
        self.outbox = outbox
        self.deliver = deliver
        self.workers = workers
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_age_s = dict(max_age_s or {})
        self._lanes: dict[str, _Lane] = {}
        self._active: set[str] = set()
        self._cond = threading.Condition()
        self._refresh_at = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.attempts = 0
        self.failures = 0
        outbox.listeners.append(self._on_put)

    # -- control --------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            self._threads.append(supervise(self._loop, f"outbox-sender-{i}", self._stop))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._on_put in self.outbox.listeners:
            self.outbox.listeners.remove(self._on_put)

    def wake(self) -> None:
        with self._cond:
            self._refresh_at = 0.0
            self._cond.notify_all()

    def retry_now(self) -> None:
        """Retry every waiting lane now (a new config may have fixed its URL or token)."""
        with self._cond:
            for lane in self._lanes.values():
                lane.next_at = 0.0
            self._cond.notify_all()

    def backoff(self, failures: int) -> float:
        """Delay before the next try after ``failures`` consecutive failures (jittered)."""
        d = backoff_delay(failures, self.retry_min_s, self.retry_max_s)
        return d / 2 + random.uniform(0, d / 2)

    # -- state ----------------------------------------------------------------------------------
    def lane_state(self) -> dict[str, dict]:
        """Per channel: consecutive ``failures``, seconds until the next try, ``blocked`` status."""
        now = time.monotonic()
        with self._cond:
            return {
                ch: {"failures": ln.failures, "retry_in_s": max(0.0, ln.next_at - now), "blocked": ln.blocked}
                for ch, ln in self._lanes.items()
            }

    def blocked(self) -> dict[str, int]:
        """Channels whose destination refuses us, with the HTTP status it answered."""
        with self._cond:
            return {ch: ln.blocked for ch, ln in sorted(self._lanes.items()) if ln.blocked is not None}

    # -- picking --------------------------------------------------------------------------------
    def _lane(self, channel: str, category: str) -> _Lane:
        lane = self._lanes.get(channel)
        if lane is None:
            lane = self._lanes[channel] = _Lane(PRIORITY.get(category, 2))
        return lane

    def _on_put(self, channel: str, category: str) -> None:
        with self._cond:
            self._lane(channel, category).generation += 1
            self._active.add(channel)
            self._cond.notify()

    def _pick(self, block: bool = True) -> str | None:
        """Under the condition: the due, idle lane of highest priority (marked busy). Waits for
        one while ``block``; ``None`` once stopped (or, without ``block``, when none is due)."""
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self._refresh_at:
                self._refresh_at = now + REFRESH_S
                for ch, category in self.outbox.channels().items():
                    self._lane(ch, category)
                    self._active.add(ch)
            best: tuple[int, float, str] | None = None
            wait = self._refresh_at - now
            for ch in self._active:
                lane = self._lanes[ch]
                if lane.busy:
                    continue
                if lane.next_at > now:
                    wait = min(wait, lane.next_at - now)
                    continue
                rank = (lane.priority, lane.served_at, ch)
                if best is None or rank < best:
                    best = rank
            if best is not None:
                self._lanes[best[2]].busy = True
                return best[2]
            if not block:
                return None
            self._cond.wait(max(0.001, wait))
        return None

    def send_next(self) -> str | None:
        """Serve one message of the due lane of highest priority now, on the calling thread;
        returns its channel, or ``None`` when no lane is due."""
        while True:
            with self._cond:
                ch = self._pick(block=False)
            if ch is None or self._serve(ch):
                return ch

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                ch = self._pick()
            if ch is None:
                return
            self._serve(ch)

    def _serve(self, ch: str) -> bool:
        lane = self._lanes[ch]
        try:
            return self._serve_one(ch, lane)
        except Exception:  # the outbox itself failed: back the lane off; the supervisor logs it
            lane.failures += 1
            lane.next_at = time.monotonic() + self.backoff(lane.failures)
            raise
        finally:
            with self._cond:
                lane.busy = False
                lane.served_at = time.monotonic()
                self._cond.notify_all()

    # -- sending --------------------------------------------------------------------------------
    def _serve_one(self, ch: str, lane: _Lane) -> bool:
        """Send the channel's oldest message; ``False`` (and the lane retired) when it is empty."""
        generation = lane.generation
        msg = self.outbox.head(ch)
        if msg is None:
            with self._cond:
                if lane.generation == generation:
                    self._active.discard(ch)
            return False
        lane.priority = PRIORITY.get(msg.category, 2)
        max_age = self.max_age_s.get(msg.category)
        if max_age is not None and time.time() - msg.created > max_age:
            self.outbox.done(msg, "expired", f"older than {max_age:g}s")
            return True
        if msg.file is not None and not msg.file.exists():
            self.outbox.done(msg, "rejected", "attachment missing")
            return True
        with self._cond:
            self.attempts += 1
        try:
            out = self.deliver(msg)
        except Exception as e:  # a transport bug must not lose the message
            out = Outcome(RETRY, f"{type(e).__name__}: {e}")
        if out.status == OK:
            self.outbox.done(msg, "sent")
            if lane.failures:
                log.info("outbox: channel %s delivering again after %d failure(s)", ch, lane.failures)
            lane.failures, lane.blocked = 0, None
        elif out.status == REJECT:
            self.outbox.done(msg, "rejected", out.detail)
        else:
            with self._cond:
                self.failures += 1
            lane.failures += 1
            was_blocked, lane.blocked = lane.blocked, (out.http_status or 0) if out.status == BLOCKED else None
            # blocked: no point in a fast retry; wait the longest delay (and for a new config)
            delay = self.backoff(10**9 if lane.blocked is not None else lane.failures)
            lane.next_at = time.monotonic() + delay
            self.outbox.failed(msg, out.detail)
            if lane.blocked is not None and was_blocked is None:
                log.warning(
                    "outbox: channel %s blocked: %s; keeping its messages, retrying every %.0fs and at the next config",
                    ch,
                    redact(out.detail),
                    self.retry_max_s,
                )
            elif lane.failures == 1 or lane.failures % 10 == 0:
                log.warning(
                    "outbox: channel %s: %s (failure %d, retry in %.1fs)",
                    ch,
                    redact(out.detail),
                    lane.failures,
                    delay,
                )
        return True
