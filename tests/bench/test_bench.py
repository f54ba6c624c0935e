"""``trakr bench`` end to end: a tiny real run through the CLI, the gate check and the capture child."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from typer.testing import CliRunner

from trakr.bench.capture_check import _PYAV_CHILD, _READER_CHILD, child
from trakr.bench.gate_check import gate_check
from trakr.bench.options import BenchOptions, base_config_raw
from trakr.cli import app

DOCS_JSON = Path(__file__).resolve().parents[2] / "docs" / "performance.json"
LEAF_DICTS = {"batch_fps", "batch_ms", "gate_stats", "gate_options", "detector_stats", "gate_reasons"}
"""Dicts whose keys are data (batch sizes, camera ids, config fields), not part of the format."""


def key_paths(x: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (lists by their first element), e.g. ``runs[].trakr.latency_ms.p99``."""
    out: set[str] = set()
    if isinstance(x, dict):
        for k, v in x.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            if k not in LEAF_DICTS:
                out |= key_paths(v, p)
    elif isinstance(x, list) and x and isinstance(x[0], dict):
        out |= key_paths(x[0], prefix + "[]")
    return out


def published_format(section: str) -> set[str]:
    """The key paths of ``section`` in the published docs/performance.json."""
    return {p for p in key_paths(json.loads(DOCS_JSON.read_text())) if p == section or p.startswith(section + ".")}


