"""``trakr bench``: a tiny real run through the CLI, and the pieces it is built from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv
from typer.testing import CliRunner

from trakr.bench.run import (
    BenchOptions,
    _ffmpeg_decode,
    base_config_raw,
    gate_check,
    parse_cameras,
    percentiles,
    slope_per_min,
)
from trakr.cli import app


@pytest.mark.slow
def test_bench_one_file_camera_writes_sane_json(tmp_path, sample_clip):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "--cameras",
            "1",
            "--source",
            "file",
            "--duration",
            "5",
            "--warmup",
            "1.5",
            "--imgsz",
            "320",
            "--threads",
            "1",
            "--raw-seconds",
            "0.3",
            "--naive-duration",
            "2",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trakr/raw" in res.output and "references" in res.output
    r = json.loads(out.read_text())
    assert png.stat().st_size > 10_000 and r["plot"] == str(png)
    assert r["machine"]["cores"] >= 1 and r["command"].startswith("trakr bench")

    (run,) = r["runs"]
    t = run["trakr"]
    assert t["cameras"] == 1 and t["imgsz"] == 320 and t["backend"] == "onnx"
    (cam,) = t["per_camera"]
    assert 6 < cam["capture_fps"] < 14  # the clip is 10 fps, read at its native rate
    assert 0 < cam["analysed_fps"] <= cam["capture_fps"] + 0.5
    assert 0 < cam["gate_pass_rate"] <= 1 and cam["dropped"] >= 0
    lat = t["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 5000
    assert 0 < t["batch_fill"] <= 1 and t["model_ms_per_frame"] > 1 and 0 < t["detector_busy"] <= 1.05
    assert t["rss_peak_mb"] > 50 and t["process_cpu_percent"] > 0 and t["series"]
    assert all({"t", "rss_mb", "cpu_percent", "p99_ms"} <= set(s) for s in t["series"])

    raw = r["raw"]
    assert raw["fps"] > 0 and str(raw["best_batch"]) in raw["batch_fps"]
    assert raw["fps"] == max(raw["batch_fps"].values())
    naive = run["naive"]
    assert naive["analysed_fps"] > 0 and naive["latency_ms"]["p50"] > 0
    # the ratios are the measured numbers divided, not constants
    assert run["ratios"]["trakr_over_raw"] == pytest.approx(t["analysed_fps"] / raw["fps"], abs=1e-3)
    assert run["ratios"]["trakr_over_naive"] == pytest.approx(t["analysed_fps"] / naive["analysed_fps"], abs=1e-3)
    tg = run["targets"]
    assert tg["throughput"]["ratio"] == pytest.approx(run["ratios"]["trakr_over_raw"], abs=1e-3)
    assert tg["latency"]["met"] == (lat["p99"] < tg["latency"]["bound_ms"])
    assert tg["latency"]["bound_ms"] == pytest.approx(
        2 * (t["deadline_ms"] + raw["batch_ms"][str(t["batch_size"])]), abs=0.2
    )


class _FakeDetector:
    """A person in the walkway of the demo cameras in every frame of the first 3 s, then nobody."""

    class_names = ["person"]

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        out = []
        for _ in images:
            self.calls += 1
            if self.calls <= 30:
                out.append(
                    sv.Detections(
                        xyxy=np.array([[300.0, 200, 340, 300]], np.float32),
                        confidence=np.array([0.9], np.float32),
                        class_id=np.array([0]),
                        data={"class_name": np.array(["person"])},
                    )
                )
            else:
                out.append(
                    sv.Detections(
                        xyxy=np.zeros((0, 4), np.float32),
                        confidence=np.zeros(0, np.float32),
                        class_id=np.zeros(0, int),
                        data={"class_name": np.array([], dtype=str)},
                    )
                )
        return out


def test_gate_check_compares_gated_and_ungated_on_the_same_frames(sample_clip):
    opts = BenchOptions(imgsz=320)
    g = gate_check(base_config_raw(opts), opts, detector=_FakeDetector(), max_frames=60)
    assert g["frames"] == 60 and g["cameras"] == 4
    assert g["frames_analysed"]["ungated"] == 240
    assert 0 < g["frames_analysed"]["gated"] <= 240
    assert g["skipped_fraction"] == pytest.approx(1 - g["frames_analysed"]["gated"] / 240, abs=1e-3)
    # the first frame always passes the gate, so the gated arm raises the same first alerts
    assert g["person_alerts"]["ungated"] >= 1 and g["person_alerts"]["missed"] == 0
    assert g["target_met"] == (g["skipped_fraction"] >= 0.5)


def test_ffmpeg_benchmark_is_parsed(sample_clip):
    r = _ffmpeg_decode(sample_clip)
    assert r["frames"] == 795 and 0 < r["ms_per_frame"] < 50 and "-benchmark" in r["command"]


def test_helpers():
    assert parse_cameras("1,2, 4") == [1, 2, 4]
    with pytest.raises(ValueError):
        parse_cameras("0")
    with pytest.raises(ValueError):
        parse_cameras("a")
    p = percentiles(list(range(101)))
    assert (p["p50"], p["p99"]) == (50.0, 99.0)
    assert percentiles([])["p50"] is None
    assert slope_per_min([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(60.0)
    assert slope_per_min([0, 1], [0, 1]) is None


def test_bench_rejects_bad_arguments():
    res = CliRunner().invoke(app, ["bench", "--cameras", "x"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["bench", "--source", "usb"])
    assert res.exit_code == 2
