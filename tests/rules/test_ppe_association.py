"""PPE association: tables of person and item boxes, each with its verdict; the hold; which
triggers a camera derives for which model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import supervision as sv

from trakr.config import parse_config
from trakr.inference.base import default_model_path
from trakr.pipeline import make_derivers
from trakr.rules.ppe import PpeAssociation, association_checks, body_regions, worn
from trakr.rules.ppe_options import PpeOptions

PERSON = [100.0, 100, 140, 200]  # 40 x 100 px: head region (helmet) y 85..130, torso (vest) y 120..165


def frame(rows: list[tuple[str, list[float], float]], ids: list[int] | None = None) -> sv.Detections:
    n = len(rows)
    return sv.Detections(
        xyxy=np.array([r[1] for r in rows], dtype=float).reshape(n, 4),
        confidence=np.array([r[2] for r in rows], dtype=float),
        class_id=np.zeros(n, dtype=int),
        tracker_id=np.array(ids if ids is not None else range(1, n + 1)),
        data={"class_name": np.array([r[0] for r in rows], dtype=str)},
    )


# (what is in the frame besides the person, trigger, item, violation expected)
TABLE = [
    ([], "nohelmet", "helmet", True),  # nothing on the head
    ([("helmet", [108, 98, 132, 118], 0.8)], "nohelmet", "helmet", False),  # helmet on the head
    ([("helmet", [106, 86, 134, 104], 0.8)], "nohelmet", "helmet", False),  # sticking out above the box
    ([("helmet", [150, 98, 174, 118], 0.8)], "nohelmet", "helmet", True),  # a neighbour's helmet, beside it
    ([("helmet", [108, 180, 132, 198], 0.8)], "nohelmet", "helmet", True),  # a helmet carried at the feet
    ([("helmet", [130, 100, 160, 120], 0.8)], "nohelmet", "helmet", False),  # a third of it on the head
    ([("helmet", [136, 100, 166, 120], 0.8)], "nohelmet", "helmet", True),  # barely touching: 13 % < 30 %
    ([("vest", [100, 125, 140, 165], 0.7)], "novest", "vest", False),  # vest on the torso
    ([("vest", [100, 175, 140, 200], 0.7)], "novest", "vest", True),  # something vest-like at the legs
    ([("helmet", [108, 98, 132, 118], 0.8)], "novest", "vest", True),  # a helmet is not a vest
    ([("Mask", [110, 105, 130, 120], 0.6)], "nomask", "mask", False),  # any no<item>; names ignore case
    ([], "nomask", "mask", True),
    ([("vest", [95, 115, 145, 170], 0.7)], "novest", "vest", False),  # a vest box wider than the torso
]


@pytest.mark.parametrize("items, trigger, item, violated", TABLE)
def test_association_table(items, trigger, item, violated):
    ppe = PpeAssociation({trigger: item}, PpeOptions(hold_frames=1))
    out = ppe.derive(0.0, None, frame([("person", PERSON, 0.9), *items]))
    assert (out.data["class_name"].tolist() == [trigger]) is violated
    if violated:
        assert out.tracker_id.tolist() == [1] and out.xyxy.tolist() == [PERSON]  # the person's track and box
        assert out.data["region_label"].tolist() == [f"no {trigger[2:]}"]
        assert out.data["region"].tolist() == body_regions(np.array([PERSON]), PpeOptions().region_of(item)).tolist()


def test_many_people_many_items_at_once():
    people = [[0, 0, 40, 100], [50, 0, 90, 100], [100, 0, 140, 100], [150, 0, 190, 100]]
    helmets = [[5, 2, 35, 20], [105, -5, 135, 12]]
    regions = body_regions(np.array(people, float), (0, -0.15, 1, 0.3))
    assert worn(regions, np.array(helmets, float), 0.3).tolist() == [True, False, True, False]
    assert worn(regions, np.zeros((0, 4)), 0.3).tolist() == [False] * 4


HELMET_05 = ("helmet", [108, 98, 132, 118], 0.5)

# (per-class minimum confidence, minimum person height, helmet seen, violation expected)
CONFIDENCE = [
    ({}, 32, False, True),
    ({}, 32, True, False),
    ({"person": 0.95}, 32, False, False),  # an unsure person is not judged
    ({"Helmet": 0.9}, 32, True, True),  # the helmet seen at 0.5 does not count
    ({}, 150, False, False),  # a person 100 px tall is too small to judge
]


@pytest.mark.parametrize("floors, min_height, helmet, violated", CONFIDENCE)
def test_min_confidence_and_person_size(floors, min_height, helmet, violated):
    options = PpeOptions(hold_frames=1, min_confidence=floors, min_person_height_px=min_height)
    ppe = PpeAssociation({"nohelmet": "helmet"}, options)
    d = frame([("person", PERSON, 0.9), *([HELMET_05] if helmet else [])])
    assert (ppe.derive(0.0, None, d).data["class_name"].tolist() == ["nohelmet"]) is violated


def test_one_missed_helmet_is_no_violation_three_in_a_row_are():
    ppe = PpeAssociation({"nohelmet": "helmet"}, PpeOptions(hold_frames=3))
    with_helmet = frame([("person", PERSON, 0.9), ("helmet", [108, 98, 132, 118], 0.8)], [1, 2])
    without = frame([("person", PERSON, 0.9)], [1])
    seq = [with_helmet, without, with_helmet, without, without, without, without, with_helmet, without]
    out = [len(ppe.derive(i * 0.1, None, d)) for i, d in enumerate(seq)]
    assert out == [0, 0, 0, 0, 0, 1, 1, 0, 0]


def test_a_frame_without_the_person_neither_breaks_nor_counts_and_lost_tracks_are_forgotten():
    ppe = PpeAssociation({"nohelmet": "helmet"}, PpeOptions(hold_frames=2, forget_s=1.0))
    alone = frame([("person", PERSON, 0.9)], [5])
    empty = frame([])
    assert [len(ppe.derive(t, None, d)) for t, d in [(0.0, alone), (0.1, empty), (0.2, alone)]] == [0, 0, 1]
    ppe.derive(5.0, None, empty)  # track 5 unseen for more than forget_s: its count is gone
    assert len(ppe.derive(5.1, None, alone)) == 0


def test_two_people_are_held_apart():
    ppe = PpeAssociation({"nohelmet": "helmet", "novest": "vest"}, PpeOptions(hold_frames=2))
    other = [200.0, 100, 240, 200]
    d = frame([("person", PERSON, 0.9), ("person", other, 0.9), ("helmet", [208, 98, 232, 118], 0.8)], [1, 2, 3])
    ppe.derive(0.0, None, d)
    out = ppe.derive(0.1, None, d)
    assert sorted(zip(out.tracker_id.tolist(), out.data["class_name"].tolist())) == [
        (1, "nohelmet"),
        (1, "novest"),
        (2, "novest"),
    ]


@pytest.fixture(scope="module")
def positive_model(tmp_path_factory):
    model = onnx.load(str(default_model_path()))
    for prop in model.metadata_props:
        if prop.key == "names":
            names = eval(prop.value)  # noqa: S307 - the bundled model's own metadata
            names.update({0: "Person", 11: "Hard-Hat", 79: "Safety Vest", 78: "nomask", 77: "Mask"})
            prop.value = str(names)
    path = tmp_path_factory.mktemp("ppe") / "positive.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "association, triggers, expected",
    [
        (
            "auto",
            "nohelmet:novest:nosafetyvest:nomask:noshoe:person",
            {"nohelmet": "helmet", "nosafetyvest": "Safety Vest"},
        ),
        ("on", "nohelmet:noshoe", {"nohelmet": "helmet", "noshoe": "shoe"}),
        ("off", "nohelmet:novest", {}),
    ],
)
def test_which_triggers_are_derived_for_a_model(positive_model, association, triggers, expected):
    raw = {
        "common": {},
        "trakr": {
            "detector": {"model_path": str(positive_model), "class_aliases": {"hard hat": "helmet"}},
            "ppe": {"association": association},
        },
        "cameras": [{"CameraId": 1, "Address": "0", "Detection": triggers}],
    }
    cfg = parse_config(raw).config
    checks = association_checks(cfg, cfg.cameras[0])
    # auto: nomask is the model's own class (no association on top), noshoe has no shoe class,
    # novest no vest class (no alias maps "Safety Vest" to vest); "Hard-Hat" is helmet by alias;
    # nosafetyvest's item is the model's "Safety Vest" (names ignore case and spaces)
    assert {t: c for t, c in checks.items()} == expected
    derivers = make_derivers(cfg, cfg.cameras[0])
    assert [type(d).__name__ for d in derivers] == (["PpeAssociation"] if expected else [])
