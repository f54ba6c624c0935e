"""Class aliases, per-class confidence and class filters, on tables and on the real model's output."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
import supervision as sv

from trakr.config import parse_config
from trakr.inference.base import default_model_path
from trakr.inference.classes import ClassMap, normalise, trigger_sources
from trakr.inference.onnx import OnnxDetector
from trakr.pipeline import model_output


def dets(names: list[str], conf: list[float]) -> sv.Detections:
    n = len(names)
    return sv.Detections(
        xyxy=np.arange(n * 4, dtype=float).reshape(n, 4),
        confidence=np.array(conf, dtype=float),
        class_id=np.arange(n),
        data={"class_name": np.array(names)},
    )


@pytest.mark.parametrize(
    "a, b",
    [
        ("NO-Hardhat", "no hardhat"),
        ("no_hardhat", "NoHardHat"),
        ("Safety Vest", "safety-vest"),
        ("NO - Mask", "nomask"),
    ],
)
def test_names_match_ignoring_case_spaces_dashes_and_underscores(a, b):
    assert normalise(a) == normalise(b)
    assert ClassMap({a: "x"}).name(b) == "x"


def test_aliases_rename_rows_and_keep_the_models_name():
    cm = ClassMap({"NO-Hardhat": "nohelmet", "safety vest": "vest", "Person": "person"})
    out = cm.apply(dets(["Person", "NO-Hardhat", "Safety Vest", "Mask"], [0.9, 0.8, 0.7, 0.6]))
    assert out.data["class_name"].tolist() == ["person", "nohelmet", "vest", "Mask"]
    assert out.data["model_class"].tolist() == ["Person", "NO-Hardhat", "Safety Vest", "Mask"]
    assert out.class_id.tolist() == [0, 1, 2, 3]  # ids stay the model's


# (confidence table, filter, expected surviving model classes)
CASES = [
    ({}, [], ["Person", "NO-Hardhat", "NO-Hardhat", "Safety Vest"]),
    ({"no-hardhat": 0.5}, [], ["Person", "NO-Hardhat", "Safety Vest"]),  # by model name
    ({"nohelmet": 0.5}, [], ["Person", "NO-Hardhat", "Safety Vest"]),  # by trigger
    ({"person": 0.95}, [], ["NO-Hardhat", "NO-Hardhat", "Safety Vest"]),
    ({}, ["nohelmet"], ["NO-Hardhat", "NO-Hardhat"]),  # filter by trigger
    ({}, ["PERSON", "safety_vest"], ["Person", "Safety Vest"]),  # filter by model name
    ({"nohelmet": 0.5}, ["nohelmet", "person"], ["Person", "NO-Hardhat"]),
]


@pytest.mark.parametrize("confidence, classes, kept", CASES)
def test_per_class_confidence_and_class_filter(confidence, classes, kept):
    cm = ClassMap({"NO-Hardhat": "nohelmet"}, confidence, classes)
    out = cm.apply(dets(["Person", "NO-Hardhat", "NO-Hardhat", "Safety Vest"], [0.9, 0.8, 0.4, 0.3]))
    assert out.data["model_class"].tolist() == kept


def test_nothing_configured_changes_nothing():
    d = dets(["person"], [0.5])
    assert ClassMap().apply(d) is d


def test_trigger_sources_say_how_each_trigger_is_produced():
    names = ["Person", "Hardhat", "NO-Hardhat", "Safety Vest", "Mask"]
    aliases = {"person": "person", "hardhat": "helmet", "no-hardhat": "nohelmet", "safety vest": "vest"}
    triggers = ["person", "nohelmet", "novest", "nomask", "noshoe", "social_distancing", "nosafetyharness"]
    got = trigger_sources(names, aliases, triggers, classifier_labels=["harness_missing"],
                          classifier_aliases={"harness missing": "nosafetyharness"})  # fmt: skip
    assert got == {
        "person": ["alias Person"],
        "nohelmet": ["alias NO-Hardhat"],  # the model says it directly: no association on top
        "novest": ["association vest"],
        "nomask": ["association Mask"],
        "noshoe": [],
        "social_distancing": ["built-in"],
        "nosafetyharness": ["classifier harness_missing"],
    }
    # without persons there is nobody to associate items with
    assert trigger_sources(["helmet"], {}, ["nohelmet"]) == {"nohelmet": []}


def test_real_model_with_negative_classes_maps_through_config(tmp_path, sample_clip):
    model = onnx.load(str(default_model_path()))
    for prop in model.metadata_props:
        if prop.key == "names":
            names = eval(prop.value)  # noqa: S307 - the bundled model's own metadata
            names[0] = "NO-Hardhat"
            prop.value = str(names)
    path = tmp_path / "negative.onnx"
    onnx.save(model, str(path))
    cap = cv2.VideoCapture(str(sample_clip))
    for _ in range(101):
        ok, frame = cap.read()
    cap.release()
    raw = {
        "common": {},
        "cameras": [],
        "trakr": {
            "detector": {
                "model_path": str(path),
                "class_aliases": {"no_hardhat": "nohelmet"},
                "class_confidence": {"nohelmet": 0.6},
                "classes": ["nohelmet"],
            }
        },
    }
    cfg = parse_config(raw).config
    det = OnnxDetector(path, imgsz=416, threads=2)
    raw_out = det.detect([frame])[0]
    out = model_output(raw_out, (0, 0), cfg)
    people = raw_out[raw_out.data["class_name"] == "NO-Hardhat"]
    assert len(people) >= 4 and (people.confidence < 0.6).any()  # frame 100: 6 people, some unsure
    assert set(out.data["class_name"]) == {"nohelmet"}
    assert len(out) == int((people.confidence >= 0.6).sum())  # cars and unsure people left out
