"""A person-crop image classifier: any ONNX classifier with class names, run on boxes of a frame.

Two-stage PPE (:mod:`trakr.rules.ppe`) crops each tracked person out of the frame (with a small
margin), resizes the crops to the model's input, and runs them as one batch per frame. The class
names come from the model's ``names`` metadata (Ultralytics ``yolo export`` of a ``-cls`` model
writes it) or from a labels file, one name per line. Outputs are scores per class: raw logits are
soft-maxed (``softmax="auto"`` does it when a score lies outside 0..1); sigmoid (multi-label)
outputs are used as they are. It is a local, in-process call (no network, no timeout needed).

Example:
    >>> import numpy as np, onnx, tempfile
    >>> from onnx import helper, TensorProto
    >>> g = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0)], "mean",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
    ...     [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n", 3])])
    >>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    >>> helper.set_model_props(m, {"names": "{0: 'red', 1: 'green', 2: 'blue'}"})
    >>> path = tempfile.mktemp(suffix=".onnx"); onnx.save(m, path)
    >>> clf = CropClassifier(path, pad=0.0)
    >>> img = np.zeros((100, 100, 3), np.uint8); img[:, 50:] = (0, 0, 255)  # right half red (BGR)
    >>> scores = clf.classify(img, np.array([[50.0, 0, 100, 100], [0, 0, 50, 100]]))
    >>> clf.labels, scores.round(2).tolist()
    (['red', 'green', 'blue'], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from trakr.inference.base import class_names_from_metadata
from trakr.inference.onnx import open_session

log = logging.getLogger(__name__)

DEFAULT_SIZE = (224, 224)


def read_labels(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines and ``#`` comments skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def crop_boxes(boxes: np.ndarray, size: tuple[int, int], pad: float) -> np.ndarray:
    """``boxes`` (N x 4 xyxy) grown by ``pad`` of their width/height on each side, clipped to
    ``size=(w, h)``, as whole pixels.

    >>> crop_boxes(np.array([[10.0, 10, 30, 50]]), (35, 100), 0.5).tolist()
    [[0, 0, 35, 70]]
    """
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    grow = np.column_stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]) * pad
    out = np.column_stack([b[:, :2] - grow, b[:, 2:] + grow])
    out = np.round(out).astype(int)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, size[0])
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, size[1])
    return out


class CropClassifier:
    """An ONNX image classifier run on crops of one frame, batched (see the module docstring)."""

    def __init__(
        self,
        model_path: str | Path,
        labels_path: str | Path | None = None,
        *,
        imgsz: tuple[int, int] | None = None,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        bgr: bool = False,
        softmax: str = "auto",
        pad: float = 0.05,
        threads: int = 1,
    ):
        self.model_path = Path(model_path)
        self.session = open_session(self.model_path, threads)
        if labels_path:
            self.labels = read_labels(labels_path)
        else:
            meta = self.session.get_modelmeta().custom_metadata_map
            if "names" not in meta:
                raise ValueError(
                    f"crop classifier {self.model_path.name}: no 'names' metadata; give ppe.classifier.labels_path"
                )
            self.labels = class_names_from_metadata(meta)
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"crop classifier {self.model_path.name}: input {inp.name} is {shape}, expected NCHW")
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape[2:]]
        h, w = imgsz or DEFAULT_SIZE
        self.size = (fixed[0] or h, fixed[1] or w)
        """Input (height, width)."""
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        self.bgr, self.softmax, self.pad = bgr, softmax, pad
        self.runs = 0
        self.crops = 0
        """Model runs and crops classified so far (cost accounting)."""

    @classmethod
    def from_options(cls, opts) -> CropClassifier:  # noqa: ANN001 - trakr.rules.ppe_options.CropClassifierOptions
        return cls(
            opts.model_path,
            opts.labels_path,
            imgsz=opts.imgsz,
            mean=opts.mean,
            std=opts.std,
            bgr=opts.bgr,
            softmax=opts.softmax,
            pad=opts.pad,
            threads=opts.threads,
        )

    def tensor(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The NCHW float32 input for ``boxes`` of a BGR ``image``, and the crop boxes used."""
        h, w = self.size
        crops = crop_boxes(boxes, (image.shape[1], image.shape[0]), self.pad)
        batch = np.zeros((len(crops), h, w, 3), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(crops):
            if x1 > x0 and y1 > y0:
                batch[i] = cv2.resize(image[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR)
        if not self.bgr:
            batch = batch[..., ::-1]
        x = batch.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255.0)
        return np.ascontiguousarray((x - self.mean) / self.std), crops

    def classify(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Scores (N x classes) for the crops of ``boxes`` (N x 4 xyxy, frame px) in one run."""
        if len(boxes) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        x, _ = self.tensor(image, boxes)
        if self._fixed_batch and len(x) != self._fixed_batch:
            out = np.concatenate([self.session.run(None, {self._input: x[i : i + 1]})[0] for i in range(len(x))])
        else:
            out = self.session.run(None, {self._input: x})[0]
        self.runs += 1
        self.crops += len(x)
        out = np.asarray(out, np.float32).reshape(len(x), -1)
        if out.shape[1] != len(self.labels):
            raise ValueError(
                f"crop classifier {self.model_path.name} outputs {out.shape[1]} scores but has {len(self.labels)} labels"
            )
        if self.softmax == "yes" or (self.softmax == "auto" and (out.min() < 0 or out.max() > 1)):
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        return out
