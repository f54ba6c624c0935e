"""The face gallery: enrolled people as embeddings in SQLite, beside the outbox.

One row per enrolled sample: name, embedding (float32 bytes), the embedder that made it
(``model``: embeddings of different models are never compared), the photo's file name, and when
it was enrolled. Photos themselves are stored only with ``trakr.faces.keep_photos``. A person
is matched by the best cosine similarity over their samples.

:func:`enrol` checks every photo before it stores anything: a photo with no face of at least
``min_face_px``, or with several, is refused with its file name.

Example:
    >>> import tempfile, numpy as np
    >>> g = Gallery(tempfile.mkdtemp() + "/faces.db", model_id="m1")
    >>> g.add("Asha Rao", np.array([[1.0, 0.0]]), ["asha.jpg"])
    1
    >>> [(e.name, e.samples) for e in g.entries()]
    [('Asha Rao', 1)]
    >>> g.match(np.array([[0.8, 0.6], [0.0, 1.0]]), threshold=0.5)
    [('Asha Rao', 0.8), (None, 0.0)]
    >>> g.remove("Asha Rao"), g.entries()
    (1, [])
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trakr.faces.models import FaceDetector, FaceEmbedder, unit_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    embedding BLOB NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    enrolled_at REAL NOT NULL,
    photo BLOB
);
CREATE INDEX IF NOT EXISTS faces_name ON faces(name);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
"""


class EnrolError(ValueError):
    """A photo that cannot be enrolled (the message names the file)."""


@dataclass(frozen=True)
class Entry:
    """One enrolled person."""

    name: str
    samples: int
    first_enrolled: float
    last_enrolled: float
    other_model: int = 0
    """Samples made by another embedder (not matched: re-enrol them)."""


class Gallery:
    """Enrolled faces of one site (thread-safe; several processes may share the file)."""

    def __init__(self, path: str | Path, model_id: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._version = -1
        self._names = np.zeros(0, dtype=object)
        self._matrix = np.zeros((0, 0), np.float32)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def version(self) -> int:
        """Bumped by every change, by any process."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])

    def add(
        self, name: str, embeddings: np.ndarray, sources: Sequence[str], photos: Sequence[bytes | None] | None = None
    ) -> int:
        """Store ``embeddings`` (one row per sample) under ``name``; the number stored."""
        name = name.strip()
        if not name:
            raise ValueError("a face needs a name")
        emb = unit_rows(np.atleast_2d(embeddings))
        now = time.time()
        rows = [
            (name, self.model_id, e.astype(np.float32).tobytes(), str(src), now, (photos or [None] * len(emb))[i])
            for i, (e, src) in enumerate(zip(emb, sources))
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO faces (name, model, embedding, source, enrolled_at, photo) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key='version'")
            self._db.execute("COMMIT")
        return len(rows)

    def remove(self, name: str) -> int:
        """Delete every sample of ``name``; how many there were."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM faces WHERE name = ?", (name.strip(),)).rowcount
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key='version'")
            self._db.execute("COMMIT")
        return int(n)

    def entries(self) -> list[Entry]:
        """Everyone enrolled, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, SUM(model = ?), MIN(enrolled_at), MAX(enrolled_at), SUM(model != ?) "
                "FROM faces GROUP BY name ORDER BY name",
                (self.model_id, self.model_id),
            ).fetchall()
        return [Entry(r[0], int(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]

    def _load(self) -> None:
        version = self.version()
        if version == self._version:
            return
        with self._lock:
            rows = self._db.execute(
                "SELECT name, embedding FROM faces WHERE model = ? ORDER BY id", (self.model_id,)
            ).fetchall()
        self._names = np.array([r[0] for r in rows], dtype=object)
        self._matrix = (
            np.stack([np.frombuffer(r[1], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        )
        self._version = version

    def refresh(self) -> None:
        """Re-read the samples if the gallery changed (a ``trakr faces add`` while running)."""
        self._load()

    def match(self, embeddings: np.ndarray, threshold: float) -> list[tuple[str | None, float]]:
        """For each embedding: the best-matching name (``None`` below ``threshold``) and its similarity."""
        if self._version < 0:
            self._load()
        emb = unit_rows(np.atleast_2d(embeddings))
        if not len(self._names) or self._matrix.shape[1] != emb.shape[1]:
            return [(None, 0.0) for _ in emb]
        sims = emb @ self._matrix.T
        best = sims.argmax(axis=1)
        out: list[tuple[str | None, float]] = []
        for i, j in enumerate(best):
            s = float(sims[i, j])
            out.append((str(self._names[j]) if s >= threshold else None, round(s, 4)))
        return out


def read_photo(path: str | Path) -> np.ndarray:
    """A photo as BGR, or :class:`EnrolError` naming the file."""
    p = Path(path)
    data = np.fromfile(str(p), np.uint8) if p.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and len(data) else None
    if img is None:
        raise EnrolError(f"{p}: not a readable image")
    return img


def single_face(
    path: str | Path, detector: FaceDetector, embedder: FaceEmbedder, min_face_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """The embedding of the one face in the photo at ``path`` and the photo; else :class:`EnrolError`."""
    img = read_photo(path)
    faces = detector.detect(img)
    side = np.minimum(faces.xyxy[:, 2] - faces.xyxy[:, 0], faces.xyxy[:, 3] - faces.xyxy[:, 1])
    keep = side >= min_face_px
    big = np.asarray(faces.data["keypoints"])[keep]
    if len(big) == 0:
        smaller = f" ({len(faces)} smaller than {min_face_px} px)" if len(faces) else ""
        raise EnrolError(f"{path}: no face found{smaller}; enrol from photos with exactly one clear face")
    if len(big) > 1:
        raise EnrolError(f"{path}: {len(big)} faces found; enrol from photos with exactly one face")
    emb, _ = embedder.embed(img, big)
    return emb[0], img


def enrol(
    gallery: Gallery,
    name: str,
    photos: Sequence[str | Path],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    min_face_px: int = 40,
    keep_photos: bool = False,
) -> int:
    """Enrol ``name`` from ``photos`` (all checked first: one bad photo stores nothing)."""
    if not photos:
        raise EnrolError("no photos given")
    found = [single_face(p, detector, embedder, min_face_px) for p in photos]
    blobs = [Path(p).read_bytes() for p in photos] if keep_photos else None
    return gallery.add(name, np.stack([e for e, _ in found]), [Path(p).name for p in photos], blobs)
