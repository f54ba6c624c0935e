"""ROI editing on the config file itself, in its legacy format.

:func:`editor_model` turns one camera of a config into what the editor draws: every zone (the
camera polygon and each ``roi_config`` entry) with normalised points, its triggers and, for a
known frame size, whether it lies outside the frame. :func:`apply_edit` writes an edit back into
the raw JSON document: points as normalised ``"x,y"`` strings, triggers as ``"a:b"``, the legacy
``roi_config.roi_config`` nesting and every key trakr does not know kept as they were.
:func:`save_config_file` writes it atomically and keeps the previous file as ``<file>.prev``.

Example:
    >>> raw = {"common": {}, "cameras": [{"CameraId": 1, "Address": "0", "Detection": "person",
    ...        "vendor_key": 7, "roi_config": {"roi_config": {"gate": {"points": "NA", "detections": "car"}}}}]}
    >>> edit = RoiEdit(camera=ZoneEdit(points=None, triggers=["person"]),
    ...                rois=[ZoneEdit(name="door", points=[(0, 0.5), (0.5, 0.5), (0.5, 1)], triggers=["person"])])
    >>> new, problems = apply_edit(raw, 1, edit)
    >>> problems, new["cameras"][0]["roi_config"], new["cameras"][0]["vendor_key"]
    ([], {'roi_config': {'door': {'points': ['0,0.5', '0.5,0.5', '0.5,1'], 'detections': 'person'}}}, 7)
    >>> apply_edit(raw, 1, RoiEdit(camera=ZoneEdit(points=[(0, 0), (1.2, 0), (1, 1)])))[1][0].message
    'point 2 (1.2, 0) lies outside the frame (x and y must be between 0 and 1)'
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from trakr.config import CameraConfig, Problem
from trakr.evidence import write_atomic


class ZoneEdit(BaseModel):
    """One polygon as the editor sends it."""

    name: str | None = Field(None, description="ROI name; None for the camera-wide polygon.")
    points: list[tuple[float, float]] | None = Field(
        None, description="Normalised (0..1) points; None = the whole frame."
    )
    triggers: list[str] = Field(default_factory=list, description="Trigger class names, e.g. ['person', 'car'].")
    speaker_ip: str | None = Field(None, description="Speaker that announces this ROI (ROIs only).")


class LineEdit(BaseModel):
    """One counting line as the editor sends it."""

    name: str = Field(description="Line name (a key of the camera's 'lines').")
    points: list[tuple[float, float]] = Field(description="Two normalised (0..1) points A, B.")
    triggers: list[str] = Field(default_factory=list, description="Classes that count, e.g. ['person'].")
    direction: str | None = Field(None, description="'in', 'out' or 'both'; None keeps the file's value.")


class RoiEdit(BaseModel):
    """A whole camera's zones: what the editor saves."""

    camera: ZoneEdit = Field(default_factory=ZoneEdit, description="The camera-wide polygon and its triggers.")
    rois: list[ZoneEdit] = Field(default_factory=list, description="Named ROIs (replace the camera's roi_config).")
    lines: list[LineEdit] | None = Field(
        None, description="Counting lines (replace the camera's 'lines'); None leaves them as they are."
    )
    config_sha: str | None = Field(
        None, description="The config_sha the editor was opened with; a changed file is refused."
    )


def _num(v: float) -> str:
    """A normalised coordinate as the legacy files write it, 4 decimals at most.

    >>> _num(0.33), _num(1.0), _num(0.0), _num(0.123456)
    ('0.33', '1', '0', '0.1235')
    """
    s = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def point_strings(points: list[tuple[float, float]]) -> list[str]:
    return [f"{_num(x)},{_num(y)}" for x, y in points]


def normalised(points: list[tuple[float, float]] | None, size: tuple[int, int] | None) -> list[list[float]] | None:
    """Points scaled to 0..1: normalised points as they are, pixel points divided by ``size``
    (pixel points without a known frame size cannot be shown and give ``None``)."""
    if not points:
        return None
    arr = np.asarray(points, dtype=float)
    if arr.max() > 1.0:
        if size is None:
            return None
        arr = arr / np.asarray(size, dtype=float)
    return arr.round(5).tolist()