@pytest.mark.slow
def test_bench_one_file_camera_writes_sane_json(tmp_path, sample_clip):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--cameras", "1", "--source", "file", "--duration", "5", "--warmup", "1.5", "--imgsz", "320"]
    args += ["--threads", "1", "--raw-seconds", "0.3", "--naive-duration", "2", "--json", str(out), "--plot", str(png)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "trakr/raw" in res.output and "references" in res.output and "gate decisions" in res.output
    r = json.loads(out.read_text())
    assert png.stat().st_size > 10_000 and r["plot"] == str(png)
    assert r["machine"]["cores"] >= 1 and r["command"].startswith("trakr bench")

    # every key of the published figures is still written (docs/performance.json stays readable)
    for section in ("command", "started", "machine", "options", "warmup_s", "runs", "raw", "plot"):
        assert published_format(section) <= key_paths(r), section

    (run,) = r["runs"]
    t = run["trakr"]
    assert t["cameras"] == 1 and t["imgsz"] == 320 and t["backend"] != "redis"
    assert t["detector"] and t["detector_precision"] in {"fp32", "fp16", "bf16", "int8"}
    # the raw reference runs the same backend at the same precision (like for like)
    assert (r["raw"]["detector"], r["raw"]["detector_precision"]) == (t["detector"], t["detector_precision"])
    (cam,) = t["per_camera"]
    assert 6 < cam["capture_fps"] < 14  # the clip is 10 fps, read at its native rate
    assert 0 < cam["analysed_fps"] <= cam["capture_fps"] + 0.5
    assert 0 < cam["gate_pass_rate"] <= 1 and cam["dropped"] >= 0

    # Counters from different parts agree over the window (edges: a frame or a batch in flight).
    window, slack = t["window_s"], t["batch_size"] + 2
    published = cam["published_fps"] * window
    analysed = cam["analysed_fps"] * window
    reasons = cam["gate_reasons"]
    passed = sum(v for k, v in reasons.items() if k != "skipped")
    # every frame the reader published into the slot was analysed or counted as dropped: none lost
    assert abs(analysed + cam["dropped"] - published) <= slack
    # the gate's decisions by reason account for what the reader published, and for the pass rate
    assert abs(passed - published) <= 2
    assert passed / sum(reasons.values()) == pytest.approx(cam["gate_pass_rate"], abs=0.01)
    assert t["gate_reasons"] == reasons

    lat = t["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 5000
    assert 0 < t["batch_fill"] <= 1 and t["model_ms_per_frame"] > 1 and 0 < t["detector_busy"] <= 1.05
    assert t["rss_peak_mb"] > 50 and t["process_cpu_percent"] > 0 and t["series"]
    assert all({"t", "rss_mb", "cpu_percent", "p99_ms"} <= set(s) for s in t["series"])

    # the machine's load is recorded with every measurement, and the verdicts add up
    for m in (t, run["naive"], r["raw"]):
        load = m["load"]
        assert load["loadavg_1m_before"] >= 0 and load["loadavg_1m_after"] >= 0
        assert load["quiet"] == (load["others_share"] <= 0.10)
    assert run["quiet"] == (t["load"]["quiet"] and run["naive"]["load"]["quiet"])
    assert r["quiet"] == (run["quiet"] and r["raw"]["load"]["quiet"])
    assert ("not quiet" in res.output) == (not r["quiet"])

    raw = r["raw"]
    assert raw["fps"] > 0 and str(raw["best_batch"]) in raw["batch_fps"]
    assert raw["fps"] == max(raw["batch_fps"].values())
    naive = run["naive"]
    assert naive["analysed_fps"] > 0 and naive["latency_ms"]["p50"] > 0
    assert {"throughput", "latency", "rss"} <= set(run["targets"])


class _FakeDetector:
    """A person in the walkway of the demo cameras in every frame of the first 3 s, then nobody."""

    class_names = ["person"]

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        out = []
        for _ in images:
            self.calls += 1
            n = 1 if self.calls <= 30 else 0
            out.append(
                sv.Detections(
                    xyxy=np.array([[300.0, 200, 340, 300]] * n, np.float32).reshape(n, 4),
                    confidence=np.full(n, 0.9, np.float32),
                    class_id=np.zeros(n, int),
                    data={"class_name": np.array(["person"] * n, dtype=str)},
                )
            )
        return out


def test_gate_check_compares_gated_and_ungated_on_the_same_frames(sample_clip):
    opts = BenchOptions(imgsz=320)
    g = gate_check(base_config_raw(opts), opts, detector=_FakeDetector(), max_frames=60)
    assert g.frames == 60 and g.cameras == 4
    assert g.frames_analysed.ungated == 240
    # the gated arm analysed exactly the frames its gate passed, out of every frame offered
    assert sum(s["seen"] for s in g.gate_stats.values()) == 240
    assert sum(s["passed"] for s in g.gate_stats.values()) == g.frames_analysed.gated
    assert 0 < g.frames_analysed.gated <= 240  # people move in every frame of the busy clip: all may pass
    # a higher area threshold never analyses more frames
    by_area = {sw.area_threshold: sw.frames_analysed for sw in g.sweep}
    by_area[g.gate_options["area_threshold"]] = g.frames_analysed.gated
    counts = [by_area[a] for a in sorted(by_area)]
    assert counts == sorted(counts, reverse=True)
    # the first frame always passes the gate, so the gated arm raises the same first alerts
    assert g.person_alerts.ungated >= 1 and g.person_alerts.missed == 0 and g.missed == []
    assert published_format("gate_check") <= key_paths({"gate_check": g.to_json()})


def test_capture_check_reader_child_runs_the_real_reader(sample_clip):
    r = child(_READER_CHILD, str(sample_clip), "2")
    assert r["cpu_s"] > 0 and r["wall_s"] >= 2
    assert 0 < r["taken"] <= r["published"] <= r["frames"]


def test_capture_check_pyav_child_decodes_every_frame_and_the_gated_reader_runs(sample_clip):
    r = child(_PYAV_CHILD, str(sample_clip), "0")
    assert r["frames"] == 795 and r["cpu_s"] > 0  # every frame of the clip, decoded, nothing else
    g = child(_READER_CHILD, str(sample_clip), "2", "gated")
    assert 0 < g["published"] <= g["frames"]


def test_bench_rejects_bad_arguments():
    res = CliRunner().invoke(app, ["bench", "--cameras", "x"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["bench", "--source", "usb"])
    assert res.exit_code == 2
