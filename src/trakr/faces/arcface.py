"""ArcFace embedder (insightface's ONNX export, e.g. MobileFaceNet ``w600k_mbf``).

Each face is aligned to the standard 112 x 112 ArcFace template by a similarity transform
(rotation, uniform scale, shift) fitted to its 5 keypoints, normalised ((x - 127.5) / 127.5, RGB)
and embedded; the 512 values are scaled to unit length, so cosine similarity is a dot product.

Example:
    >>> import cv2
    >>> from trakr.faces.models import bundled_photo
    >>> from trakr.faces.scrfd import ScrfdDetector
    >>> img = cv2.imread(str(bundled_photo("gdp.jpg")))
    >>> faces = ScrfdDetector(input_size=640).detect(img)
    >>> emb, aligned = ArcFaceEmbedder().embed(img, faces.data["keypoints"])
    >>> emb.shape, aligned.shape, round(float((emb[0] @ emb[0])), 3)
    ((5, 512), (5, 112, 112, 3), 1.0)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from trakr.faces.models import BUNDLED_EMBEDDER, FaceEmbedder, FaceModelError, bundled_model, file_id, unit_rows
from trakr.inference.onnx import open_session

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
"""Where ArcFace expects the eyes, nose tip and mouth corners in a 112 x 112 face."""
SIZE = 112


def align(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The 112 x 112 face whose 5 ``keypoints`` (in ``image`` px) best match :data:`TEMPLATE`.

    >>> face = align(np.zeros((200, 200, 3), np.uint8), TEMPLATE + 40)
    >>> face.shape
    (112, 112, 3)
    """
    m, _ = cv2.estimateAffinePartial2D(np.asarray(keypoints, np.float32), TEMPLATE, method=cv2.LMEDS)
    if m is None:  # degenerate keypoints (all on one spot): plain crop around them
        x, y = np.asarray(keypoints, np.float32).mean(axis=0)
        m = np.array([[1, 0, SIZE / 2 - x], [0, 1, SIZE / 2 - y]], np.float32)
    return cv2.warpAffine(image, m, (SIZE, SIZE), borderValue=(0, 0, 0))


class ArcFaceEmbedder(FaceEmbedder):
    """ArcFace-format ONNX model (N x 3 x 112 x 112 in, N x D out), run by ONNX Runtime."""

    name = "arcface"

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, providers: list[str] | None = None):
        self.model_path = Path(model_path) if model_path else bundled_model(BUNDLED_EMBEDDER)
        if not self.model_path.is_file():
            raise FaceModelError(f"face embedder model not found: {self.model_path}")
        self.session = open_session(self.model_path, threads, providers)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3 or inp.shape[2:] != [SIZE, SIZE]:
            raise FaceModelError(
                f"{self.model_path.name}: expected an ArcFace model with input N x 3 x 112 x 112, got {inp.shape}"
            )
        self.input_name = inp.name
        out = self.session.get_outputs()[0]
        # an export declaring a batch of 1 (insightface's does) runs one face at a time
        self.batch_fixed = isinstance(inp.shape[0], int) or (bool(out.shape) and out.shape[0] == 1)
        self.model_id = file_id(self.model_path)

    def embed(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kps = np.asarray(keypoints, np.float32).reshape(-1, 5, 2)
        if not len(kps):
            return np.zeros((0, 0), np.float32), np.zeros((0, SIZE, SIZE, 3), np.uint8)
        faces = np.stack([align(image, k) for k in kps])
        blob = cv2.dnn.blobFromImages(list(faces), 1.0 / 127.5, (SIZE, SIZE), (127.5, 127.5, 127.5), swapRB=True)
        if self.batch_fixed:
            out = np.concatenate(
                [self.session.run(None, {self.input_name: blob[i : i + 1]})[0] for i in range(len(blob))]
            )
        else:
            out = self.session.run(None, {self.input_name: blob})[0]
        return unit_rows(out.reshape(len(kps), -1)), faces
