"""Config loading: the legacy file as it is, every bad value reported with camera, field, value."""

import json
import os
from pathlib import Path

import pytest

from trakr.config import (
    CameraConfig,
    CommonConfig,
    TrakrOptions,
    load_config,
    parse_config,
    trigger_warnings,
)


@pytest.fixture(scope="module")
def seed_raw() -> dict:
    # The seed file is the legacy system's real format; the repository carries a copy so CI
    # does not depend on ../shared.
    return json.loads((Path(__file__).parent.parent / "data" / "sysconfig.seed.json").read_text())


def test_seed_sample_cameras_load_with_legacy_quirks(seed_raw):
    report = parse_config(seed_raw, camera_list="sample_cameras")
    assert report.ok, [str(p) for p in report.errors]
    cfg = report.config
    assert [c.camera_id for c in cfg.cameras] == [0, 1]
    cam0, cam1 = cfg.cameras
    assert cam0.detection == ["person", "car", "social_distancing"]
    assert cam0.polygon is None  # "NA" means whole frame
    assert set(cam0.roi_config) == {"ROI1", "ROI2", "ROI3", "ROI4", "ROI5"}  # roi_config.roi_config unnested
    assert cam0.roi_config["ROI5"].detections == ["social_distancing"]
    assert cam0.roi_config["ROI4"].speaker_ip is None
    assert cam0.roi_config["ROI1"].speaker_ip == "10.20.210.1"
    assert cam0.roi_config["ROI1"].points[0] == pytest.approx((0.08435952663421631, 0.8030841026777102))
    assert cam1.polygon == [(1046, 280), (796, 191), (957, 90), (1152, 154)]  # pixel points
    assert cfg.cam_delay(cam0) == 0.1
    assert cfg.common.cam_not_reachable_limit == 5 and cfg.common.batch_size == 2
    assert cfg.common.enable_alert is True and cfg.common.log_file_save is True
    assert cfg.common.audio_key["nohelmet"] == "m:1"


def test_seed_cameras_list_reports_each_bad_value(seed_raw):
    report = parse_config(seed_raw)
    lines = {str(p) for p in report.errors}
    assert "camera 78: CamDelay = -6: Input should be greater than or equal to 0" in lines
    assert "camera 78: ROI_crop_en = '3': Input should be less than or equal to 1" in lines
    assert "camera 78: train_time_pause = -6: Input should be greater than or equal to 0" in lines
    assert "camera 12: CamDelay = -7: Input should be greater than or equal to 0" in lines
    assert "camera 12: alert_time_pause = -4: Input should be greater than or equal to 0" in lines
    assert "camera 12: ROI_crop_en = -4: Input should be greater than or equal to 0" in lines
    assert any(line.startswith("camera 12: ROI = 'dggd'") for line in lines)
    assert not report.ok
    # Partial start: both cameras are left out, each with its own lines; common is fine.
    assert set(report.invalid_cameras) == {"78", "12"}
    assert "camera 78: CamDelay = -6: Input should be greater than or equal to 0" in report.invalid_cameras["78"]
    assert report.config is not None and report.config.cameras == []
    assert not report.fatal and not report.runnable  # nothing valid to run


def test_legacy_strings_and_flags():
    raw = {
        "common": {"workers": "3", "enableAlert": "false", "CamDelay": "2"},
        "cameras": [
            {
                "CameraId": "5",
                "Address": "0",
                "train_en": "true",
                "alert_en": 0,
                "alert_time_pause": "7.5",
                "sd_thresh_limit_x": "120",
            }
        ],
    }
    r = parse_config(raw)
    assert r.ok
    cam = r.config.cameras[0]
    assert cam.camera_id == 5 and cam.train_en is True and cam.alert_en is False
    assert cam.alert_time_pause == 7.5 and cam.sd_thresh_limit_x == 120
    assert r.config.common.workers == 3 and r.config.common.enable_alert is False
    assert r.config.cam_delay(cam) == 2.0  # falls back to common


