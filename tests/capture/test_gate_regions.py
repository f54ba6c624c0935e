"""The change gate looks where the rules look, at a scale that keeps a far person visible."""

import cv2
import numpy as np
import pytest

from trakr.capture.gate import ChangeGate
from trakr.config import parse_config
from trakr.pipeline import gate_region

ZONE = np.array([[130, 96], [182, 86], [188, 118], [136, 130]])
"""The quiet scene's small far zone (768x576 px)."""


def _scene(size=(768, 576), seed=0, noise=1.5):
    rng = np.random.default_rng(seed)
    w, h = size
    bg = cv2.GaussianBlur(rng.integers(60, 160, (h, w), dtype=np.uint8), (0, 0), 3)  # textured ground
    return bg, lambda img: np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


def _with_person(bg, x, y, w=12, h=30, grey=30):
    img = bg.copy()
    img[y : y + h, x : x + w] = grey  # dark clothes on the path
    return img


def _decisions(gate, cam, frames):
    return [gate.decide(cam, f, i / 10) for i, f in enumerate(frames)]


def test_a_small_far_mover_inside_a_roi_passes():
    bg, noisy = _scene()
    gate = ChangeGate()
    gate.set_region(0, [ZONE])
    frames = [noisy(bg) for _ in range(5)] + [noisy(_with_person(bg, 150, 80))]  # foot at y=110, inside
    assert _decisions(gate, 0, frames) == ["keyframe"] + ["skipped"] * 4 + ["motion"]
    # the same person is well under 2 % of the frame: the whole-frame area rule alone missed it
    assert 12 * 30 / (768 * 576) < 0.002


def test_an_object_about_to_enter_is_seen_within_one_object_height():
    bg, noisy = _scene()
    gate = ChangeGate()
    gate.set_region(0, [ZONE])
    # feet 20 px left of the zone's left edge: outside the polygon, inside the margin
    frames = [noisy(bg), noisy(bg), noisy(_with_person(bg, 100, 85))]
    assert _decisions(gate, 0, frames)[-1] == "motion"


def test_the_same_mover_outside_every_roi_is_skipped():
    bg, noisy = _scene()
    gate = ChangeGate(keyframe_s=60)
    gate.set_region(0, [ZONE, ZONE + [0, 300]])
    frames = [noisy(bg)] + [noisy(_with_person(bg, 500 + 3 * i, 300)) for i in range(20)]
    assert _decisions(gate, 0, frames) == ["keyframe"] + ["skipped"] * 20
    # without a region the gate watches the whole frame, and sees it
    whole = ChangeGate(keyframe_s=60)
    assert _decisions(whole, 0, frames)[1] == "motion"


def test_a_roi_placed_outside_the_frame_watches_the_whole_frame():
    """A config mistake (zones past the frame's edge) must not leave the camera seen once per keyframe."""
    bg, noisy = _scene()
    gate = ChangeGate(keyframe_s=60)
    gate.set_region(0, [ZONE + [650, 0]])  # x 780..838, just right of a 768 px frame: its margin reaches in
    frames = [noisy(bg)] + [noisy(_with_person(bg, 300 + 6 * i, 300)) for i in range(10)]
    decisions = _decisions(gate, 0, frames)
    assert decisions == _decisions(ChangeGate(keyframe_s=60), 0, frames)  # as if it had no region
    assert decisions.count("motion") >= 5


def test_noise_below_the_threshold_is_skipped_and_a_stray_pixel_is_not_motion():
    bg, noisy = _scene(noise=4.0)
    gate = ChangeGate(keyframe_s=60)
    gate.set_region(0, [ZONE])
    stray = noisy(bg)
    stray[100, 160] = 255  # one hot pixel inside the zone
    frames = [noisy(bg) for _ in range(30)] + [stray]
    assert _decisions(gate, 0, frames) == ["keyframe"] + ["skipped"] * 30
    assert gate.stats[0].reasons == {"keyframe": 1, "skipped": 30}


