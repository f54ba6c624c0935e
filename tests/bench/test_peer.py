"""The peer comparison: the peer's custom logic runs the same model with the same pre- and
post-processing as trakr; the real peer (Roboflow ``inference`` in its own virtualenv) runs on a
real RTSP camera when that virtualenv is installed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trakr.bench.peer import MARKER, PEER_PACKAGE, PeerError, peer_script, peer_venv, run_peer
from trakr.bench.sources import load_frames
from trakr.cli import app
from trakr.inference.base import default_model_path
from trakr.inference.onnx import OnnxDetector


def _peer_module():
    spec = importlib.util.spec_from_file_location("peer_roboflow", peer_script())
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports cv2, numpy, onnxruntime, psutil only; `inference` only in main()
    return mod


def test_the_peer_runs_the_same_model_with_the_same_letterbox_and_nms(sample_clip):
    frames = load_frames(6)
    peer = _peer_module().Model(str(default_model_path()), 416, 1, 0.35, 0.5)
    trakr = OnnxDetector(imgsz=416, threads=1, confidence=0.35, iou=0.5)
    ours, theirs = trakr.detect(frames), peer.detect(frames)
    assert sum(len(d) for d in ours) > 10  # people in the sample clip: something to compare
    for a, b in zip(ours, theirs):
        assert len(a) == len(b["xyxy"])
        order_a, order_b = np.lexsort(a.xyxy.T), np.lexsort(b["xyxy"].T)
        np.testing.assert_allclose(a.xyxy[order_a], b["xyxy"][order_b], atol=0.5)
        np.testing.assert_array_equal(a.class_id[order_a], b["class_id"][order_b])
        np.testing.assert_allclose(a.confidence[order_a], b["confidence"][order_b], atol=1e-4)


def test_bench_rejects_an_unknown_peer_or_detector():
    res = CliRunner().invoke(app, ["bench", "--peer", "deepstream"])
    assert res.exit_code == 2 and "--peer takes roboflow" in res.output
    res = CliRunner().invoke(app, ["bench", "--detectors", "tensorrt"])
    assert res.exit_code == 2 and "--detectors takes" in res.output


def test_a_peer_that_cannot_start_is_reported_with_its_own_error(tmp_path):
    """Not the peer venv: a python without `inference`; the error names what went wrong."""
    with pytest.raises(PeerError, match="No module named 'inference'"):
        run_peer(
            Path(sys.executable),
            ["rtsp://127.0.0.1:9/none"],
            default_model_path(),
            320,
            1,
            0.35,
            0.5,
            duration=1,
            warmup=0.5,
        )


def _installed() -> bool:
    marker = peer_venv() / MARKER
    return marker.is_file() and marker.read_text().strip() == PEER_PACKAGE


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed(),
    reason=f"the peer virtualenv ({PEER_PACKAGE}, several GB) is not installed: `trakr bench --peer roboflow` makes it",
)
def test_the_real_peer_runs_on_a_real_rtsp_camera(rtsp_server):
    python = peer_venv() / "bin" / "python"
    r = run_peer(python, [rtsp_server.url(0)], default_model_path(), 320, 1, 0.35, 0.5, duration=5, warmup=1.5)
    assert r.error is None and r.cameras == 1
    assert 0 < r.analysed_fps <= 12  # the clip is 10 fps
    assert 0 < r.latency_ms.p50 <= r.latency_ms.p99 < 10_000
    assert r.cpu_percent > 0 and r.rss_peak_mb > 100
    assert r.details["inference_version"] == PEER_PACKAGE.split("==")[1]
    assert r.details["errors"] == 0 and r.details["imgsz"] == 320 and r.details["threads"] == 1
    json.dumps(r.to_json())  # the bench's JSON takes it as it is
    assert r.load is not None  # the machine's load is recorded around it