def outside_problem(points: list[tuple[float, float]] | None, size: tuple[int, int] | None) -> str | None:
    """Why a configured polygon cannot work on frames of ``size``, or ``None``.

    >>> outside_problem([(1046, 280), (796, 191), (957, 90)], (768, 576))
    'the polygon lies entirely outside the 768x576 frame: its rule never fires'
    >>> outside_problem([(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)], (768, 576)) is None
    True
    """
    if not points or size is None:
        return None
    arr = np.asarray(points, dtype=float)
    if arr.max() <= 1.0:
        return None
    w, h = size
    out = (arr[:, 0] > w) | (arr[:, 1] > h)
    if out.all() or arr[:, 0].min() >= w or arr[:, 1].min() >= h:
        return f"the polygon lies entirely outside the {w}x{h} frame: its rule never fires"
    if out.any():
        return f"{int(out.sum())} of {len(arr)} points lie outside the {w}x{h} frame"
    return None


def editor_model(cam: CameraConfig, size: tuple[int, int] | None) -> dict:
    """One camera's zones for the editor (and for the grid's warnings)."""

    def zone(name, points, triggers, speaker=None, field_name=""):
        return {
            "name": name,
            "field": field_name,
            "points": normalised(points, size),
            "pixel_points": bool(points) and bool(float(np.asarray(points).max()) > 1.0),
            "triggers": list(triggers),
            "speaker_ip": speaker,
            "problem": outside_problem(points, size),
        }

    cam_field = "points" if cam.points else ("ROI" if cam.roi else "points")
    zones = [zone(None, cam.polygon, cam.detection, field_name=cam_field)]
    for name, roi in cam.roi_config.items():
        zones.append(zone(name, roi.points, roi.detections, roi.speaker_ip, f"roi_config.{name}.points"))
    lines = []
    for name, line in (getattr(cam, "lines", None) or {}).items():  # counting lines, where the config has them
        pts = list(getattr(line, "points", None) or [])
        lines.append(
            {
                "name": name,
                "field": f"lines.{name}.points",
                "points": normalised(pts, size),
                "pixel_points": bool(pts) and bool(float(np.asarray(pts).max()) > 1.0),
                "triggers": list(getattr(line, "detections", [])),
                "direction": getattr(line, "direction", None),
                "problem": outside_problem(pts, size),
            }
        )
    return {
        "camera_id": cam.camera_id,
        "name": cam.name,
        "frame_size": list(size) if size else None,
        "zones": zones,
        "lines": lines,
    }


def _check_zone(where: str, field_name: str, z: ZoneEdit) -> list[Problem]:
    if z.points is None:
        return []
    if len(z.points) < 3:
        return [
            Problem(
                where, field_name, point_strings(z.points), f"a polygon needs at least 3 points, got {len(z.points)}"
            )
        ]
    for i, (x, y) in enumerate(z.points, 1):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return [
                Problem(
                    where,
                    field_name,
                    point_strings(z.points),
                    f"point {i} ({x:g}, {y:g}) lies outside the frame (x and y must be between 0 and 1)",
                )
            ]
    return []


def _same_points(old: Any, new: list[tuple[float, float]] | None, tol: float = 5e-5) -> bool:
    """True when the file's ``old`` normalised points are ``new`` (as the editor rounds them).

    >>> _same_points(["0.08435952663421631,0.8030841026777102", "0,0", "1,1"], [(0.08436, 0.80308), (0, 0), (1, 1)])
    True
    >>> _same_points(["10,20", "30,40", "50,60"], [(10, 20), (30, 40), (50, 60)])  # pixels: rewritten
    False
    """
    if not isinstance(old, list) or not new or len(old) != len(new):
        return False
    try:
        arr = np.array([[float(v) for v in str(p).split(",")] for p in old])
    except ValueError:
        return False
    if arr.shape != (len(new), 2) or arr.max() > 1.0:
        return False
    return bool(np.abs(arr - np.asarray(new, dtype=float)).max() <= tol)


def _check_line(where: str, line: LineEdit) -> list[Problem]:
    field_name = f"lines.{line.name}.points"
    pts = point_strings(line.points)
    if len(line.points) != 2 or line.points[0] == line.points[1]:
        return [Problem(where, field_name, pts, f"a line needs exactly 2 distinct points, got {len(line.points)}")]
    for i, (x, y) in enumerate(line.points, 1):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            msg = f"point {i} ({x:g}, {y:g}) lies outside the frame (x and y must be between 0 and 1)"
            return [Problem(where, field_name, pts, msg)]
    if line.direction not in (None, "in", "out", "both"):
        return [Problem(where, f"lines.{line.name}.direction", line.direction, "must be 'in', 'out' or 'both'")]
    return []