def test_camera_flags_default_to_common():
    raw = {
        "common": {"save_all_inp_img": True},
        "cameras": [{"CameraId": 1, "Address": "0"}, {"CameraId": 2, "Address": "0", "save_all_inp_img": 0}],
    }
    cfg = parse_config(raw).config
    assert cfg.cam_flag(cfg.cameras[0], "save_all_inp_img") is True
    assert cfg.cam_flag(cfg.cameras[1], "save_all_inp_img") is False
    assert cfg.cameras[0].save_all_inp_img is True and cfg.cameras[1].save_all_inp_img is False


def test_bad_polygon_point_and_duplicate_id():
    raw = {
        "common": {},
        "cameras": [
            {"CameraId": 1, "Address": "0", "roi_config": {"A": {"points": ["0.1,0.1", "x,2", "0.3,0.3"]}}},
            {"CameraId": 2, "Address": "0"},
            {"CameraId": 2, "Address": "0"},
        ],
    }
    lines = [str(p) for p in parse_config(raw).errors]
    assert any(line.startswith("camera 1: roi_config.A.points") and "'x,2'" in line for line in lines)
    assert "camera 2: CameraId = 2: duplicate camera id" in lines


def test_unknown_trakr_option_is_an_error():
    r = parse_config({"common": {}, "cameras": [], "trakr": {"detector": {"imgsz": 300}}})
    assert [p.field for p in r.errors] == ["trakr.detector.imgsz"]


def test_trigger_the_model_cannot_produce_is_a_warning(seed_raw):
    cfg = parse_config(seed_raw, camera_list="sample_cameras").config
    warns = trigger_warnings(cfg, ["person", "car"])
    assert all(w.severity == "warning" for w in warns)
    assert any(w.value == "nohelmet" and w.where == "camera 0" for w in warns)
    assert not any(w.value in ("person", "car", "social_distancing") for w in warns)


def test_face_triggers_need_the_cameras_face_stage():
    def cam(cid, faces):
        roi = {"door": {"points": "NA", "detections": "person:face:Asha Rao:unknown_face"}}
        return {"CameraId": cid, "Address": "0", "faces": faces, "roi_config": roi}

    cfg = parse_config({"common": {}, "cameras": [cam(1, True), cam(2, False)]}).config
    warns = trigger_warnings(cfg, ["person", "car"])
    assert sorted((w.where, w.value) for w in warns) == [("camera 2", "face:Asha Rao"), ("camera 2", "unknown_face")]
    assert all('"faces": true' in w.message for w in warns)


def test_missing_file_and_bad_json(tmp_path):
    assert "file not found" in str(load_config(tmp_path / "nope.json").problems[0])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert "invalid JSON" in str(load_config(bad).problems[0])


# --------------------------------------------------------------------------- resolved per-camera values

COMMON_DEFAULTS = {"CamDelay": 2.5, "sav_vio_img": False, "save_all_detection": True, "save_all_inp_img": True}


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({}, {"cam_delay": 2.5, "sav_vio_img": False, "save_all_detection": True, "save_all_inp_img": True}),
        ({"CamDelay": 0}, {"cam_delay": 0.0}),  # an explicit 0 is not "unset"
        ({"CamDelay": None}, {"cam_delay": 2.5}),  # null and "NA" mean unset
        ({"CamDelay": "NA"}, {"cam_delay": 2.5}),
        ({"sav_vio_img": "true", "save_all_detection": 0}, {"sav_vio_img": True, "save_all_detection": False}),
        ({"ROI_crop_en": 0}, {"roi_crop_en": 0}),
    ],
)
def test_per_camera_values_are_resolved_from_common_at_parse_time(camera, expected):
    raw = {"common": {**COMMON_DEFAULTS, "ROI_crop_en": 1}, "cameras": [{"CameraId": 1, "Address": "0", **camera}]}
    cfg = parse_config(raw).config
    cam = cfg.cameras[0]
    for name, value in expected.items():
        assert getattr(cam, name) == value, name
    if "roi_crop_en" not in expected:
        assert cam.roi_crop_en == 1
    # the old string lookup still agrees with the resolved values
    assert cfg.cam_delay(cam) == cam.cam_delay
    for name in ("sav_vio_img", "save_all_detection", "save_all_inp_img", "roi_crop_en"):
        assert cfg.cam_flag(cam, name) == bool(getattr(cam, name))


