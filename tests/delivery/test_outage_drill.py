"""The week-long outage, compressed: every channel fails more than 1 100 times in a row (the
cloud refuses connections; with the defaults, retry_max_s = 120 s, that is about a day and a half
of outage; the old sender's backoff overflowed at about 1 025 failures and its threads died),
then one channel answers 401 for a wrong token while the others recover, then a corrected config
delivers the rest. Everything queued is delivered, in order, once.
"""

from __future__ import annotations

import json
import time

from trakr.delivery.cloud import Cloud
from trakr.evidence import AlertStore
from trakr.supervisor import restarts

FAILURES = 1100


def test_week_long_outage_compressed_then_a_bad_token_then_everything_delivered(
    fake, tmp_path, cloud_raw, config_of, make_alert, evidence, tok
):
    t0 = time.monotonic()
    raw = cloud_raw(
        outbox={"workers": 4},  # one per channel: with retries of 2 ms, alerts' retries would fill 2
        cloud={"health_interval_s": 0.2, "http_timeout_s": 3},
    )
    raw["trakr"]["outbox"].update(retry_min_s=0.0005, retry_max_s=0.002)  # an hour of backoff in ms
    raw["common"].update(train_url="", train_storage_ip="")  # alerts, ROI events, images, health
    good = config_of(raw)
    wrong = json.loads(json.dumps(raw))
    wrong["common"]["alert_url"] = fake.url("WRONGtok3n")  # a typo in one device token
    fake.valid_tokens = set(tok.values())
    fake.refuse()  # the cloud is gone: every connection refused
    restarted_before = restarts().get("outbox-sender", 0)

    cloud = Cloud(config_of(wrong), tmp_path)
    store = AlertStore(tmp_path, sinks=[cloud.enqueue_alert])
    cloud.start()
    try:
        produced = [store.save(make_alert(i, roi="ROI1"), *evidence).alert_id for i in range(20)]
        channels = ("tb:alert", "tb:roi", "up:alert", "tb:health")

        def failures() -> dict[str, int]:
            lanes = cloud.sender.lane_state()
            return {ch: lanes[ch]["failures"] if ch in lanes else 0 for ch in channels}

        assert fake.wait_for(lambda: min(failures().values()) > FAILURES, 120, 0.2), failures()
        outage_s = time.monotonic() - t0
        assert not fake.received()  # nothing accepted...
        assert cloud.outbox.stats()["backlog_by_category"]["alert"] == 20  # ...and nothing lost
        assert restarts().get("outbox-sender", 0) == restarted_before  # no sender thread died

        fake.accept()  # the cloud is back, but the alert device refuses the wrong token
        assert fake.wait_for(lambda: [u.fields["alert_id"] for u in fake.received("upload")] == produced, 20)
        assert fake.wait_for(lambda: len(fake.telemetry_values(tok["roi"])) == 20, 10)
        assert cloud.stats()["blocked_channels"] == {"tb:alert": 401}
        assert fake.wait_for(lambda: set(cloud.outbox.stats()["backlog_by_category"]) <= {"alert", "health"}, 5)
        assert cloud.outbox.stats()["backlog_by_category"]["alert"] == 20  # kept, not rejected
        assert fake.wait_for(
            lambda: any(
                v.get("outbox_blocked_channels") == {"tb:alert": 401} and v.get("outbox_backlog_alert") == 20
                for v in fake.telemetry_values(tok["health"])
            ),
            10,
        ), fake.telemetry_values(tok["health"])[-1:]
        blocked_s = time.monotonic() - t0 - outage_s

        cloud.apply_config(good)  # the corrected token arrives (a config push does this)
        assert fake.wait_for(lambda: len(fake.telemetry_values(tok["alert"])) >= 20, 10)
        assert fake.wait_for(lambda: cloud.stats()["blocked_channels"] == {}, 5)
    finally:
        cloud.stop()
    values = fake.telemetry_values(tok["alert"])
    assert [v["alert_id"] for v in values] == produced  # in order, once each
    assert cloud.last_stats["backlog"] == 0 and cloud.last_stats.get("dropped.alert", 0) == 0
    total = time.monotonic() - t0
    print(
        f"\noutage drill: {FAILURES}+ consecutive failures on each of {len(channels)} channels in {outage_s:.1f}s; "
        f"blocked channel reported {blocked_s:.1f}s later; everything delivered after {total:.1f}s in all"
    )
