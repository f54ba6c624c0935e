"""Events on synthetic detection sequences: one alert per object and visit, grace, pause, cap, and
the dwell, line-crossing, occupancy and calibrated social-distancing rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import supervision as sv

from trakr.config import CameraConfig
from trakr.rules.events import CameraEvents
from trakr.rules.geometry import GroundPlane
from trakr.rules.options import EventOptions

SIZE = (800, 600)
# walkway: the lower half of the frame; parking: a box at the top right
ROIS = {
    "walkway": {"points": ["0,0.5", "1,0.5", "1,1", "0,1"], "detections": "person"},
    "parking": {"points": ["0.7,0", "1,0", "1,0.3", "0.7,0.3"], "detections": "car:truck"},
}


def cam(**extra) -> CameraConfig:
    return CameraConfig(CameraId=3, Address="0", roi_config=ROIS, alert_time_pause=10, **extra)


def dets(*objs) -> sv.Detections:
    """``(name, x_centre, y_foot, height[, conf])`` -> detections (people 0.4 h wide, vehicles 2 h)."""
    if not objs:
        return sv.Detections.empty()
    rows = [
        [x - h * (0.2 if n == "person" else 1.0), y - h, x + h * (0.2 if n == "person" else 1.0), y]
        for n, x, y, h, *_ in objs
    ]
    return sv.Detections(
        xyxy=np.array(rows, dtype=float),
        confidence=np.array([o[4] if len(o) > 4 else 0.8 for o in objs]),
        class_id=np.zeros(len(objs), dtype=int),
        data={"class_name": np.array([o[0] for o in objs])},
    )


def events(camera=None, **opts) -> CameraEvents:
    """An event engine; objects count from their first frame unless a test sets ``confirm_frames``
    (the rule tables below are about the rules, not about confirming tracks)."""
    ids = (f"e{i}" for i in itertools.count(1))
    opts.setdefault("confirm_frames", 1)
    return CameraEvents(camera or cam(), EventOptions(**opts), id_factory=lambda: next(ids))


def play(ev: CameraEvents, frames, step: float = 0.2):
    """Feed ``frames`` (a list of detections, one per ``step`` s); returns ``[(t, kind, event_id, violation, roi, track_ids)]``."""
    out = []
    t = 0.0
    for d in frames:
        for u in ev.update(round(t, 3), SIZE, d).updates:
            out.append((round(t, 3), u.kind, u.event_id, u.violation.violation, u.violation.roi, u.track_ids))
        t += step
    for u in ev.close(round(t, 3)):
        out.append((round(t, 3), u.kind, u.event_id, u.violation.violation, u.violation.roi, u.track_ids))
    return out


def walker(ys, x=100, h=80):
    return [dets(("person", x + 3 * i, y, h)) if y is not None else dets() for i, y in enumerate(ys)]


def alerts(log):
    return [e for e in log if e[1] == "alert"]


# ------------------------------------------------------------------------------------ visits


def test_one_alert_when_the_object_enters_and_a_record_when_it_is_gone_for_the_grace_time():
    ev = events(grace_s=2.0)
    # outside (foot at y 290, the walkway starts at 300) for 1 s, inside for 2 s, outside for 3 s
    log = play(ev, walker([290] * 5 + [310] * 10 + [290] * 15))
    assert [e[:6] for e in log] == [
        (1.0, "alert", "e1", "person", "walkway", (1,)),
        (5.0, "end", "e1", "person", "walkway", (1,)),  # last inside at 2.8 s, + more than 2 s
    ]
    rec = ev.records[-1]
    assert (rec.track_ids, rec.started_at, rec.ended_at, rec.duration, rec.alerted_at) == ((1,), 1.0, 2.8, 1.8, 1.0)
    assert rec.frames == 10 and rec.suppressed is None


@pytest.mark.parametrize(
    ("away_s", "alerts_expected", "suppressed"),
    [
        (1.0, 1, []),  # shorter than grace: the same event goes on
        (5.0, 1, ["pause"]),  # a new event, but within alert_time_pause (10 s): recorded, not alerted
        (12.0, 2, []),  # away longer than the pause: alerted again
    ],
)
def test_the_same_object_is_alerted_again_only_after_being_away_alert_time_pause(away_s, alerts_expected, suppressed):
    ev = events(grace_s=2.0)
    n = int(away_s / 0.2)
    # it stays in view (y 290, just outside the walkway) while away, so it keeps its track id
    log = play(ev, walker([310] * 5 + [290] * n + [310] * 5, h=80))
    assert {e[5] for e in log} == {(1,)}
    assert len(alerts(log)) == alerts_expected
    assert [r.suppressed for r in ev.records if r.suppressed] == suppressed


def test_another_object_is_alerted_at_once_whatever_the_pause():
    ev = events()
    frames = [dets(("person", 100, 400, 80))] * 5 + [dets(("person", 100, 400, 80), ("person", 500, 450, 90))] * 5
    log = play(ev, frames)
    assert [(e[0], e[5]) for e in alerts(log)] == [(0.0, (1,)), (1.0, (2,))]


def test_a_flickering_detection_is_one_event():
    ev = events(grace_s=2.0)
    ys = [400, None, 400, None, None, 400, 400, None, 400]
    assert len(alerts(play(ev, walker(ys)))) == 1
    assert len(ev.records) == 1


def test_per_camera_cap_delays_a_crowd_and_alerts_late_while_they_are_still_there():
    ev = events(max_alerts_per_minute=3)
    crowd = dets(*[("person", 60 + 70 * i, 400 + 5 * i, 80) for i in range(5)])
    log = play(ev, [crowd] * 320)  # 64 s
    got = alerts(log)
    assert [e[0] for e in got][:3] == [0.0, 0.0, 0.0]
    assert [e[0] for e in got][3:] == [60.0, 60.0]  # the minute went by: the two waiting alert now
    assert len({e[5] for e in got}) == 5


def test_capped_events_that_end_before_the_cap_frees_are_recorded_as_such():
    ev = events(max_alerts_per_minute=1)
    two = dets(("person", 100, 400, 80), ("person", 500, 400, 80))
    play(ev, [two] * 5)
    assert sorted(str(r.suppressed) for r in ev.records) == ["None", "cap"]
    assert ev.counts["cap"] == 1 and ev.counts["alerts"] == 1


def test_alerts_off_still_records_events():
    ev = CameraEvents(cam(), alerts_enabled=False)
    log = play(ev, walker([400] * 5))
    assert alerts(log) == [] and [r.suppressed for r in ev.records] == ["disabled"]


def test_the_best_evidence_is_the_most_confident_largest_view():
    ev = events()
    frames = [
        dets(("person", 100, 400, 60, 0.5)),
        dets(("person", 102, 420, 90, 0.9)),
        dets(("person", 104, 440, 70, 0.6)),
    ]
    play(ev, frames)
    rec = ev.records[-1]
    assert rec.best_at == 0.2 and rec.best_detections.xyxy[0, 3] == 420


def test_a_parked_van_alerts_once_whatever_its_label_and_box_do():
    ev = events()
    frames = []
    for i in range(400):  # 80 s at 5 frames/s
        label = ["truck", "car", "truck", "truck", "bus"][i % 5]
        h = 40 if i % 50 < 40 else 30  # someone at the boot shrinks the box for 2 s out of 10
        frames.append(dets((label, 660, 150, h, 0.7), ("car", 662, 151, h - 1, 0.5)))  # and a duplicate box
    log = play(ev, frames)
    assert [(e[1], e[4], e[5]) for e in log] == [("alert", "parking", (1,)), ("end", "parking", (1,))]


def test_watching_says_when_a_tracked_object_is_where_a_rule_applies():
    ev = events()
    assert ev.update(0.0, SIZE, dets(("person", 100, 250, 80))).watching is False  # outside every zone
    assert ev.update(0.2, SIZE, dets(("person", 100, 400, 80))).watching is True


def test_a_rule_on_an_unknown_roi_is_a_clear_error():
    bad = cam(dwell={"loiter": {"roi": "walkwya", "seconds": 5}})
    with pytest.raises(ValueError, match=r"camera 3: dwell.loiter.roi = 'walkwya': no such ROI .*walkway, parking"):
        CameraEvents(bad)


# ------------------------------------------------------------------------------------ dwell


@pytest.mark.parametrize(("inside_s", "alerted_at"), [(8.0, None), (12.0, 10.0), (30.0, 10.0)])
def test_dwell_alerts_once_after_n_seconds_inside(inside_s, alerted_at):
    ev = events(camera=cam(dwell={"loiter": {"roi": "walkway", "seconds": 10}}))
    n = int(inside_s / 0.2)
    log = play(ev, walker([400] * n + [None, None] + [250] * 20, x=300))
    dwell = [e for e in alerts(log) if e[3] == "dwell"]
    assert [e[0] for e in dwell] == ([] if alerted_at is None else [alerted_at])
    assert len([e for e in alerts(log) if e[3] == "person"]) == 1  # the presence rule is separate


def test_dwell_time_survives_a_short_occlusion():
    ev = events(camera=cam(dwell={"loiter": {"roi": "walkway", "seconds": 5}}), grace_s=2.0)
    ys = [400] * 15 + [None] * 5 + [400] * 15  # 3 s, hidden 1 s, 3 s
    dwell = [e for e in alerts(play(ev, walker(ys, x=300))) if e[3] == "dwell"]
    assert [e[0] for e in dwell] == [5.0]


# ------------------------------------------------------------------------------------ lines


def line_cam(direction: str) -> CameraConfig:
    # a horizontal line from (0, 300) to (800, 300): walking down crosses from its right to its left
    # as seen from A to B... 'in' is documented as right-of-A->B to left; check both directions
    return CameraConfig(
        CameraId=4,
        Address="0",
        lines={"gate": {"points": ["0,300", "800,300"], "detections": "person", "direction": direction}},
    )


def crossing(down: bool):
    ys = list(range(200, 420, 20)) if down else list(range(420, 200, -20))
    return walker(ys, x=400, h=60)


@pytest.mark.parametrize(
    ("direction", "down", "expected"),
    [
        ("both", True, ["out"]),
        ("both", False, ["in"]),
        ("in", True, []),
        ("in", False, ["in"]),
        ("out", True, ["out"]),
        ("out", False, []),
    ],
)
def test_line_crossing_with_direction(direction, down, expected):
    ev = CameraEvents(line_cam(direction))
    got = []
    for i, d in enumerate(crossing(down)):
        for u in ev.update(i * 0.2, SIZE, d).updates:
            got.append((u.violation.violation, u.violation.roi, u.extra["direction"]))
    assert got == [("line_crossing", "gate", e) for e in expected]


def test_crossing_back_and_forth_alerts_each_direction_once_within_the_pause():
    ev = CameraEvents(line_cam("both"))
    frames = crossing(True) + crossing(False) + crossing(True)  # down, up, down again within 10 s
    dirs = []
    for i, d in enumerate(frames):
        dirs += [u.extra["direction"] for u in ev.update(i * 0.2, SIZE, d).updates if u.kind == "alert"]
    assert dirs == ["out", "in"]


def test_the_in_side_is_left_of_a_to_b_as_documented():
    # A=(0,300) -> B=(800,300) points right; in image coordinates (y down) its left is up (y < 300)
    ev = CameraEvents(line_cam("in"))
    ups = [u for i, d in enumerate(crossing(False)) for u in ev.update(i * 0.2, SIZE, d).updates]
    assert len(ups) == 1  # walking up = from the right of A->B to its left = 'in'


# ------------------------------------------------------------------------------------ occupancy


def test_occupancy_alerts_once_when_more_than_n_are_inside_and_ends_when_it_drops():
    ev = events(camera=cam(occupancy={"crowd": {"roi": "walkway", "max_objects": 2}}), grace_s=1.0)
    two = [("person", 100, 400, 80), ("person", 300, 400, 80)]
    frames = [dets(*two)] * 5 + [dets(*two, ("person", 500, 400, 80))] * 10 + [dets(*two)] * 10
    log = play(ev, frames)
    occ = [e for e in log if e[3] == "occupancy"]
    assert [(e[0], e[1], e[5]) for e in occ] == [(1.0, "alert", ()), (4.0, "end", ())]
    rec = [r for r in ev.records if r.violation == "occupancy"][0]
    assert rec.extra == {"count": 3, "max_objects": 2} and len(rec.best_detections) == 3


# ------------------------------------------------------------------------------------ distancing


CALIB = {
    # a 4 m x 10 m patch of ground, seen in perspective: the far edge (10 m away) looks half as wide
    "image_points": ["100,500", "700,500", "550,200", "250,200"],
    "world_points": [[0, 0], [4, 0], [4, 10], [0, 10]],
}


def feet_at(metres):
    """Pixel foot points of ground positions, through the inverse of the calibration."""
    plane = GroundPlane([tuple(map(float, p.split(","))) for p in CALIB["image_points"]], CALIB["world_points"])
    inv = np.linalg.inv(plane.homography(SIZE))
    pts = np.c_[np.asarray(metres, float), np.ones(len(metres))] @ inv.T
    return pts[:, :2] / pts[:, 2:]


def people_at(metres, h=60):
    return dets(*[("person", x, y, h) for x, y in feet_at(metres)])


def test_calibrated_distances_are_metres_on_the_ground():
    # corners of the patch map exactly: 4 m across the near edge, 10 m along the side
    plane = GroundPlane([(100, 500), (700, 500), (550, 200), (250, 200)], CALIB["world_points"])
    m = plane.to_metres(np.array([[100, 500], [700, 500], [250, 200], [400, 500]]), SIZE)
    np.testing.assert_allclose(m, [[0, 0], [4, 0], [0, 10], [2, 0]], atol=1e-6)
    # the same 60 px apart is 0.4 m near the camera and 0.8 m far away (half as many px per metre)
    near, far = plane.to_metres(np.array([[370, 500], [430, 500], [370, 200], [430, 200]]), SIZE).reshape(2, 2, 2)
    assert np.linalg.norm(near[0] - near[1]) == pytest.approx(0.4, abs=1e-6)
    assert np.linalg.norm(far[0] - far[1]) == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize(
    ("positions", "pairs"),
    [
        ([(1, 1), (2.2, 1)], [((1, 2), 1.2)]),  # 1.2 m apart near the camera
        ([(1, 8), (2.2, 8)], [((1, 2), 1.2)]),  # 1.2 m apart far away: fewer pixels, same metres
        ([(1, 1), (3, 1)], []),  # 2 m apart
        ([(1, 2), (1, 3.5), (3.5, 2)], [((1, 2), 1.5)]),  # only the close pair
    ],
)
def test_calibrated_social_distancing_flags_pairs_closer_than_sd_min_m(positions, pairs):
    camera = CameraConfig(CameraId=5, Address="0", Detection="social_distancing", calibration=CALIB, sd_min_m=1.8)
    ev = CameraEvents(camera, EventOptions(confirm_frames=1))  # one frame: the pairs, not track confirmation
    got = [(u.track_ids, u.extra["distance_m"]) for u in ev.update(0.0, SIZE, people_at(positions)).updates]
    assert [(ids, pytest.approx(d, abs=0.01)) for ids, d in pairs] == got


def test_pixel_limits_stay_for_configs_without_calibration():
    camera = CameraConfig(
        CameraId=6, Address="0", Detection="social_distancing", sd_thresh_limit_x=40, sd_thresh_limit_y=20
    )
    ev = CameraEvents(camera, EventOptions(confirm_frames=1))
    d = dets(("person", 100, 300, 80), ("person", 130, 310, 80), ("person", 300, 300, 80))
    got = [(u.track_ids, u.extra) for u in ev.update(0.0, SIZE, d).updates]
    assert got == [((1, 2), {"distance_px": pytest.approx(31.623, abs=1e-3)})]


def test_a_close_pair_is_one_event_for_as_long_as_they_stay_close():
    camera = CameraConfig(CameraId=5, Address="0", Detection="social_distancing", calibration=CALIB, sd_min_m=1.8)
    log = play(CameraEvents(camera), [people_at([(1, 1 + 0.05 * i), (2, 1 + 0.05 * i)]) for i in range(30)])
    assert [(e[1], e[5]) for e in log] == [("alert", (1, 2)), ("end", (1, 2))]


def test_a_box_seen_in_one_frame_only_starts_no_event_and_a_real_object_alerts_on_its_second_frame():
    """Default ``confirm_frames`` 2: a duplicate or partial box the tracker saw once is no one new."""
    ev = events(confirm_frames=2)
    person = ("person", 100, 300, 80)
    ghost = ("person", 500, 300, 60)  # far from the person: its own track, for one frame
    log = play(ev, [dets(person), dets(person, ghost), dets(person), dets(person)])
    assert [(t, ids) for t, kind, *_, ids in alerts(log)] == [(0.2, (1,))]
    assert EventOptions().confirm_frames == 2
