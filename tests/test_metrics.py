"""Prometheus metrics: scrape the real HTTP endpoint of a running pipeline."""

from __future__ import annotations

import time
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from trakr.config import parse_config
from trakr.devtools.demo import default_config_raw
from trakr.metrics import PipelineMetrics, start_metrics_server
from trakr.pipeline import Pipeline


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]


def test_metrics_off_by_default_and_local_by_default():
    cfg = parse_config({"common": {}, "cameras": []}).config
    assert cfg.trakr.metrics.port is None and cfg.trakr.metrics.host == "127.0.0.1"
    assert start_metrics_server(cfg) is None


@pytest.mark.slow
def test_metrics_endpoint_of_a_running_pipeline(tmp_path, sample_clip):
    raw = default_config_raw()
    raw["cameras"] = raw["cameras"][1:3]  # two looped file cameras of the real clip, 10 fps each
    raw["common"].update(LogFileSave=False, batch_size=2)
    raw["trakr"]["detector"] = {"imgsz": 320, "threads": 1}
    raw["trakr"]["metrics"] = {"port": 0}
    cfg = parse_config(raw).config
    pipeline = Pipeline(cfg, output_dir=tmp_path)
    metrics = PipelineMetrics(pipeline)
    server = start_metrics_server(cfg, metrics.registry)
    assert server is not None and server.host == "127.0.0.1" and server.port > 0
    # bound to loopback only: the kernel's own table of listening sockets says so (0.0.0.0 would fail)
    listening = [
        c.laddr
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
    ]
    assert [a.ip for a in listening] == ["127.0.0.1"], listening
    pipeline.start()
    try:
        time.sleep(3.0)
        first = _scrape(server.url)
        time.sleep(2.5)
        second = _scrape(server.url)
    finally:
        pipeline.stop()
        server.close()

    cams = [str(c.camera_id) for c in cfg.cameras]
    for cam in cams:
        for name in (
            "trakr_camera_frames_captured_total",
            "trakr_camera_frames_analysed_total",
            "trakr_camera_gate_seen_total",
        ):
            assert _value(second, name, camera=cam) > _value(first, name, camera=cam), (name, cam)
        for name in (
            "trakr_camera_frames_dropped_total",
            "trakr_camera_reconnects_total",
            "trakr_camera_gate_passed_total",
        ):
            assert _value(second, name, camera=cam) >= _value(first, name, camera=cam), (name, cam)
        assert _value(second, "trakr_camera_up", camera=cam) == 1.0
        assert 5 < _value(second, "trakr_camera_capture_fps", camera=cam) < 15  # a 10 fps clip
        assert _value(second, "trakr_camera_analysed_fps", camera=cam) > 0
        assert 0 < _value(second, "trakr_camera_gate_pass_rate", camera=cam) <= 1
        assert _value(second, "trakr_latency_seconds_count", camera=cam) > _value(
            first, "trakr_latency_seconds_count", camera=cam
        )
        assert _value(second, "trakr_latency_seconds_bucket", camera=cam, le="+Inf") == _value(
            second, "trakr_latency_seconds_count", camera=cam
        )
    assert _value(second, "trakr_detector_batches_total") > _value(first, "trakr_detector_batches_total") > 0
    assert _value(second, "trakr_detector_inference_seconds_count") == _value(second, "trakr_detector_batches_total")
    assert _value(second, "trakr_detector_batch_fill_count") == _value(second, "trakr_detector_batches_total")
    assert _value(second, "trakr_detector_inflight_batches") in (0.0, 1.0)
    assert _value(second, "trakr_detector_batch_size") == 2
    assert _value(second, "process_resident_memory_bytes") > 50e6
    # alerts are counted per camera and violation, the same number the pipeline stored
    final = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            if s.name == "trakr_alerts_total":
                final[(s.labels["camera"], s.labels["violation"])] = s.value
    assert sum(final.values()) == pipeline.stats.alerts
    assert all(cam in cams for cam, _ in final)


def test_outbox_metrics_from_any_stats_provider():
    cfg = parse_config({"common": {}, "cameras": []}).config

    class FakeOutbox:
        def stats(self):
            return {
                "backlog": 3,
                "backlog_by_category": {"alert": 2, "health": 1},
                "bytes": 1234,
                "oldest_age_s": 5.0,
                "sent.alert": 7,
                "dropped.training": 2,
                "blocked_channels": {"tb:alert": 401},
            }

    m = PipelineMetrics(Pipeline(cfg), process=False)
    m.watch_outbox(FakeOutbox())
    text = m.render().decode()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert _value(samples, "trakr_outbox_backlog", category="alert") == 2
    assert _value(samples, "trakr_outbox_backlog_total_messages") == 3
    assert _value(samples, "trakr_outbox_sent_total", category="alert") == 7
    assert _value(samples, "trakr_outbox_dropped_total", category="training") == 2
    assert _value(samples, "trakr_outbox_channel_blocked", channel="tb:alert") == 401
