"""Face recognition options (the ``trakr.faces`` section); see docs/faces.md.

Faces are off by default: a camera turns them on with ``"faces": true`` and an ROI (or the
camera's ``Detection``) lists a face trigger, ``unknown_face`` or ``face:<name>``.

Example:
    >>> o = FaceOptions()
    >>> o.accept_noncommercial_models, o.min_face_px, o.threshold
    (False, 40, 0.4)
    >>> is_face_trigger("face:Asha Rao"), is_face_trigger("unknown_face"), is_face_trigger("person")
    (True, True, False)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNKNOWN_FACE = "unknown_face"
FACE_PREFIX = "face:"


def is_face_trigger(trigger: str) -> bool:
    """Whether ``trigger`` is one the face stage produces."""
    return trigger == UNKNOWN_FACE or trigger.startswith(FACE_PREFIX)


class FaceOptions(BaseModel):
    """Face detection, embedding and matching (used only by cameras with ``faces: true``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    accept_noncommercial_models: bool = Field(
        False,
        description="Acknowledge that the bundled insightface models are for non-commercial research only.",
    )
    detector_model: str | None = Field(
        None, description="Own SCRFD-format face detector ONNX (5 keypoints); default: bundled SCRFD-500M."
    )
    embedder_model: str | None = Field(
        None, description="Own ArcFace-format embedder ONNX (N x 3 x 112 x 112); default: bundled MobileFaceNet."
    )
    gallery_path: str | None = Field(None, description="SQLite file of enrolled faces; default '<output>/faces.db'.")
    threshold: float = Field(0.4, ge=-1, le=1, description="Cosine similarity at or above which a face is named.")
    min_face_px: int = Field(
        40, ge=8, le=4096, description="Faces smaller than this (frame px) are skipped, not guessed."
    )
    detector_size: int = Field(320, ge=64, le=2048, description="Largest side of a person crop given to the detector.")
    detector_confidence: float = Field(0.5, ge=0, le=1, description="Minimum face detection score.")
    better_ratio: float = Field(
        1.3, ge=1, le=10, description="Look at a named person again only when their box grew this much."
    )
    retry_s: float = Field(1.0, gt=0, le=3600, description="Least seconds between two looks at one person.")
    retry_max_s: float = Field(
        16.0, gt=0, le=86400, description="Looks that find no usable face back off up to this period."
    )
    min_sharpness: float = Field(
        20.0, ge=0, le=1e6, description="Faces blurrier than this (Laplacian variance of the aligned face) are skipped."
    )
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads of each face model.")
    keep_photos: bool = Field(False, description="Also store enrolment photos in the gallery (off: embeddings only).")
    reload_s: float = Field(
        5.0, gt=0, le=3600, description="Re-read the gallery this often (enrolments while running)."
    )

    @field_validator("detector_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("must be a multiple of 32")
        return v