# --------------------------------------------------------------------------- partial start


def _cam(cid, **kw):
    return {"CameraId": cid, "Address": "0", **kw}


def test_invalid_cameras_are_left_out_and_listed_the_others_run():
    raw = {
        "common": {},
        "cameras": [
            _cam(1),
            _cam(2, CamDelay=-1),
            {"Address": "0"},  # no id: keyed by its index
            _cam(3, ROI=[0.1, 0.2, 0.3]),
            _cam(1),  # duplicate of a valid camera
            "not a camera",
        ],
    }
    r = parse_config(raw)
    assert [c.camera_id for c in r.config.cameras] == [1]
    assert list(r.invalid_cameras) == ["2", "#2", "3", "#4", "#5"]
    assert r.invalid_cameras["2"] == ["camera 2: CamDelay = -1: Input should be greater than or equal to 0"]
    assert r.invalid_cameras["#2"] == ["camera #2: CameraId = None: Field required"]
    assert r.invalid_cameras["#4"] == ["camera 1: CameraId = 1: duplicate camera id"]
    assert r.runnable and not r.ok and not r.fatal
    assert {p.camera for p in r.errors} == set(r.invalid_cameras)


def test_invalid_camera_lines_are_redacted():
    r = parse_config({"common": {}, "cameras": [_cam(4, Address="rtsp://admin:hunter2@10.0.0.5/x", CamDelay=-1)]})
    assert r.invalid_cameras["4"] == ["camera 4: CamDelay = -1: Input should be greater than or equal to 0"]
    r = parse_config({"common": {}, "cameras": [_cam(4, Address="rtsp://admin:hunter2@10.0.0.5/x\n")]})
    assert "hunter2" not in " ".join(r.invalid_cameras["4"])
    assert "control character" in r.invalid_cameras["4"][0]


@pytest.mark.parametrize(
    ("raw", "runnable"),
    [
        ({"common": {}, "cameras": []}, True),  # nothing listed: runs idle (a push may add cameras)
        ({"common": {}, "cameras": [_cam(1, CamDelay=-1)]}, False),  # none valid
        ({"common": {"CamDelay": -1}, "cameras": [_cam(1)]}, False),  # common invalid: fatal
        ({"common": {}, "trakr": {"gate": {"width": 1}}, "cameras": [_cam(1)]}, False),  # trakr invalid
        ({"common": {}, "cameras": 5}, False),
    ],
)
def test_runnable_only_with_valid_sections_and_a_valid_camera(raw, runnable):
    assert parse_config(raw).runnable is runnable


# --------------------------------------------------------------------------- never a traceback