def _triggers(ts: list[str]) -> str:
    return ":".join(t.strip() for t in ts if t.strip())


def apply_edit(raw: dict, camera_id: int, edit: RoiEdit, camera_list: str = "cameras") -> tuple[dict, list[Problem]]:
    """``raw`` with camera ``camera_id``'s zones replaced by ``edit``; problems with the edit.

    The input is not modified. Unknown keys of the camera and of kept ROIs are preserved.
    """
    where = f"camera {camera_id}"
    problems = _check_zone(where, "points", edit.camera)
    names: set[str] = set()
    for z in edit.rois:
        name = (z.name or "").strip()
        if not name:
            problems.append(Problem(where, "roi_config", z.name, "every ROI needs a name"))
            continue
        if name in names:
            problems.append(Problem(where, f"roi_config.{name}", name, "two ROIs have this name"))
        names.add(name)
        problems += _check_zone(where, f"roi_config.{name}.points", z)
    line_names: set[str] = set()
    for line in edit.lines or []:
        if not line.name.strip():
            problems.append(Problem(where, "lines", line.name, "every line needs a name"))
            continue
        if line.name in line_names:
            problems.append(Problem(where, f"lines.{line.name}", line.name, "two lines have this name"))
        line_names.add(line.name)
        problems += _check_line(where, line)
    new = copy.deepcopy(raw)
    cams = new.get(camera_list)
    cam = next(
        (c for c in cams or [] if isinstance(c, dict) and str(c.get("CameraId")) == str(camera_id)),
        None,
    )
    if cam is None:
        problems.append(Problem(where, "CameraId", camera_id, f"no such camera in the config's {camera_list} list"))
        return new, problems
    if problems:
        return new, problems
    # camera-wide polygon: write where the file keeps it (points wins over ROI, as in the loader)
    has = [k for k in ("points", "ROI") if cam.get(k) not in (None, "NA", "Na", "", [])]
    if not edit.camera.points:
        for k in has:
            cam[k] = "NA"
    elif not _same_points(cam.get(has[0] if has else "points"), edit.camera.points):
        cam[has[0] if has else "points"] = point_strings(edit.camera.points)
    if edit.camera.triggers or "Detection" in cam:
        cam["Detection"] = _triggers(edit.camera.triggers) or "NA"
    # named ROIs, in the file's nesting style (the legacy doubly nested one when new)
    holder = cam.get("roi_config")
    nested = not isinstance(holder, dict) or set(holder) == {"roi_config"}
    old = (holder.get("roi_config") if nested else holder) if isinstance(holder, dict) else None
    old = old if isinstance(old, dict) else {}
    rois: dict = {}
    for z in edit.rois:
        name = (z.name or "").strip()
        entry = dict(old.get(name) or {}) if isinstance(old.get(name), dict) else {}
        if not _same_points(entry.get("points"), z.points):  # untouched polygons keep their text
            entry["points"] = point_strings(z.points) if z.points else "NA"
        if z.speaker_ip is not None or "speaker_ip" in entry:
            entry["speaker_ip"] = (z.speaker_ip or "").strip() or "NA"
        entry["detections"] = _triggers(z.triggers) or "NA"
        rois[name] = entry
    cam["roi_config"] = {"roi_config": rois} if nested else rois
    if edit.lines is not None and (edit.lines or "lines" in cam):
        found = cam.get("lines")
        old_lines: dict = found if isinstance(found, dict) else {}
        lines: dict = {}
        for line in edit.lines:
            kept = old_lines.get(line.name)
            entry = dict(kept) if isinstance(kept, dict) else {}
            if not _same_points(entry.get("points"), line.points):
                entry["points"] = point_strings(line.points)
            entry["detections"] = _triggers(line.triggers) or "person"
            if line.direction is not None:
                entry["direction"] = line.direction
            lines[line.name.strip()] = entry
        cam["lines"] = lines
    return new, problems


def config_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def prev_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save_config_file(path: Path, raw: dict) -> bytes:
    """Write ``raw`` to ``path`` atomically; the file it replaces is kept as ``<file>.prev``."""
    data = (json.dumps(raw, indent=4, ensure_ascii=False) + "\n").encode()
    if path.exists():
        write_atomic(prev_path(path), path.read_bytes())
    write_atomic(path, data)
    return data
