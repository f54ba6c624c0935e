"""Config loading: the legacy file as it is, every bad value reported with camera, field, value."""

import json
from pathlib import Path

import pytest

from trakr.config import load_config, parse_config, trigger_warnings


@pytest.fixture(scope="module")
def seed_raw() -> dict:
    # The seed file is the legacy system's real format; the repository carries a copy so CI
    # does not depend on ../shared.
    return json.loads((Path(__file__).parent / "data" / "sysconfig.seed.json").read_text())


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


def test_missing_file_and_bad_json(tmp_path):
    assert "file not found" in str(load_config(tmp_path / "nope.json").problems[0])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert "invalid JSON" in str(load_config(bad).problems[0])
