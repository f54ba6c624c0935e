"""Tracking on synthetic detection sequences: ids for every box, gaps, re-links, vehicle flicker."""

from __future__ import annotations

import numpy as np
import supervision as sv

from trakr.rules.options import EventOptions
from trakr.rules.tracking import CameraTracker

SIZE = (768, 576)
CLASS_IDS = {"person": 0, "car": 2, "bus": 5, "truck": 7}


def dets(*objs) -> sv.Detections:
    """``(name, x_centre, y_foot, height[, conf])`` tuples -> detections (people 0.4 h wide, vehicles 2 h)."""
    if not objs:
        return sv.Detections.empty()
    rows = []
    for o in objs:
        name, x, y, h = o[:4]
        half = h * (0.2 if name == "person" else 1.0)
        rows.append([x - half, y - h, x + half, y])
    names = np.array([o[0] for o in objs])
    return sv.Detections(
        xyxy=np.array(rows, dtype=float),
        confidence=np.array([o[4] if len(o) > 4 else 0.8 for o in objs]),
        class_id=np.array([CLASS_IDS[n] for n in names]),
        data={"class_name": names},
    )


def run(tracker, frames):
    """``[(t, detections)]`` -> list of tracker_id arrays."""
    return [tracker.update(t, SIZE, d).tracker_id.tolist() for t, d in frames]


def test_every_detection_gets_a_stable_id_from_its_first_frame_at_irregular_times():
    times = [0.0, 0.1, 0.5, 0.6, 1.4, 1.5, 3.0, 3.2]  # gaps a change gate makes
    frames = [(t, dets(("person", 200 + 40 * t, 300, 80), ("person", 600 - 30 * t, 400, 100))) for t in times]
    ids = run(CameraTracker(), frames)
    assert ids[0] == [1, 2]  # no -1, even before the tracker confirms the tracks
    assert all(i == [1, 2] for i in ids)


def test_an_object_hidden_for_a_few_seconds_keeps_its_id_where_it_was_heading():
    tr = CameraTracker()
    walk = [(round(t, 1), dets(("person", 100 + 50 * t, 300, 80))) for t in np.arange(0, 3.01, 0.2)]
    hidden = [(round(t, 1), dets()) for t in np.arange(3.2, 5.5, 0.2)]  # behind a pillar for 2.4 s
    back = [(round(t, 1), dets(("person", 100 + 50 * t, 300, 80))) for t in np.arange(5.6, 7.0, 0.2)]
    ids = run(tr, walk + hidden + back)
    assert {i for frame in ids for i in frame} == {1}
    assert tr.relinked == 1


def test_a_new_object_far_away_or_long_after_is_not_relinked():
    tr = CameraTracker()
    seq = [(t / 10, dets(("person", 300, 300, 80))) for t in range(10)]
    seq += [(1.5, dets(("person", 600, 300, 80)))]  # 3.75 heights away: someone else
    seq += [(9.0, dets(("person", 300 + 60 * 9.0, 300, 80)))]
    ids = run(tr, seq)
    assert ids[0] == [1] and ids[10] == [2] and ids[11] == [3]


def test_an_object_that_walked_out_of_the_frame_is_not_the_one_walking_in():
    tr = CameraTracker()
    out = [(t / 5, dets(("person", 700 + 12 * t, 300, 80))) for t in range(6)]  # exits right at 760
    gone = [(1.2 + t / 5, dets()) for t in range(10)]
    back = [(3.4 + t / 5, dets(("person", 755 - 10 * t, 305, 80))) for t in range(5)]  # someone enters there
    ids = run(tr, out + gone + back)
    assert ids[0] == [1] and ids[-1] == [2]


def test_a_still_object_is_found_at_its_place_after_a_long_miss_a_moving_one_is_not():
    tr = CameraTracker(EventOptions(relink_still_s=15))
    parked = [(t / 5, dets(("car", 400, 200, 40))) for t in range(10)]
    missed = [(2.0 + t, dets()) for t in range(10)]  # occluded by a passing lorry for 10 s
    seen = [(12.0 + t / 5, dets(("car", 401, 201, 40))) for t in range(5)]
    ids = run(tr, parked + missed + seen)
    assert {i for f in ids for i in f} == {1}


def test_vehicles_keep_one_identity_and_class_across_car_truck_bus_flicker():
    tr = CameraTracker()
    labels = ["truck", "car", "truck", "bus", "car", "truck", "truck", "car"]
    out = [
        tr.update(i * 0.2, SIZE, dets((n, 400, 200, 40, 0.6 if n == "truck" else 0.5))) for i, n in enumerate(labels)
    ]
    assert [int(o.tracker_id[0]) for o in out] == [1] * len(labels)
    assert {str(o.data["class_name"][0]) for o in out} == {"truck"}  # the most confident label wins
    assert [str(o.data["detected_class"][0]) for o in out] == labels  # the model's own label is kept
    assert int(out[-1].class_id[0]) == CLASS_IDS["truck"]


def test_one_vehicle_detected_twice_with_two_classes_is_one_object():
    tr = CameraTracker()
    for i in range(5):
        both = dets(("truck", 400, 200, 40, 0.7), ("car", 401, 201, 39, 0.5), ("car", 600, 200, 40, 0.8))
        out = tr.update(i * 0.2, SIZE, both)
        assert out.tracker_id.tolist() == [1, 1, 2]


def test_people_and_vehicles_are_never_matched_to_each_other():
    tr = CameraTracker()
    ids = run(tr, [(0.0, dets(("person", 400, 240, 60))), (0.2, dets(("car", 400, 240, 60)))])
    assert ids == [[1], [2]]


def test_same_input_same_ids():
    rng = np.random.default_rng(7)
    frames = []
    for k in range(60):
        objs = [("person", 100 + 8 * k + rng.normal(0, 2), 300 + 20 * j, 80) for j in range(3) if rng.random() > 0.2]
        frames.append((k * 0.2, dets(*objs)))
    assert run(CameraTracker(), frames) == run(CameraTracker(), frames)
