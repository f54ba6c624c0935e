"""A tiny real ONNX person-crop classifier with PPE labels, for tests and cost measurements.

No PPE classifier ships in any package reachable here, so the tests and ``scripts/ppe_cost.py``
build this one with the ``onnx`` helper API: its verdicts are a fixed function of the crop's
colours, so a test can predict them. Class names are in its metadata, as Ultralytics writes them.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from trakr.inference.crop_classifier import CropClassifier
    >>> path = colour_classifier(Path(tempfile.mkdtemp()) / "ppe_colour.onnx")
    >>> CropClassifier(path).labels
    ['NO-Hardhat', 'NO-Safety Vest']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def colour_classifier(path: Path, size: tuple[int, int] = (96, 48)) -> Path:
    """A 2-label multi-label classifier: ``NO-Hardhat`` = sigmoid(k (0.12 - redness of the top 30 %)),
    ``NO-Safety Vest`` = sigmoid(k (0.25 - yellowness of the torso)); redness = R - (G + B) / 2,
    yellowness = (R + G) / 2 - B on the 0..1 RGB input."""
    h, w = size
    top, torso = (0, int(0.3 * h)), (int(0.2 * h), int(0.65 * h))
    k = 40.0
    wt = np.array([[-k, 0.0], [k / 2, 0.0], [k / 2, 0.0]], np.float32)  # rows R, G, B of the top mean
    wb = np.array([[0.0, -k / 2], [0.0, -k / 2], [0.0, k]], np.float32)  # of the torso mean
    bias = np.array([k * 0.12, k * 0.25], np.float32)

    def const(name, value):
        return helper.make_tensor(name, TensorProto.FLOAT if value.dtype == np.float32 else TensorProto.INT64,
                                  value.shape, value.flatten().tolist())  # fmt: skip

    inits = [
        const("wt", wt), const("wb", wb), const("bias", bias),
        const("t0", np.array([top[0]], np.int64)), const("t1", np.array([top[1]], np.int64)),
        const("b0", np.array([torso[0]], np.int64)), const("b1", np.array([torso[1]], np.int64)),
        const("ax", np.array([2], np.int64)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Slice", ["x", "t0", "t1", "ax"], ["top"]),
        helper.make_node("Slice", ["x", "b0", "b1", "ax"], ["torso"]),
        helper.make_node("ReduceMean", ["top"], ["mt"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["torso"], ["mb"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mt", "wt"], ["lt"]),
        helper.make_node("MatMul", ["mb", "wb"], ["lb"]),
        helper.make_node("Add", ["lt", "lb"], ["l"]),
        helper.make_node("Add", ["l", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ppe_colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": str({0: "NO-Hardhat", 1: "NO-Safety Vest"})})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
