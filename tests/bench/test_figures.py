"""Figures for the docs only from a quiet machine: a real busy loop during a real measurement makes
the bench refuse to write them (or mark them, when asked); the load is in the JSON either way.
And the table the README shows, from one run with two detector backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import wait_until
from typer.testing import CliRunner

from trakr.bench.machine import CpuShare, MachineInfo, MachineLoad
from trakr.bench.references import measure_raw
from trakr.bench.report import NoisyFigures, write_figures
from trakr.bench.results import BenchResult, RawResult
from trakr.bench.sources import load_frames
from trakr.cli import app
from trakr.inference.onnx import OnnxDetector

BUSY = """
import pathlib, sys
pathlib.Path(sys.argv[1]).write_text("started")
while not pathlib.Path(sys.argv[2]).exists():
    pass
"""


def _busy_loop(tmp_path):
    """A real busy loop that is not a child of this process (so it is someone else's work)."""
    started, stop = tmp_path / "started", tmp_path / "stop"
    sh = subprocess.run(
        ["/bin/sh", "-c", '"$0" -c "$1" "$2" "$3" >/dev/null 2>&1 & echo $!', sys.executable, BUSY, started, stop],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(sh.stdout.strip())
    assert wait_until(started.exists, timeout=60)
    return pid, stop


def _bench(raw) -> BenchResult:
    info = MachineInfo("cpu", 2, 4.0, "3.11", "4", "1", [0.1, 0.1, 0.1])
    return BenchResult(command="trakr bench", started="now", machine=info, options={}, warmup_s=2.0, raw=raw)


def test_a_busy_loop_during_a_measurement_stops_the_figures(tmp_path):
    pid, stop = _busy_loop(tmp_path)
    det = OnnxDetector(imgsz=320, threads=1)
    try:
        raw = measure_raw(det, load_frames(4), [1], seconds=1.5)
    finally:
        stop.write_text("stop")
        det.close()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert raw.load is not None and not raw.load.quiet
    assert pid in [p.pid for p in raw.load.busiest_others]  # and it says who
    result = _bench(raw)
    js = result.to_json()
    assert js["quiet"] is False and js["raw"]["load"]["others_share"] > 0.10

    table = tmp_path / "docs" / "table.md"
    with pytest.raises(NoisyFigures, match="not writing"):
        write_figures(result, table)
    assert not table.exists()

    write_figures(result, table, allow_noisy=True)
    text = table.read_text()
    assert "NOT QUIET" in text and "not figures to size hardware by" in text


def _load(share_of_machine: float) -> MachineLoad:
    others = share_of_machine * 200
    cpu = CpuShare(100.0, 2.0, 102.0 + others, others, 2, others_cpu_percent=others)
    return MachineLoad.of(cpu, 0.1, 0.1)


def test_a_quiet_run_writes_plain_figures(tmp_path):
    raw = RawResult({1: 99.5}, 1, 99.5, 10.05, {1: 10.05}, detector="onnxruntime", load=_load(0.02))
    result = _bench(raw)
    table = tmp_path / "table.md"
    write_figures(result, table)
    text = table.read_text()
    assert "NOT QUIET" not in text and "not figures" not in text
    assert "onnxruntime  99.5 frames/s (batch 1, 10.1 ms/frame)" in text


@pytest.mark.slow
def test_one_run_with_both_backends_writes_the_readme_table(tmp_path, sample_clip):
    out, table = tmp_path / "bench.json", tmp_path / "table.md"
    args = ["bench", "--cameras", "1", "--source", "file", "--duration", "4", "--warmup", "1.5", "--imgsz", "320"]
    args += ["--threads", "1", "--raw-seconds", "0.3", "--no-naive", "--no-gate", "--json", str(out)]
    args += ["--detectors", "onnxruntime,openvino", "--figures", str(table), "--allow-noisy"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert [run["trakr"]["detector"] for run in r["runs"]] == ["onnxruntime", "openvino"]
    assert set(r["raw_by_detector"]) == {"onnxruntime", "openvino"}
    for run in r["runs"]:
        t = run["trakr"]
        assert t["gate"] is False and t["analysed_fps"] > 0 and t["load"]["others_share"] >= 0
        assert t["batch_choice"]["source"] in ("measured", "cached")  # the embedded config says auto
        assert t["batch_size"] == t["batch_choice"]["batch_size"]
        raw = r["raw_by_detector"][t["detector"]]
        assert raw["detector"] == t["detector"] and run["ratios"]["trakr_over_raw"] == pytest.approx(
            t["analysed_fps"] / raw["fps"], abs=0.002
        )
    text = table.read_text()
    assert "| 1 | trakr, onnxruntime fp32" in text and "| 1 | trakr, openvino" in text
    assert ("NOT QUIET" in text) == (not r["quiet"])
