"""Pick the detector backend named in the config (``trakr.detector.backend``).

Example:
    >>> from trakr.config import parse_config
    >>> cfg = parse_config({"common": {}, "cameras": [], "trakr": {"detector": {"imgsz": 320}}}).config
    >>> type(build_detector(cfg)).__name__
    'OnnxDetector'
"""

from __future__ import annotations

from trakr.config import SysConfig
from trakr.inference.base import Detector


def build_detector(config: SysConfig) -> Detector:
    """The embedded ONNX model by default; Redis Streams workers when ``backend == "redis"``."""
    d = config.trakr.detector
    if d.backend == "redis":
        from trakr.inference.redis_client import RedisDetector

        return RedisDetector.from_config(config)
    from trakr.inference.onnx import OnnxDetector

    return OnnxDetector(d.model_path, d.imgsz, d.confidence, d.iou, d.threads, d.providers)
