"""Config models of tracking and events: global ``trakr.events`` options and per-camera rules.

All of it is optional; a legacy config without these keys keeps working unchanged. Per camera,
next to the legacy keys (see ``docs/events.md``)::

    "lines":       {"gate": {"points": ["0.1,0.5", "0.9,0.5"], "detections": "person", "direction": "in"}},
    "dwell":       {"loiter": {"roi": "walkway", "seconds": 30, "detections": "person"}},
    "occupancy":   {"crowd": {"roi": "walkway", "max_objects": 3, "detections": "person"}},
    "calibration": {"image_points": ["0.1,0.9", "0.9,0.9", "0.7,0.4", "0.3,0.4"],
                    "world_points": [[0, 0], [8, 0], [8, 20], [0, 20]]},
    "sd_min_m": 1.5

Example:
    >>> r = DwellRule.model_validate({"roi": "walkway", "seconds": "30", "detections": "person:car"})
    >>> r.seconds, r.detections
    (30.0, ['person', 'car'])
    >>> LineRule.model_validate({"points": ["0,0.5", "1,0.5"]}).direction
    'both'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _points(value: Any) -> Any:
    """``"x,y"`` strings (or pairs) as float pairs; the legacy parser lives in trakr.config."""
    from trakr.config import _parse_point  # late: trakr.config imports this module

    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of 'x,y' points, got {value!r}")
    return [_parse_point(p) if isinstance(p, str) else tuple(map(float, p)) for p in value]


def _triggers(value: Any) -> Any:
    from trakr.config import _parse_triggers

    return _parse_triggers(value)


Points = Annotated[list[tuple[float, float]], BeforeValidator(_points)]
"""Image points, normalised (all <= 1) or pixels, as ``"x,y"`` strings or pairs."""
Classes = Annotated[list[str], BeforeValidator(_triggers)]
"""Colon-separated class names, e.g. ``"person:car"``."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LineRule(_Options):
    """A counting line: alert when an object of these classes crosses it in this direction."""

    points: Points = Field(description="Two points A, B; 'in' is crossing from the right of A->B to its left.")
    detections: Classes = Field(default_factory=lambda: ["person"], description="Classes that count.")
    direction: Literal["in", "out", "both"] = Field("both", description="Which crossings alert.")

    @field_validator("points")
    @classmethod
    def _two(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(v) != 2 or v[0] == v[1]:
            raise ValueError(f"a line needs exactly 2 distinct points, got {len(v)}")
        return v


class DwellRule(_Options):
    """Loitering: alert when one object stays inside an ROI longer than ``seconds``."""

    roi: str | None = Field(None, description="Name of a roi_config entry; None = the camera's own zone.")
    seconds: float = Field(gt=0, description="Time inside (gaps shorter than grace_s included) before alerting.")
    detections: Classes = Field(default_factory=lambda: ["person"], description="Classes that count.")


class OccupancyRule(_Options):
    """Occupancy: alert when more than ``max_objects`` objects are inside an ROI at once."""

    roi: str | None = Field(None, description="Name of a roi_config entry; None = the camera's own zone.")
    max_objects: int = Field(ge=0, description="Alert when the count inside exceeds this.")
    detections: Classes = Field(default_factory=lambda: ["person"], description="Classes that count.")


class Calibration(_Options):
    """Ground-plane calibration: four image points and where they are on the ground, in metres."""

    image_points: Points = Field(description="4 image points (normalised or pixels) on the ground plane.")
    world_points: list[tuple[float, float]] = Field(description="The same 4 points as [x, y] in metres.")

    @model_validator(mode="after")
    def _four_and_proper(self) -> Calibration:
        for name, pts in (("image_points", self.image_points), ("world_points", self.world_points)):
            if len(pts) != 4:
                raise ValueError(f"{name} needs exactly 4 points, got {len(pts)}")
            a = np.asarray(pts, dtype=float)
            for i in range(4):  # no three points on one line, or the mapping is undefined
                p, q, r = np.delete(a, i, axis=0)
                (ux, uy), (vx, vy) = q - p, r - p
                if abs(ux * vy - uy * vx) < 1e-6 * max(1.0, float(np.ptp(a)) ** 2):
                    raise ValueError(f"{name} has three points on one line: {pts}")
        return self


class EventOptions(_Options):
    """Tracking and events (the ``trakr.events`` section); see docs/events.md."""

    enabled: bool = Field(True, description="Track objects and alert once per object and visit.")
    grace_s: float = Field(2.0, ge=0, description="An event ends when its object was out of it or lost this long.")
    min_frames: int = Field(1, ge=1, description="Analysed frames a rule must hold before its event starts.")
    confirm_frames: int = Field(
        2, ge=1, description="A track seen in fewer analysed frames than this starts no event (a one-frame ghost box)."
    )
    lost_s: float = Field(1.5, gt=0, description="The tracker keeps predicting a lost track this long.")
    match_iou: float = Field(0.1, gt=0, le=1, description="Minimum IoU between a track's prediction and a box.")
    relink_s: float = Field(8.0, ge=0, description="A new track may continue an object lost this recently.")
    relink_distance: float = Field(
        1.5, ge=0, description="... if it appears within this many object heights of where that object was heading."
    )
    relink_still_s: float = Field(
        15.0, ge=0, description="An object that stood still is re-found at the same place this long after it was lost."
    )
    edge_margin: float = Field(
        0.03, ge=0, le=0.5, description="... and not within this fraction of the frame of its edge (entries)."
    )
    vehicle_classes: list[str] = Field(
        default_factory=lambda: ["car", "truck", "bus", "motorcycle"],
        description="Classes tracked as one group: a van called car, then truck, keeps one identity.",
    )
    max_alerts_per_minute: int = Field(
        60, ge=0, description="Per-camera cap (0 = none); events over it alert late, when the cap frees up."
    )
