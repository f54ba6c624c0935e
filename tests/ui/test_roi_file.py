"""ROI edits written into the seed's own config file: its legacy format kept (nesting, untouched
polygons byte for byte, unknown keys), the previous file kept, problems named by camera, field and
value, old errors of other cameras not blocking, and the change applied to the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trakr.config import parse_config
from trakr.pipeline import Pipeline
from trakr.ui.roi import LineEdit, RoiEdit, ZoneEdit, apply_edit, editor_model
from trakr.ui.state import ConsoleState, SaveError

SEED = Path(__file__).parent.parent / "data" / "sysconfig.seed.json"


@pytest.fixture
def seed_console(tmp_path):
    raw = json.loads(SEED.read_text())
    # an old error elsewhere in the list: camera 78 (negative CamDelay...) stays as it is
    raw["sample_cameras"].append(next(c for c in raw["cameras"] if c["CameraId"] == 78))
    path = tmp_path / "sysconfig.json"
    text = json.dumps(raw, indent=1)
    path.write_text(text)
    report = parse_config(raw, camera_list="sample_cameras")
    assert [p.where for p in report.errors] == ["camera 78"] * 3
    pipeline = Pipeline(report.config, output_dir=tmp_path / "out")  # not started
    state = ConsoleState(pipeline, config_path=path, camera_list="sample_cameras", on_config=[pipeline.apply_config])
    yield state, pipeline, path, raw, text
    state.events.close()


def _edit_from(model: dict, camera_points) -> RoiEdit:
    cam, *rois = model["zones"]
    return RoiEdit(
        camera=ZoneEdit(points=camera_points, triggers=cam["triggers"]),
        rois=[
            ZoneEdit(name=z["name"], points=z["points"], triggers=z["triggers"], speaker_ip=z["speaker_ip"])
            for z in rois
        ],
    )


def test_the_seed_camera_polygon_outside_the_frame_is_shown_refused_then_fixed(seed_console):
    state, pipeline, path, raw, text = seed_console
    cam1 = state.camera(1)
    model = editor_model(cam1, (768, 576))
    assert model["zones"][0]["problem"] == "the polygon lies entirely outside the 768x576 frame: its rule never fires"
    assert model["zones"][0]["pixel_points"] is True and model["zones"][0]["points"][0] == [1.36198, 0.48611]

    # saved as it is (what the editor holds before the user fixes it): refused, nothing written
    with pytest.raises(SaveError) as e:
        state.save_rois(1, _edit_from(model, model["zones"][0]["points"]))
    assert e.value.status == 422
    (p,) = e.value.problems
    assert (p.where, p.field) == ("camera 1", "points")
    assert "point 1 (1.36198, 0.48611) lies outside the frame" in str(p)
    assert path.read_text() == text

    result = state.save_rois(1, _edit_from(model, [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9)]))
    assert result["ok"] and "previous version kept as sysconfig.json.prev" in result["message"]
    new = json.loads(path.read_text())
    old_cam = next(c for c in raw["sample_cameras"] if c["CameraId"] == 1)
    cam = next(c for c in new["sample_cameras"] if c["CameraId"] == 1)
    assert cam["points"] == ["0.1,0.1", "0.9,0.1", "0.9,0.9"]
    assert cam["roi_config"] == old_cam["roi_config"]  # untouched ROIs: same strings, same nesting
    assert {k: v for k, v in cam.items() if k != "points"} == {k: v for k, v in old_cam.items() if k != "points"}
    assert new["common"] == raw["common"] and new["cameras"] == raw["cameras"]  # other sections as they were
    assert [c["CameraId"] for c in new["sample_cameras"]] == [c["CameraId"] for c in raw["sample_cameras"]]
    assert path.with_name("sysconfig.json.prev").read_text() == text
    assert next(c for c in pipeline.config.cameras if c.camera_id == 1).polygon == [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9)]


def test_roi_problems_are_named_by_camera_field_and_value(seed_console):
    state, _, path, _, text = seed_console
    two_doors = RoiEdit(
        rois=[
            ZoneEdit(name="door", points=[(0, 0), (0.5, 0), (0.5, 0.5)], triggers=["person"]),
            ZoneEdit(name="door", points=None, triggers=["car"]),
            ZoneEdit(name=" ", points=None, triggers=["car"]),
        ]
    )
    with pytest.raises(SaveError) as e:
        state.save_rois(0, two_doors)
    assert [str(p) for p in e.value.problems] == [
        "camera 0: roi_config.door = 'door': two ROIs have this name",
        "camera 0: roi_config = ' ': every ROI needs a name",
    ]
    with pytest.raises(SaveError) as e:
        state.save_rois(99, RoiEdit())
    assert str(e.value.problems[0]) == "camera 99: CameraId = 99: no such camera in the config's sample_cameras list"
    assert path.read_text() == text


def test_counting_lines_are_edited_in_the_cameras_lines_section():
    raw = {
        "common": {},
        "cameras": [
            {
                "CameraId": 1,
                "Address": "0",
                "Detection": "person",
                "lines": {"gate": {"points": ["0.1,0.5", "0.9,0.5"], "detections": "person", "direction": "in"}},
            }
        ],
    }
    model = editor_model(parse_config(raw).config.cameras[0], (640, 480))
    assert model["lines"] == [
        {
            "name": "gate",
            "field": "lines.gate.points",
            "points": [[0.1, 0.5], [0.9, 0.5]],
            "pixel_points": False,
            "triggers": ["person"],
            "direction": "in",
            "problem": None,
        }
    ]
    edit = RoiEdit(
        camera=ZoneEdit(points=None, triggers=["person"]),
        lines=[
            LineEdit(name="gate", points=[(0.1, 0.5), (0.9, 0.5)], triggers=["person", "car"]),
            LineEdit(name="exit", points=[(0.2, 0.2), (0.2, 0.8)], triggers=["person"], direction="out"),
        ],
    )
    new, problems = apply_edit(raw, 1, edit)
    assert problems == []
    assert new["cameras"][0]["lines"] == {
        "gate": {"points": ["0.1,0.5", "0.9,0.5"], "detections": "person:car", "direction": "in"},
        "exit": {"points": ["0.2,0.2", "0.2,0.8"], "detections": "person", "direction": "out"},
    }
    assert parse_config(new).ok
    _, problems = apply_edit(raw, 1, RoiEdit(lines=[LineEdit(name="x", points=[(0.1, 0.1)])]))
    assert [str(p) for p in problems] == [
        "camera 1: lines.x.points = ['0.1,0.1']: a line needs exactly 2 distinct points, got 1"
    ]
    untouched, _ = apply_edit(raw, 1, RoiEdit(camera=ZoneEdit(points=None, triggers=["person"])))  # lines=None
    assert untouched["cameras"][0]["lines"] == raw["cameras"][0]["lines"]
