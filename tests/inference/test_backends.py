"""In-process backends on the real YOLO11n and real frames of the sample clip: OpenVINO keeps
ONNX Runtime's boxes, the reused input buffer builds the same tensor as fresh arrays, ``auto``
measures once and caches its choice, a missing ONNX Runtime provider falls back loudly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import supervision as sv

from trakr.config import parse_config
from trakr.inference.auto import cache_path, choice_key, machine
from trakr.inference.base import InputBuffer, letterbox, letterbox_into, model_id, to_tensor
from trakr.inference.factory import build_detector, build_local_detector
from trakr.inference.onnx import OnnxDetector, default_model_path
from trakr.inference.openvino import OpenVinoDetector


@pytest.fixture(scope="module")
def frames(sample_clip) -> list[np.ndarray]:
    """16 frames, 5 s apart over the whole clip: people on the walkway, a van, a car."""
    cap = cv2.VideoCapture(str(sample_clip))
    out = []
    for i in range(751):
        assert cap.grab()
        if i % 50 == 0:
            out.append(cap.retrieve()[1])
    cap.release()
    return out


@pytest.fixture(scope="module")
def ort_416() -> OnnxDetector:
    return OnnxDetector(imgsz=416, threads=2)


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _lost(reference: list[sv.Detections], candidate: list[sv.Detections], iou: float = 0.5) -> tuple[int, list[float]]:
    """(reference boxes, confidences of those the candidate has no box of the same class for at
    IoU >= iou)."""
    total, lost = 0, []
    for ref, cand in zip(reference, candidate):
        total += len(ref)
        for cid in set(ref.class_id.tolist()):
            r, c = ref[ref.class_id == cid], cand.xyxy[cand.class_id == cid]
            best = sv.box_iou_batch(r.xyxy, c).max(axis=1) if len(c) else np.zeros(len(r))
            lost += r.confidence[best < iou].tolist()
    return total, lost


def test_openvino_keeps_onnxruntimes_boxes_on_the_clip(frames, ort_416):
    ov = OpenVinoDetector(imgsz=416, threads=2)
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert ov.precision == ("bf16" if has_bf16 else "fp32")
    assert ov.class_names == ort_416.class_names
    ref = [d for f in frames for d in ort_416.detect([f])]
    got = [d for f in frames for d in ov.detect([f])]
    total, lost = _lost(ref, got)
    assert total > 100  # people, the van and the car over 16 frames
    assert len(lost) <= 0.01 * total, (lost, total)  # over the whole clip (every 5th frame): 99.5 % kept
    assert all(c < ort_416.confidence + 0.03 for c in lost), lost  # at most borderline boxes
    # same pre/post-processing: boxes in the frame's own pixels, class names attached
    h, w = frames[0].shape[:2]
    assert all((d.xyxy[:, [2, 3]] <= [w, h]).all() and len(d.data["class_name"]) == len(d) for d in got)


def test_openvino_fp32_matches_onnxruntime_box_for_box(frames, ort_416):
    ov = OpenVinoDetector(imgsz=416, threads=2, precision="fp32")
    assert ov.precision == "fp32"
    for ref, got in zip(ort_416.detect(frames[:4]), ov.detect(frames[:4])):
        assert len(ref) == len(got)
        o_r, o_g = np.lexsort(ref.xyxy.T), np.lexsort(got.xyxy.T)
        assert np.abs(ref.xyxy[o_r] - got.xyxy[o_g]).max(initial=0) < 1.0
        assert list(ref.data["class_name"][o_r]) == list(got.data["class_name"][o_g])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_batch_gives_what_frames_one_by_one_give(frames, backend):
    det = build_local_detector(backend, imgsz=320, threads=2, precision="fp32")
    batch = [frames[3], frames[5], cv2.resize(frames[7], (320, 640)), frames[9]]  # one portrait frame
    together = det.detect(batch)
    assert sum(len(d) for d in together) >= 4
    for img, b in zip(batch, together):
        alone = det.detect([img])[0]
        assert len(alone) == len(b)
        np.testing.assert_allclose(np.sort(alone.xyxy, axis=0), np.sort(b.xyxy, axis=0), atol=0.5)
        assert (b.xyxy[:, [2, 3]] <= [img.shape[1], img.shape[0]]).all()


def test_reused_input_buffer_builds_the_same_tensor_as_fresh_arrays(frames):
    buf = InputBuffer()
    portrait = np.ascontiguousarray(cv2.resize(frames[1], (288, 512)))
    small = frames[2][:200, :300]  # a crop: not contiguous, smaller than the model input
    exact = frames[3][:416, :416].copy()  # no resize at all
    sequence = [[frames[0], frames[1]], [portrait], [frames[0], portrait, small], [exact, frames[4]], [frames[5]]]
    largest = None
    for images in sequence:
        tensor, boxes = buf.fill(images, 416)
        largest = tensor if len(images) == 3 else largest
        fresh = to_tensor([letterbox(im, 416)[0] for im in images])
        assert tensor.shape == fresh.shape and tensor.dtype == np.float32 and tensor.flags.c_contiguous
        np.testing.assert_array_equal(tensor, fresh)  # borders refilled whenever a slot's size changed
        assert [b.size for b in boxes] == [(im.shape[1], im.shape[0]) for im in images]
    assert np.shares_memory(largest, tensor)  # no new allocation after the largest batch


def test_a_frame_that_is_not_bgr_uint8_is_refused_clearly():
    with pytest.raises(ValueError, match=r"BGR uint8 .*\(480, 640\)"):
        letterbox_into(np.zeros((480, 640), np.uint8), np.empty((320, 320, 3), np.uint8))


def test_openvino_with_precision_auto_runs_the_faster_of_bf16_and_fp32_here(tmp_path, monkeypatch):
    """A CPU with BF16 instructions is not always faster with them: the backend measures both once."""
    monkeypatch.setenv("TRAKR_CACHE", str(tmp_path / "cache"))
    det = build_local_detector("openvino", imgsz=320, threads=2)
    assert det.backend == "openvino"
    key = choice_key(model_id(default_model_path()), 320, 2, None, "auto") + "/only-openvino"
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    if has_bf16:  # both measured, the faster one runs
        ms = json.loads(cache_path().read_text())[key]["ms_per_frame"]
        assert set(ms) == {"openvino-bf16", "openvino-fp32"}
        assert f"openvino-{det.precision}" == min(ms, key=ms.get)
    else:  # nothing to choose from
        assert det.precision == "fp32"
    assert len(det.detect([np.zeros((240, 320, 3), np.uint8)])) == 1
    # an explicit precision is used as it is, unmeasured
    assert build_local_detector("openvino", imgsz=320, threads=2, precision="fp32").precision == "fp32"


def test_auto_measures_once_caches_and_remeasures_for_another_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TRAKR_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="trakr.inference")
    det = build_local_detector("auto", imgsz=320, threads=2)
    path = cache_path()
    assert path == tmp_path / "cache" / "backend-choice.json"
    data = json.loads(path.read_text())
    key = choice_key(model_id(default_model_path()), 320, 2, None, "auto")
    entry = data[key]
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    tried = {"onnxruntime", "openvino-fp32"} | ({"openvino-bf16"} if has_bf16 else set())
    assert set(entry["ms_per_frame"]) == tried
    assert entry["choice"] == min(entry["ms_per_frame"], key=entry["ms_per_frame"].get)
    assert (entry["backend"], entry["precision"]) == (det.backend, det.precision)
    assert entry["choice"] in (det.backend, f"{det.backend}-{det.precision}")
    assert entry["machine"] == machine() and entry["imgsz"] == 320 and "load_1min" in entry
    assert "measured at imgsz 320" in caplog.text and f"detector backend auto: {det.backend}" in caplog.text
    assert len(det.detect([np.zeros((240, 320, 3), np.uint8)])) == 1

    # a choice measured on a quiet machine is reused as it is...
    path.write_text(json.dumps({key: {**entry, "load_1min": 0.5}}))
    caplog.clear()
    again = build_local_detector("auto", imgsz=320, threads=2)
    assert again.backend == det.backend and "cached choice" in caplog.text and "measured at" not in caplog.text
    # ...one measured on an overloaded machine is provisional: measured again
    path.write_text(json.dumps({key: {**entry, "load_1min": 99.0}}))
    caplog.clear()
    build_local_detector("auto", imgsz=320, threads=2)
    assert "measured at imgsz 320" in caplog.text and json.loads(path.read_text())[key]["load_1min"] != 99.0

    # another model file (same weights, other metadata) has another hash: measured again
    model = onnx.load(str(default_model_path()))
    model.metadata_props.add(key="site", value="north gate")
    other = tmp_path / "site.onnx"
    onnx.save(model, str(other))
    caplog.clear()
    build_local_detector("auto", model_path=other, imgsz=320, threads=2)
    assert "measured at imgsz 320" in caplog.text
    assert len(json.loads(path.read_text())) == 2  # both choices kept


def test_auto_survives_a_corrupt_cache_and_is_the_config_default(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TRAKR_CACHE", str(tmp_path))
    (tmp_path / "backend-choice.json").write_text("{not json")
    cfg = parse_config({"common": {}, "cameras": [], "trakr": {"detector": {"imgsz": 320, "threads": 1}}}).config
    assert cfg.trakr.detector.backend == "auto"
    with caplog.at_level(logging.WARNING, logger="trakr.inference"):
        det = build_detector(cfg)
    assert "ignoring unreadable backend cache" in caplog.text
    assert det.backend in ("onnxruntime", "openvino") and det.precision in ("fp32", "bf16")
    assert json.loads((tmp_path / "backend-choice.json").read_text())  # rewritten, valid


def test_openvino_and_onnxruntime_are_chosen_by_name_and_onnx_is_an_alias():
    for name, cls in (("onnx", OnnxDetector), ("onnxruntime", OnnxDetector), ("openvino", OpenVinoDetector)):
        raw = {"common": {}, "cameras": [], "trakr": {"detector": {"backend": name, "imgsz": 320, "threads": 1}}}
        assert type(build_detector(parse_config(raw).config)) is cls
    with pytest.raises(ValueError, match="unknown detector backend 'tensorflow'"):
        build_local_detector("tensorflow")


def test_a_missing_onnxruntime_provider_falls_back_to_cpu_with_a_clear_warning(caplog):
    missing = next(
        p
        for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")
        if p not in ort.get_available_providers()
    )
    with caplog.at_level(logging.WARNING, logger="trakr.inference"):
        det = OnnxDetector(imgsz=320, threads=1, providers=[missing, "CPUExecutionProvider"])
    assert det.session.get_providers() == ["CPUExecutionProvider"]
    assert missing in caplog.text and "onnxruntime-gpu" in caplog.text and "using CPUExecutionProvider" in caplog.text
    assert "CPUExecutionProvider" in det.describe()


def test_a_static_export_runs_at_its_own_size_on_both_backends(tmp_path, frames):
    model = onnx.load(str(default_model_path()))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, 320, 320)):
        d.ClearField("dim_param")
        d.dim_value = v
    static = tmp_path / "static320.onnx"
    onnx.save(model, str(static))
    for backend in ("onnxruntime", "openvino"):
        det = build_local_detector(backend, static, imgsz=416, threads=1, precision="fp32")
        assert det.imgsz == 320
        dets = det.detect(frames[:2])  # a fixed batch of 1: run frame by frame
        assert len(dets) == 2 and all(len(d) > 0 for d in dets)