@pytest.mark.parametrize("size", [(384, 288), (768, 576), (1536, 1152), (1920, 1080)])
def test_thresholds_and_margin_scale_with_resolution(size):
    w, h = size
    s = h / 576
    gate = ChangeGate()
    zone = np.round(ZONE * [w / 768, s]).astype(int)
    gate.set_region(0, lambda frame_size: [np.round(ZONE * [frame_size[0] / 768, frame_size[1] / 576])])
    ow, oh = gate.object_px(size)
    assert (ow, oh) == pytest.approx((12 * s, 30 * s))
    plan = gate.plan(0, size)
    # the crop is the zone grown by one object height, clamped to the frame
    assert plan.box[0] == max(0, int(np.floor(zone[:, 0].min() - oh)))
    assert plan.box[3] == min(h, int(np.ceil(zone[:, 1].max() + oh)) + 1)
    # compared at no more than the budget, and the far person stays a blob of pixels
    assert plan.size[0] * plan.size[1] <= gate.budget() * 1.01
    scale = plan.size[0] / (plan.box[2] - plan.box[0])
    assert ow * scale >= 3 and oh * scale >= 8
    # the same far person (scaled with the frame) passes at every resolution
    bg, noisy = _scene(size)
    person = _with_person(bg, round(150 * w / 768), round(80 * s), round(12 * s), round(30 * s))
    assert _decisions(gate, 0, [noisy(bg), noisy(bg), noisy(person)]) == ["keyframe", "skipped", "motion"]


def test_the_motion_need_is_the_smaller_of_the_area_rule_and_the_object_share():
    gate = ChangeGate(area_threshold=0.02)
    whole = gate.plan(0, (768, 576))
    assert whole.size == (160, 120) and whole.mask is None  # the whole frame costs what it did
    assert whole.need < 0.02 * 160 * 120  # a far person, not 2 % of the frame
    zone = [np.array([[300, 300], [340, 300], [340, 340], [300, 340]])]
    gate.set_region(1, zone)
    small_zone = gate.plan(1, (768, 576))
    assert small_zone.size == (101, 101)  # 40 px grown by 30 on each side, at full resolution
    assert small_zone.need == int(np.ceil(0.25 * 12 * 30))  # a quarter of a far person: fewer than 2 %
    fine = ChangeGate(area_threshold=0.005)
    fine.set_region(1, zone)
    assert fine.plan(1, (768, 576)).need == int(np.ceil(0.005 * small_zone.area))  # here 0.5 % is fewer


def test_a_region_change_restarts_the_reference_and_a_broken_region_watches_everything():
    bg, noisy = _scene()
    gate = ChangeGate(keyframe_s=60)
    gate.set_region(0, [ZONE])
    assert _decisions(gate, 0, [noisy(bg), noisy(bg)]) == ["keyframe", "skipped"]
    gate.set_region(0, [ZONE + [300, 300]])
    assert gate.decide(0, noisy(bg), 1.0) == "keyframe"

    def broken(size):
        raise ValueError("no polygons")

    gate.set_region(2, broken)
    assert gate.plan(2, (768, 576)).mask is None  # never starve a camera for a bad region


def test_the_pipeline_region_follows_the_rules():
    raw = {
        "common": {},
        "cameras": [
            {
                "CameraId": 1,
                "Address": "x.mp4",
                "roi_config": {"far": {"points": ["130,96", "182,86", "188,118"], "detections": "person"}},
            },
            {"CameraId": 2, "Address": "x.mp4", "Detection": "person"},  # camera-wide, no polygon
            {
                "CameraId": 3,
                "Address": "x.mp4",
                "points": ["0,0.5", "1,0.5", "1,1", "0,1"],
                "Detection": "person",
                "roi_config": {"idle": {"points": ["0,0", "0.1,0", "0.1,0.1"]}},
            },  # an ROI with no rule: ignored
            {
                "CameraId": 4,
                "Address": "x.mp4",
                "roi_config": {"w": {"points": ["0,0", "0.5,0", "0.5,0.5"]}},
                "dwell": {"loiter": {"roi": "w", "seconds": 5}},
            },  # a dwell rule watches its ROI
            {
                "CameraId": 5,
                "Address": "x.mp4",
                "roi_config": {"w": {"points": ["0,0", "0.5,0", "0.5,0.5"], "detections": "person"}},
                "lines": {"door": {"points": ["0,0.5", "1,0.5"]}},
            },  # a line: the whole frame
        ],
    }
    cfg = parse_config(raw).config
    regions = {c.camera_id: gate_region(cfg, c)((768, 576)) for c in cfg.cameras}
    assert [p.tolist() for p in regions[1]] == [[[130, 96], [182, 86], [188, 118]]]
    assert regions[2] is None and regions[5] is None
    assert [p.tolist() for p in regions[3]] == [[[0, 288], [768, 288], [768, 576], [0, 576]]]
    assert [p.tolist() for p in regions[4]] == [[[0, 0], [384, 0], [384, 288]]]
