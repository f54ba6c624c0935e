"""``batch_size: auto``: measured once on the real model, cached per model and machine, an explicit
value honoured, the choice used by the pipeline and shown in its snapshot."""

from __future__ import annotations

import json
import logging

import pytest

from trakr.config import parse_config
from trakr.inference.auto import BATCH_CANDIDATES, batch_cache_path, batch_size_for, choose_batch_size
from trakr.inference.onnx import OnnxDetector
from trakr.pipeline import Pipeline


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAKR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def detector():
    det = OnnxDetector(imgsz=320, threads=1)
    yield det
    det.close()


SIZES = (1, 2)
UNLIMITED = float("inf")  # other engineers' work may load this machine: never count it as overloaded here


def test_measured_once_then_cached(cache, detector):
    first = choose_batch_size(detector, SIZES, max_load=UNLIMITED)
    assert first.source == "measured"
    assert sorted(first.ms_per_frame) == list(SIZES)
    assert all(ms > 0 for ms in first.ms_per_frame.values())
    assert first.batch_size in SIZES
    entries = json.loads(batch_cache_path().read_text())
    assert batch_cache_path().parent == cache
    (entry,) = entries.values()
    assert entry["batch_size"] == first.batch_size and entry["backend"] == "onnxruntime" and entry["imgsz"] == 320

    second = choose_batch_size(detector, SIZES, max_load=UNLIMITED)
    assert second.source == "cached"
    assert second.batch_size == first.batch_size and second.ms_per_frame == first.ms_per_frame
    assert json.loads(batch_cache_path().read_text()) == entries  # nothing measured again


def test_a_choice_made_on_an_overloaded_machine_is_measured_again(cache, detector):
    choose_batch_size(detector, SIZES, max_load=UNLIMITED)
    data = json.loads(batch_cache_path().read_text())
    (key,) = data
    data[key].update(load_1min=999.0, batch_size=64)
    batch_cache_path().write_text(json.dumps(data))
    again = choose_batch_size(detector, SIZES, max_load=100.0)
    assert again.source == "measured" and again.batch_size in SIZES
    assert json.loads(batch_cache_path().read_text())[key]["load_1min"] < 999.0


def test_explicit_value_is_honoured_without_measuring(cache, detector):
    choice = batch_size_for(2, detector)
    assert (choice.batch_size, choice.source, choice.ms_per_frame) == (2, "config", {})
    assert not batch_cache_path().exists()


def _config(common: dict):
    raw = {"common": {"LogFileSave": False, **common}, "cameras": [], "trakr": {"detector": {"imgsz": 320}}}
    report = parse_config(raw)
    assert report.ok, report.errors
    return report.config


def test_default_is_auto_and_the_pipeline_uses_the_measured_size(cache, tmp_path, caplog):
    cfg = _config({})
    assert cfg.common.batch_size == "auto"
    caplog.set_level(logging.INFO, logger="trakr.inference.auto")
    pipe = Pipeline(cfg, detector=OnnxDetector(imgsz=320, threads=1), output_dir=tmp_path / "out")  # stop() closes it
    pipe.start()
    try:
        assert pipe.batch_choice is not None and pipe.batch_choice.source == "measured"
        assert sorted(pipe.batch_choice.ms_per_frame) == list(BATCH_CANDIDATES)
        assert pipe.snapshot().batch_size == pipe.batch_choice.batch_size
        cached = json.loads(batch_cache_path().read_text())
        assert [e["batch_size"] for e in cached.values()] == [pipe.batch_choice.batch_size]
    finally:
        pipe.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch size auto")]
    assert len(lines) == 1 and "measured" in lines[0]


def test_seed_batch_size_is_honoured_by_the_pipeline(cache, tmp_path):
    cfg = _config({"batch_size": 2})
    pipe = Pipeline(cfg, detector=OnnxDetector(imgsz=320, threads=1), output_dir=tmp_path / "out")  # stop() closes it
    pipe.start()
    try:
        assert pipe.batch_choice is not None and pipe.batch_choice.source == "config"
        assert pipe.snapshot().batch_size == 2
    finally:
        pipe.stop()
    assert not batch_cache_path().exists()
