"""Options of the PPE second looks (the ``trakr.ppe`` config section; see docs/ppe.md).

Example:
    >>> o = PpeOptions.model_validate({"hold_frames": 2, "regions": {"Hard-Hat": [0, -0.2, 1, 0.25]}})
    >>> o.region_of("hardhat"), o.region_of("helmet"), o.region_of("vest"), o.region_of("gloves")
    ((0.0, -0.2, 1.0, 0.25), (0.0, -0.15, 1.0, 0.3), (0.0, 0.2, 1.0, 0.65), (0.0, 0.0, 1.0, 1.0))
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Region = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` as fractions of the person box (0, 0 = its top-left corner; -1..2, so a
region may reach outside the box)."""

DEFAULT_REGIONS: dict[str, Region] = {
    "helmet": (0.0, -0.15, 1.0, 0.3),
    "hardhat": (0.0, -0.15, 1.0, 0.3),
    "mask": (0.15, 0.0, 0.85, 0.3),
    "goggles": (0.15, 0.0, 0.85, 0.25),
    "vest": (0.0, 0.2, 1.0, 0.65),
    "safetyvest": (0.0, 0.2, 1.0, 0.65),
    "safetyharness": (0.0, 0.15, 1.0, 0.7),
    "harness": (0.0, 0.15, 1.0, 0.7),
    "shoe": (0.0, 0.85, 1.0, 1.0),
    "shoes": (0.0, 0.85, 1.0, 1.0),
    "boots": (0.0, 0.85, 1.0, 1.0),
}
"""Body region looked at per item when ``ppe.regions`` does not name it; others: the whole box.
A helmet's region reaches above the box: person boxes often stop at the top of the helmet."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CropClassifierOptions(_Options):
    """A person-crop image classifier (two-stage PPE): any ONNX classifier with class names."""

    model_path: str = Field(description="ONNX image classifier; input NCHW, output (N, classes) scores.")
    labels_path: str | None = Field(
        None, description="Text file with one class name per line; default: the model's 'names' metadata."
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Classifier label -> trigger(s) ('nohelmet:novest'); merged over detector.class_aliases.",
    )
    interval_s: float = Field(
        3.0, ge=0, le=3600, description="Classify each tracked person at most this often (verdict cached between)."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="A label counts when its score is at least this.")
    multi_label: bool = Field(
        False, description="Every label over min_score counts (sigmoid outputs); else only the best one."
    )
    softmax: Literal["auto", "yes", "no"] = Field(
        "auto", description="Softmax the outputs: 'auto' when they are not already probabilities."
    )
    imgsz: tuple[int, int] | None = Field(
        None, description="Input (height, width) when the model does not fix it; default (224, 224)."
    )
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="Subtracted per RGB channel (0..1 scale).")
    std: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="Divided per RGB channel after the mean.")
    bgr: bool = Field(False, description="Feed BGR instead of RGB channel order.")
    pad: float = Field(0.05, ge=0, le=1, description="Crop margin around the person box, fraction of its size.")
    threads: int = Field(1, ge=0, le=256, description="ONNX Runtime intra-op threads (0 = all cores).")


class PpeOptions(_Options):
    """PPE from positive-class models (association) and person-crop classifiers (docs/ppe.md)."""

    person_class: str = Field("person", description="Class (after aliases) of the people who are checked.")
    association: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Derive no<item> from persons without an <item> box: 'auto' when the model emits <item> "
        "but not no<item>.",
    )
    regions: dict[str, Region] = Field(
        default_factory=dict, description="Body region per item as (x0, y0, x1, y1) fractions of the person box."
    )
    min_overlap: float = Field(
        0.3,
        gt=0,
        le=1,
        description="An item box is worn when its overlap with the region is this share of the smaller of both.",
    )
    min_confidence: dict[str, float] = Field(
        default_factory=dict, description="Per class (person or item): rows under this are not used by PPE rules."
    )
    min_person_height_px: float = Field(
        32.0, ge=0, le=10000, description="Persons shorter than this (px) are too small to judge."
    )
    hold_frames: int = Field(
        3, ge=1, le=1000, description="A violation is reported after this many consecutive analysed frames."
    )
    forget_s: float = Field(10.0, gt=0, le=3600, description="Forget a track's PPE state after this long unseen.")
    classifier: CropClassifierOptions | None = Field(None, description="Two-stage: a person-crop classifier.")

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: dict[str, Region]) -> dict[str, Region]:
        for item, (x0, y0, x1, y1) in value.items():
            if not (-1 <= x0 < x1 <= 2 and -1 <= y0 < y1 <= 2):
                raise ValueError(
                    f"regions.{item}: need -1 <= x0 < x1 <= 2 and -1 <= y0 < y1 <= 2, got {[x0, y0, x1, y1]}"
                )
        return value

    def region_of(self, item: str) -> Region:
        """The body region of ``item``: configured, else :data:`DEFAULT_REGIONS`, else the whole box."""
        from trakr.inference.classes import normalise

        mine = {normalise(k): v for k, v in self.regions.items()}
        key = normalise(item)
        r = mine.get(key) or DEFAULT_REGIONS.get(key) or (0.0, 0.0, 1.0, 1.0)
        return tuple(float(v) for v in r)  # type: ignore[return-value]