BAD_CAMERA_VALUES = [
    # (camera fields, field named in the problem, text in the line)
    ({"ROI": [0.1, 0.2, 0.3]}, "ROI", "point 0.1 is not 'x,y' or [x, y]"),
    ({"ROI": [True, False, True]}, "ROI", "point True is not 'x,y' or [x, y]"),
    ({"ROI": [[[1, 2]], [3, 4], [5, 6]]}, "ROI", "point [[1, 2]] is not 'x,y' or [x, y]"),
    ({"ROI": ["nan,1", "1,1", "0,0"]}, "ROI", "point 'nan,1' is not finite"),
    ({"points": [[1e400, 1], [1, 1], [0, 0]]}, "points", "not finite"),
    ({"points": [[10**400, 1], [1, 1], [0, 0]]}, "points", "out of range"),
    ({"roi_config": {"A": {"points": [1, 2, 3]}}}, "roi_config.A.points", "point 1 is not"),
    ({"roi_config": {"A": 5}}, "roi_config.A", "valid dictionary"),
    ({"Address": "a" * 300 + "\0"}, "Address", "control character"),
    ({"Address": "x" * 3000}, "Address", "longer than 2048 characters"),
    ({"Address": "9" * 40}, "Address", "a USB camera index is 0..9999"),
    ({"Address": "9" * 5000}, "Address", "longer than 2048 characters"),
    ({"Address": "9" * 2000}, "Address", "a USB camera index is 0..9999"),
    ({"Address": 10**40}, "Address", "a USB camera index is 0..9999"),
    ({"Address": "²"}, "Address", "a USB camera index is 0..9999"),  # a digit int() cannot read
    ({"Address": True}, "Address", "valid string"),
    ({"CamDelay": float("nan")}, "CamDelay", "finite number"),
    ({"CamDelay": "1e999"}, "CamDelay", "finite number"),
    ({"CamDelay": 1e7}, "CamDelay", "less than or equal to 3600"),
    ({"alert_time_pause": float("inf")}, "alert_time_pause", "finite number"),
    ({"CameraId": 10**30}, "CameraId", "less than or equal to"),
    ({"Detection": {"a": 1}}, "Detection", "valid list"),
]


@pytest.mark.parametrize(("fields", "field", "text"), BAD_CAMERA_VALUES)
def test_bad_camera_values_are_problem_lines_naming_camera_field_value(fields, field, text):
    r = parse_config({"common": {}, "cameras": [{"CameraId": 7, "Address": "0", **fields}, _cam(8)]})
    errors = [p for p in r.errors if p.field == field]
    assert errors, [str(p) for p in r.problems]
    label = "#0" if field == "CameraId" else "7"
    assert all(p.where == f"camera {label}" for p in errors)
    assert any(text in str(p) for p in errors), [str(p) for p in errors]
    assert [c.camera_id for c in r.config.cameras] == [8]  # the good camera still runs
    assert len(str(errors[0])) < 400  # a huge value is shortened, never dumped


def test_a_long_address_that_is_not_a_file_is_a_warning_not_a_crash():
    r = parse_config({"common": {}, "cameras": [_cam(1, Address="a" * 300)]})
    assert r.ok and [p.field for p in r.problems] == ["Address"] and r.problems[0].severity == "warning"


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ({"common": {}, "cameras": 5}, "file: cameras = 5: expected a list of cameras"),
        ({"common": [], "cameras": []}, "file: common = []: expected a JSON object"),
        ([1, 2], "file: (root) = 'list': expected a JSON object"),
        ({"common": {"x": json.loads("[" * 500 + "]" * 500)}}, "file: common = None: nested deeper than 64 levels"),
        ({"common": {"workers": 10**5000}}, "common: workers = <an integer of 16610 bits>: Input should be less"),
        (
            {"common": {}, "trakr": {"capture": {"open_timeout_s": 1e7}}},
            "trakr: trakr.capture.open_timeout_s = 10000000.0: Input should be less than or equal to 600",
        ),
        (
            {"common": {}, "trakr": {"capture": {"read_timeout_s": float("inf")}}},
            "trakr: trakr.capture.read_timeout_s = inf: Input should be a finite number",
        ),
    ],
)
def test_bad_documents_are_problem_lines(raw, line):
    r = parse_config(raw)
    assert any(str(p).startswith(line) for p in r.errors), [str(p) for p in r.problems]
    assert not r.runnable


def test_a_deeply_nested_camera_is_left_out_alone():
    deep = json.loads("[" * 900 + "]" * 900)
    r = parse_config({"common": {}, "cameras": [_cam(1, extra=deep), _cam(2)]})
    assert list(r.invalid_cameras) == ["1"] and [c.camera_id for c in r.config.cameras] == [2]


def _float_fields(model, prefix=""):
    """(dotted alias path, sub-model path) of every float field of ``model`` and its sub-models."""
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from _float_fields(ann, f"{prefix}{name}.")
        elif ann is float or ann == (float | None):
            yield prefix + (f.alias or name)


FLOAT_FIELDS = (
    [("trakr", p) for p in _float_fields(TrakrOptions)]
    + [("common", p) for p in _float_fields(CommonConfig)]
    + [("camera", p) for p in _float_fields(CameraConfig)]
)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(("section", "path"), FLOAT_FIELDS, ids=[f"{s}.{p}" for s, p in FLOAT_FIELDS])
def test_every_float_field_rejects_nan_and_inf(tmp_path, section, path, bad):
    doc = {"common": {}, "cameras": [_cam(1), _cam(2)]}
    target = {"trakr": doc.setdefault("trakr", {}), "common": doc["common"], "camera": doc["cameras"][0]}[section]
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = "@BAD@"
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc).replace('"@BAD@"', bad))  # NaN/Infinity as JSON writers emit them
    r = load_config(f)
    shown = path if section != "trakr" else "trakr." + path
    errors = [p for p in r.errors if p.field == shown]
    assert errors and ("finite" in errors[0].message or "less than" in errors[0].message), [str(p) for p in r.problems]


def test_float_fields_found():
    names = {p for _, p in FLOAT_FIELDS}
    assert {"capture.open_timeout_s", "capture.read_timeout_s", "CamDelay", "alert_time_pause"} <= names
    assert len(FLOAT_FIELDS) > 30


def test_every_duration_has_a_finite_maximum():
    """Timeouts are at most 600 s; no period is unbounded (a huge one overflows Event.wait).

    Checks the models of trakr.config (sections owned by other modules, e.g. trakr.events, are
    theirs to bound)."""
    for model in (TrakrOptions, CommonConfig, CameraConfig):
        for path in _float_fields(model):
            *parents, leaf = path.split(".")
            m = model
            for part in parents:
                m = m.model_fields[part].annotation
            if m.__module__ != "trakr.config":
                continue
            f = next(f for n, f in m.model_fields.items() if (f.alias or n) == leaf)
            le = [c.le for c in f.metadata if getattr(c, "le", None) is not None]
            assert le, f"{model.__name__}.{path} has no maximum"
            if leaf.endswith("timeout_s"):
                assert le[0] <= 600, path


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (
            b'{"common": {"ClientName": "\xff"}, "cameras": []}',
            "= 'line 1': not UTF-8 text: byte b'\\xff' at offset 27",
        ),
        (b"[" * 100000 + b"]" * 100000, "invalid JSON: nested too deeply"),
        (b'{"common": {"workers": ' + b"9" * 5000 + b"}}", "invalid JSON: Exceeds the limit (4300 digits)"),
        (b"", "invalid JSON: Expecting value"),
    ],
    ids=["non-utf8", "deep", "huge-int", "empty"],
)
def test_unreadable_files_are_one_problem_line(tmp_path, content, text):
    f = tmp_path / "c.json"
    f.write_bytes(content)
    r = load_config(f)
    assert r.config is None and len(r.problems) == 1
    assert text in str(r.problems[0]) and str(f) in str(r.problems[0])


def test_a_utf8_bom_is_accepted(tmp_path):
    f = tmp_path / "c.json"
    f.write_bytes(b'\xef\xbb\xbf{"common": {}, "cameras": []}')
    assert load_config(f).ok


def test_paths_that_are_not_config_files(tmp_path):
    assert "is a directory" in str(load_config(tmp_path).problems[0])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block for ever
    assert "not a regular file" in str(load_config(fifo).problems[0])
    assert "cannot be read: File name too long" in str(load_config(tmp_path / ("x" * 300)).problems[0])
    assert "cannot be read: embedded null byte" in str(load_config("a\0b").problems[0])
    unreadable = tmp_path / "secret.json"
    unreadable.write_text("{}")
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        assert "cannot be read: Permission denied" in str(load_config(unreadable).problems[0])
