"""``trakr model quantize`` on the real YOLO11n and real frames of the sample clip: a good
calibration is written and marked INT8, a poor one is refused with exit code 3, a bad source is
a clear error that never shows the camera's password."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from typer.testing import CliRunner

from trakr.cli import app
from trakr.inference.base import default_model_path
from trakr.inference.onnx import OnnxDetector
from trakr.inference.openvino import OpenVinoDetector
from trakr.inference.quantize import decode_head_nodes

runner = CliRunner()


def _quantize(*args: str):
    return runner.invoke(app, ["model", "quantize", *args], catch_exceptions=False)


def test_decode_head_is_left_out_of_quantization_and_the_head_convolutions_are_not():
    excluded = set(decode_head_nodes(onnx.load(str(default_model_path()))))
    assert "/model.23/dfl/conv/Conv" in excluded  # box distribution -> coordinates
    assert any(n.startswith("/model.23/Sigmoid") for n in excluded)  # class scores
    assert "/model.23/cv3.0/cv3.0.2/Conv" in excluded  # the class logits stay FP32...
    assert "/model.23/cv3.0/cv3.0.0/conv/Conv" not in excluded  # ...the branch convolutions before are INT8
    assert not any(n.startswith("/model.22/") for n in excluded)


def test_a_calibration_on_the_sites_frames_is_written_marked_int8_and_keeps_the_boxes(sample_clip, tmp_path):
    out = tmp_path / "models" / "yolo11n-int8.onnx"
    # 416 keeps the boxes here; 320 does not (about 96 % of people over 8 held-out frames)
    res = _quantize("--clip", str(sample_clip), "--frames", "12", "--imgsz", "416", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "calibrating on 8 frames, comparing on 4 held-out frames" in res.output
    assert "person" in res.output and f"INT8 model written to {out}" in res.output
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50
    head = set(decode_head_nodes(onnx.load(str(default_model_path()))))
    head_outputs = {o for n in model.graph.node if n.name in head for o in n.output}
    quantized_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert head_outputs and not head_outputs & quantized_inputs  # the decode head computes in FP32
    frame = _frame(sample_clip, 100)
    for det in (OnnxDetector(out, imgsz=416, threads=1), OpenVinoDetector(out, imgsz=416, threads=1)):
        assert det.precision == "int8" and det.class_names[0] == "person"
        people = det.detect([frame])[0]
        assert (people.data["class_name"] == "person").sum() >= 3  # the walkway at frame 100


def test_a_calibration_unlike_the_held_out_frames_is_refused_with_exit_code_3(sample_clip, tmp_path):
    # a camera that was dark while calibrating: every third frame (held out) is real, the rest black
    clip = tmp_path / "dark.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    black = np.zeros((576, 768, 3), np.uint8)
    for i in range(9):
        writer.write(_frame(sample_clip, 100 + 60 * i) if i % 3 == 2 else black)
    writer.release()
    out = tmp_path / "int8.onnx"
    res = _quantize("--clip", str(clip), "--frames", "9", "--imgsz", "320", "--out", str(out))
    assert res.exit_code == 3, res.output
    assert "REFUSED" in res.output and "nothing written" in res.output and "<- below" in res.output
    assert not out.exists()


def test_a_source_that_cannot_be_opened_is_a_clear_error_without_the_password(tmp_path):
    res = _quantize("--clip", "rtsp://admin:s3cret@127.0.0.1:1/live", "--out", str(tmp_path / "x.onnx"))
    assert res.exit_code == 2
    assert "cannot open" in res.output and "127.0.0.1:1/live" in res.output and "s3cret" not in res.output


def _frame(clip: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame
