"""Build the detector backend named in the config (``trakr.detector.backend``).

``auto`` (the default) measures the backends installed here once and runs the fastest
(:mod:`trakr.inference.auto`); ``onnxruntime`` (alias ``onnx``) and ``openvino`` run in this
process; ``redis`` sends frames to ``trakr worker`` processes. One log line at start says what
runs: backend, version, device, precision, input size, threads, model.

Example:
    >>> from trakr.config import parse_config
    >>> raw = {"common": {}, "cameras": [], "trakr": {"detector": {"imgsz": 320, "backend": "onnxruntime"}}}
    >>> det = build_detector(parse_config(raw).config)
    >>> type(det).__name__, det.backend, det.precision
    ('OnnxDetector', 'onnxruntime', 'fp32')
"""

from __future__ import annotations

import logging
from pathlib import Path

from trakr.config import SysConfig
from trakr.inference.base import Detector, LocalDetector

log = logging.getLogger(__name__)

LOCAL_BACKENDS = ("auto", "onnxruntime", "openvino")
"""Backends that run the model in this process (``trakr worker --backend`` takes these too)."""


def build_local_detector(
    backend: str = "auto",
    model_path: str | Path | None = None,
    imgsz: int = 416,
    confidence: float = 0.35,
    iou: float = 0.5,
    threads: int = 0,
    providers: list[str] | None = None,
    precision: str = "auto",
) -> LocalDetector:
    """An in-process detector: ``onnxruntime`` (``onnx``), ``openvino`` or ``auto``."""
    backend = "onnxruntime" if backend == "onnx" else backend
    det: LocalDetector
    if backend == "auto":
        from trakr.inference.auto import build_fastest

        det = build_fastest(model_path, imgsz, confidence, iou, threads, providers, precision)
    elif backend == "onnxruntime":
        from trakr.inference.onnx import OnnxDetector

        det = OnnxDetector(model_path, imgsz, confidence, iou, threads, providers)
    elif backend == "openvino":
        from trakr.inference.openvino import OpenVinoDetector

        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"detector.precision must be auto, fp32 or bf16, not {precision!r}")
        if precision == "auto":  # BF16 or FP32, whichever is faster on this CPU (measured once, cached)
            from trakr.inference.auto import build_fastest

            det = build_fastest(model_path, imgsz, confidence, iou, threads, providers, precision, ("openvino",))
        else:
            det = OpenVinoDetector(model_path, imgsz, confidence, iou, threads, precision)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown detector backend {backend!r}: expected one of {', '.join(LOCAL_BACKENDS)}")
    log.info("detector: %s; model %s (%d classes)", det.describe(), det.model_path.name, len(det.class_names))
    return det


def build_detector(config: SysConfig) -> Detector:
    """The configured in-process backend; Redis Streams workers when ``backend == "redis"``."""
    d = config.trakr.detector
    if d.backend == "redis":
        from trakr.inference.redis_client import RedisDetector

        return RedisDetector.from_config(config)
    return build_local_detector(
        d.backend, d.model_path, d.imgsz, d.confidence, d.iou, d.threads, d.providers, d.precision
    )
