"""SCRFD face detector (insightface's ONNX export with keypoints, e.g. SCRFD-500M ``bnkps``).

The model takes a normalised RGB image ((x - 127.5) / 128), any size that is a multiple of 32,
and returns for each stride 8, 16 and 32 (two anchors per cell): a score, a box as distances
(left, top, right, bottom) from the cell centre and 5 keypoints as offsets, all in stride units.
We decode that with numpy and keep the best box of each overlapping group (NMS).

Example:
    >>> import numpy as np, cv2
    >>> from trakr.faces.models import bundled_photo
    >>> det = ScrfdDetector(input_size=640)
    >>> faces = det.detect(cv2.imread(str(bundled_photo("gdp.jpg"))))  # 3 players, 2 faces far behind
    >>> len(faces), faces.data["keypoints"].shape
    (5, (5, 5, 2))
    >>> (faces.xyxy[:, 2] - faces.xyxy[:, 0] >= 40).sum()
    np.int64(3)
    >>> len(det.detect(np.zeros((64, 64, 3), np.uint8)))
    0
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.faces.models import BUNDLED_DETECTOR, FaceDetector, FaceModelError, bundled_model, empty_faces
from trakr.inference.onnx import open_session

STRIDES = (8, 16, 32)
ANCHORS = 2


class ScrfdDetector(FaceDetector):
    """SCRFD with keypoints, run by ONNX Runtime; boxes in the input image's pixels."""

    name = "scrfd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        input_size: int = 320,
        confidence: float = 0.5,
        iou: float = 0.4,
        threads: int = 1,
        providers: list[str] | None = None,
    ):
        self.model_path = Path(model_path) if model_path else bundled_model(BUNDLED_DETECTOR)
        if not self.model_path.is_file():
            raise FaceModelError(f"face detector model not found: {self.model_path}")
        self.session = open_session(self.model_path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        outs = [o.name for o in self.session.get_outputs()]
        if len(outs) != 9:
            raise FaceModelError(
                f"{self.model_path.name}: expected an SCRFD model with keypoints (9 outputs: scores, "
                f"boxes and keypoints at strides 8/16/32), got {len(outs)} outputs"
            )
        named = {f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES}
        self.outputs = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES] if set(outs) == named else outs
        self.input_size, self.confidence, self.iou = input_size, confidence, iou
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}

    def _anchor_centers(self, h: int, w: int, stride: int) -> np.ndarray:
        key = (h, w, stride)
        if key not in self._centers:
            ys, xs = np.mgrid[: h // stride, : w // stride]
            c = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            self._centers[key] = np.repeat(c, ANCHORS, axis=0)
        return self._centers[key]

    def detect(self, image: np.ndarray) -> sv.Detections:
        ih, iw = image.shape[:2]
        if ih < 8 or iw < 8:
            return empty_faces()
        size = self.input_size
        scale = min(size / iw, size / ih)
        # small crops are not blown up to the full input: the smallest multiple of 32 that holds them
        tw, th = round(iw * scale), round(ih * scale)
        cw, ch = -(-tw // 32) * 32, -(-th // 32) * 32
        canvas = np.zeros((ch, cw, 3), np.uint8)
        canvas[:th, :tw] = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (cw, ch), (127.5, 127.5, 127.5), swapRB=True)
        res = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, {self.input_name: blob})))
        out = [res[n] for n in self.outputs]
        boxes, scores, kps = [], [], []
        for i, stride in enumerate(STRIDES):
            s, b, k = (out[i + 3 * j] for j in range(3))
            s, b, k = (a[0] if a.ndim == 3 else a for a in (s, b, k))  # with or without a batch axis
            keep = np.flatnonzero(s[:, 0] >= self.confidence)
            if not len(keep):
                continue
            c = self._anchor_centers(ch, cw, stride)[keep]
            d = b[keep] * stride
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            kps.append(c[:, None, :] + k[keep].reshape(-1, 5, 2) * stride)
            scores.append(s[keep, 0])
        if not boxes:
            return empty_faces()
        xyxy = np.concatenate(boxes) / scale
        conf = np.concatenate(scores)
        points = np.concatenate(kps) / scale
        order = sv.box_non_max_suppression(np.concatenate([xyxy, conf[:, None]], axis=1), self.iou)
        xyxy, conf, points = xyxy[order], conf[order], points[order]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, iw)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, ih)
        return sv.Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=conf.astype(np.float32),
            data={"keypoints": points.astype(np.float32)},
        )
