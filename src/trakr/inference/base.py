"""Detector interface and the Ultralytics-format pre/post-processing every backend shares.

A detector turns a batch of BGR images into one :class:`supervision.Detections` per image, in
the image's own pixel coordinates, with ``data["class_name"]`` set. Backends: the in-process
ONNX Runtime model (:mod:`trakr.inference.onnx`, the default) and Redis Streams workers.

Example:
    >>> import numpy as np
    >>> img = np.zeros((576, 768, 3), np.uint8)
    >>> tensor, lb = letterbox_batch([img], 320)
    >>> tensor.shape, round(lb[0].scale, 4), lb[0].pad
    ((1, 3, 320, 320), 0.4167, (0.0, 40.0))
"""

from __future__ import annotations

import abc
import ast
from dataclasses import dataclass

import cv2
import numpy as np
import supervision as sv


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square model input: ``model = image * scale + pad``."""

    scale: float
    pad: tuple[float, float]
    size: tuple[int, int]
    """Original ``(width, height)``."""


def letterbox(image: np.ndarray, imgsz: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``imgsz`` x ``imgsz`` with grey 114 (BGR uint8 out)."""
    h, w = image.shape[:2]
    scale = min(imgsz / w, imgsz / h)
    nw, nh = round(w * scale), round(h * scale)
    px, py = (imgsz - nw) / 2, (imgsz - nh) / 2
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
    top, left = int(round(py - 0.1)), int(round(px - 0.1))
    out = cv2.copyMakeBorder(
        resized, top, imgsz - nh - top, left, imgsz - nw - left, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    return out, Letterbox(scale, (float(left), float(top)), (w, h))


def to_tensor(letterboxed: list[np.ndarray]) -> np.ndarray:
    """Stack BGR uint8 squares into the model's float32 NCHW RGB [0, 1] input."""
    batch = np.stack(letterboxed)[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def letterbox_batch(images: list[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox every image and build the model input tensor."""
    boxed = [letterbox(im, imgsz) for im in images]
    return to_tensor([b[0] for b in boxed]), [b[1] for b in boxed]


def postprocess(
    output: np.ndarray,
    boxes: list[Letterbox],
    class_names: list[str],
    confidence: float,
    iou: float,
    max_det: int = 300,
) -> list[sv.Detections]:
    """Decode Ultralytics ``(batch, 4 + classes, anchors)`` output into per-image Detections.

    Class-aware NMS, boxes mapped back to the original image and clipped to it.
    """
    results = []
    names = np.asarray(class_names, dtype=object)
    for pred, lb in zip(output, boxes):
        pred = pred.T  # anchors x (4 + nc)
        scores = pred[:, 4:]
        class_id = scores.argmax(axis=1)
        conf = scores[np.arange(len(scores)), class_id]
        keep = conf >= confidence
        pred, class_id, conf = pred[keep], class_id[keep], conf[keep]
        if len(pred) == 0:
            results.append(_empty())
            continue
        cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(
            np.stack([xyxy[:, 0], xyxy[:, 1], w, h], axis=1).tolist(), conf.tolist(), class_id.tolist(), confidence, iou
        )
        idx = np.asarray(idx, dtype=int).reshape(-1)[:max_det]
        xyxy, conf, class_id = xyxy[idx], conf[idx], class_id[idx]
        xyxy = (xyxy - np.array([*lb.pad, *lb.pad])) / lb.scale
        xyxy = np.clip(xyxy, 0, [lb.size[0], lb.size[1], lb.size[0], lb.size[1]])
        results.append(
            sv.Detections(
                xyxy=xyxy.astype(np.float32),
                confidence=conf.astype(np.float32),
                class_id=class_id.astype(int),
                data={"class_name": names[class_id].astype(str)},
            )
        )
    return results


def _empty() -> sv.Detections:
    d = sv.Detections.empty()
    d.data["class_name"] = np.array([], dtype=str)
    return d


def class_names_from_metadata(meta: dict[str, str]) -> list[str]:
    """Read Ultralytics' ``names`` metadata (``"{0: 'person', ...}"``) as an ordered list."""
    if "names" not in meta:
        raise ValueError("the ONNX model has no 'names' metadata; export it with Ultralytics")
    names = ast.literal_eval(meta["names"])
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


class Detector(abc.ABC):
    """A batch object detector. Implementations must be safe to call from one thread at a time
    per instance, unless they say otherwise."""

    class_names: list[str]
    backend: str = "unknown"
    """Backend name shown to users (``onnxruntime``, ``redis``...)."""
    precision: str = ""
    """Numeric precision in use (``fp32``, ``bf16``...); ``""`` when the backend does not say."""
    health: str = "unknown"
    """``"up"``, ``"down"`` or ``"unknown"``: set by backends that watch a server."""
    confidence: float = 0.25
    iou: float = 0.5

    @abc.abstractmethod
    def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        """One Detections per image, in that image's pixel coordinates."""

    def stats(self) -> dict[str, float]:
        """Backend counters for observers (empty by default)."""
        return {}

    def set_thresholds(self, confidence: float, iou: float) -> None:
        """Change the confidence and NMS thresholds live (a config change)."""
        self.confidence, self.iou = confidence, iou

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
