"""Health telemetry: camera and inference changes at once, a periodic status read from the
pipeline's snapshot only, and the outbox's state (backlog per category, blocked channels).
"""

from __future__ import annotations

import time

from trakr.delivery.cloud import Cloud
from trakr.types import CameraHealth


def test_health_on_change_and_periodic(fake, tmp_path, cloud_raw, config_of, tok):
    raw = cloud_raw(cloud={"health_interval_s": 0.3, "http_timeout_s": 3})
    cloud = Cloud(config_of(raw), tmp_path)
    cloud.start()
    cloud.health_sink(CameraHealth(1, "down", "open failed", time.time()))
    assert fake.wait_for(lambda: any(v.get("cam1_state") == "down" for v in fake.telemetry_values(tok["health"])), 5)
    assert fake.wait_for(lambda: sum(v.get("event") == "status" for v in fake.telemetry_values(tok["health"])) >= 2, 5)
    status = [v for v in fake.telemetry_values(tok["health"]) if v.get("event") == "status"][-1]
    assert {"outbox_backlog", "outbox_bytes", "config_version", "inference_state"} <= set(status)
    cloud.stop()
