"""The sender: per-channel order, retries with backoff that never overflows, rejects, expiry,
priority (alerts before health before training), blocked destinations, supervised threads."""

from __future__ import annotations

import threading
import time

from trakr.delivery.outbox import Outbox
from trakr.delivery.sender import OK, REJECT, RETRY, Outcome, Sender


def _alert(box: Outbox, i: int) -> bool:
    return box.put(f"alert:{i}", "tb:alert", "alert", {"ts": i, "values": {"n": i}})


class _Flaky:
    """Deliver function failing ``fail`` times per channel, then ok; records deliveries."""

    def __init__(self, fail: int = 0, reject: set[str] = frozenset()):
        self.fail, self.reject = fail, reject
        self.calls: dict[str, int] = {}
        self.delivered: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, m):
        with self.lock:
            n = self.calls[m.channel] = self.calls.get(m.channel, 0) + 1
        if m.key in self.reject:
            return Outcome(REJECT, "HTTP 400 bad payload")
        if n <= self.fail:
            return Outcome(RETRY, "HTTP 503")
        with self.lock:
            self.delivered.append(m.key)
        return Outcome(OK)


def _drain(box, timeout=10):
    deadline = time.monotonic() + timeout
    while box.stats()["backlog"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return box.stats()["backlog"] == 0


def test_sender_retries_in_order_with_backoff_and_skips_rejects(tmp_path):
    box = Outbox(tmp_path)
    for i in range(10):
        _alert(box, i)
        box.put(f"h:{i}", "tb:health", "health", {"i": i})
    flaky = _Flaky(fail=3, reject={"alert:4"})
    sender = Sender(box, flaky, workers=2, retry_min_s=0.02, retry_max_s=0.1)
    t0 = time.monotonic()
    sender.start()
    assert _drain(box)
    sender.stop()
    alerts = [k for k in flaky.delivered if k.startswith("alert")]
    assert alerts == [f"alert:{i}" for i in range(10) if i != 4]  # in order, once each
    assert [k for k in flaky.delivered if k.startswith("h:")] == [f"h:{i}" for i in range(10)]
    assert time.monotonic() - t0 >= 0.02 + 0.04 / 2  # backed off between failures
    st = box.stats()
    assert st["rejected.alert"] == 1 and st["sent.alert"] == 9 and sender.failures == 6


def test_sender_expires_stale_speaker_calls(tmp_path):
    box = Outbox(tmp_path)
    box.put("speaker:1", "spk:10.0.0.1", "speaker", {"code": "m:1"})
    box._db.execute("UPDATE messages SET created = created - 100")
    flaky = _Flaky()
    sender = Sender(box, flaky, max_age_s={"speaker": 30})
    sender.start()
    assert _drain(box)
    sender.stop()
    assert flaky.delivered == [] and box.stats()["expired.speaker"] == 1


def test_backoff_is_exponential_with_jitter(tmp_path):
    s = Sender(Outbox(tmp_path), _Flaky(), retry_min_s=1, retry_max_s=60)
    for n, d in [(1, 1), (2, 2), (3, 4), (7, 60), (30, 60)]:
        samples = [s.backoff(n) for _ in range(200)]
        assert d / 2 <= min(samples) and max(samples) <= d
        assert max(samples) - min(samples) > d / 10  # jittered
