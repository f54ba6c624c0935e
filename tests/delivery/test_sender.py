"""The sender: per-channel order, retries with backoff that never overflows, rejects, expiry,
priority (alerts before health before training), blocked destinations, supervised threads."""

from __future__ import annotations

import logging
import threading
import time

from trakr.delivery.outbox import Outbox
from trakr.delivery.sender import BLOCKED, OK, REJECT, RETRY, Outcome, Sender
from trakr.supervisor import restarts


def _alert(box: Outbox, i: int) -> bool:
    return box.put(f"alert:{i}", "tb:alert", "alert", {"ts": i, "values": {"n": i}})


class _Flaky:
    """Deliver function failing ``fail`` times per channel, then ok; records deliveries."""

    def __init__(
        self,
        fail: int = 0,
        reject: set[str] = frozenset(),
        blocked: dict[str, int] | None = None,
        down: set[str] = frozenset(),
    ):
        self.fail, self.reject, self.down = fail, reject, down
        self.blocked = dict(blocked or {})
        """channel -> HTTP status it answers (a wrong token) until removed"""
        self.calls: dict[str, int] = {}
        self.delivered: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, m):
        with self.lock:
            n = self.calls[m.channel] = self.calls.get(m.channel, 0) + 1
        if m.key in self.reject:
            return Outcome(REJECT, "HTTP 400 bad payload")
        if m.channel in self.down:
            return Outcome(RETRY, "connection refused")
        if m.channel in self.blocked:
            return Outcome(BLOCKED, f"HTTP {self.blocked[m.channel]}", self.blocked[m.channel])
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


def test_backoff_never_overflows_however_long_the_outage(tmp_path):
    """Issue 'Months unattended' item 1: 2 ** 1024 as a float raised OverflowError and killed the
    sender threads after about a day of outage."""
    s = Sender(Outbox(tmp_path), _Flaky(), retry_min_s=1, retry_max_s=120)
    for n in (1_024, 1_100, 10**6, 10**12):
        assert 60 <= s.backoff(n) <= 120


def test_alerts_go_first_then_images_then_health_and_config_then_training(tmp_path):
    box = Outbox(tmp_path)
    for i in range(3):
        box.put(f"train:{i}", "up:train", "training", {"i": i}, data=b"jpeg", filename="t.jpg")
        box.put(f"health:{i}", "tb:health", "health", {"i": i})
    box.put("config:1", "attr", "config", {"attributes": {}})
    box.put("alert-image:1", "up:alert", "alert_image", {}, data=b"jpeg", filename="a.jpg")
    box.put("speaker:1", "spk:10.0.0.9", "speaker", {})
    box.put("alert:1", "tb:alert", "alert", {})
    flaky = _Flaky()
    sender = Sender(box, flaky, workers=1)
    while sender.send_next() is not None:
        pass
    order = flaky.delivered
    assert set(order[:2]) == {"alert:1", "speaker:1"} and order[2] == "alert-image:1"
    assert set(order[3:7]) == {"config:1", "health:0", "health:1", "health:2"}
    assert order[7:] == ["train:0", "train:1", "train:2"]  # last, in order
    assert [k for k in order if k.startswith("health")] == ["health:0", "health:1", "health:2"]


def test_a_failing_lane_waits_its_backoff_while_the_others_are_served(tmp_path):
    box = Outbox(tmp_path)
    for i in range(5):
        _alert(box, i)
        box.put(f"train:{i}", "up:train", "training", {"i": i})
    flaky = _Flaky(down={"tb:alert"})  # the alert destination is down
    sender = Sender(box, flaky, workers=1, retry_min_s=60, retry_max_s=60)
    for _ in range(6):
        sender.send_next()
    assert flaky.calls["tb:alert"] == 1  # tried first, then backing off
    assert [k for k in flaky.delivered if k.startswith("train")] == [f"train:{i}" for i in range(5)]
    assert sender.send_next() is None  # nothing due: the alerts wait for their retry


def test_blocked_destination_keeps_its_messages_backs_off_at_the_cap_and_resumes_on_retry_now(tmp_path, caplog):
    """401/403/404: kept (a fixed token must deliver them), not retried fast, reported; the
    other channels go on."""
    caplog.set_level(logging.WARNING)
    box = Outbox(tmp_path)
    for i in range(5):
        _alert(box, i)
        box.put(f"h:{i}", "tb:health", "health", {"i": i})
    flaky = _Flaky(blocked={"tb:alert": 401})
    sender = Sender(box, flaky, workers=2, retry_min_s=0.01, retry_max_s=30)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while box.stats()["backlog_by_category"].get("health") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert flaky.delivered == [f"h:{i}" for i in range(5)]  # the others were not held up
        assert flaky.calls["tb:alert"] == 1  # one try, then the longest delay: no spinning
        assert sender.blocked() == {"tb:alert": 401}
        assert sender.lane_state()["tb:alert"]["retry_in_s"] > 10
        assert box.stats()["backlog_by_category"] == {"alert": 5}
        assert sum("blocked" in r.getMessage() for r in caplog.records) == 1
        del flaky.blocked["tb:alert"]  # the token was fixed
        sender.retry_now()
        assert _drain(box)
    finally:
        sender.stop()
    assert [k for k in flaky.delivered if k.startswith("alert")] == [f"alert:{i}" for i in range(5)]
    assert sender.blocked() == {}


def test_a_sender_thread_that_crashes_is_restarted(tmp_path):
    """The outbox itself fails under the sender (its database turned read-only): the thread
    crashes, is logged, counted and restarted; once the disk is writable again, delivery goes on."""
    box = Outbox(tmp_path)
    _alert(box, 0)
    _alert(box, 1)
    flaky = _Flaky()
    before = restarts().get("outbox-sender", 0)
    with box._lock:
        box._db.execute("PRAGMA query_only = ON")  # every write now fails: done() raises
    sender = Sender(box, flaky, workers=1, retry_min_s=0.01, retry_max_s=0.05)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while restarts().get("outbox-sender", 0) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert restarts().get("outbox-sender", 0) > before
        with box._lock:
            box._db.execute("PRAGMA query_only = OFF")
        assert _drain(box)  # the restarted thread delivers
    finally:
        sender.stop()
    assert flaky.delivered[-2:] == ["alert:0", "alert:1"]  # alert:0 sent again: at least once
