"""The person-crop classifier: real ONNX models built here, real crops, the two-stage deriver's cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import supervision as sv
from onnx import TensorProto, helper

from trakr.inference.crop_classifier import CropClassifier, crop_boxes
from trakr.rules.ppe import PpeClassifier
from trakr.rules.ppe_options import PpeOptions

BGR = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0)}


def mean_colour_model(path: Path, names: list[str] | None, scale: float = 1.0, batch: int | str = "n") -> Path:
    """Scores = ``scale`` x the crop's mean R, G, B; input 32 x 16."""
    h, w = 32, 16
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "k"], ["s"]),
    ]
    inits = [helper.make_tensor("k", TensorProto.FLOAT, [1], [scale])]
    graph = helper.make_graph(
        nodes,
        "mean_colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [batch, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": str(dict(enumerate(names)))})
    onnx.save(model, str(path))
    return path


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A grey frame with a red, a green and a blue 'person'; their boxes."""
    img = np.full((240, 320, 3), 128, np.uint8)
    boxes = np.array([[20.0, 40, 60, 200], [140, 40, 180, 200], [260, 40, 300, 200]])
    for (x0, y0, x1, y1), colour in zip(boxes.astype(int), BGR.values()):
        img[y0:y1, x0:x1] = colour
    return img, boxes


def test_classifies_crops_in_one_batch_with_names_from_metadata(tmp_path):
    clf = CropClassifier(mean_colour_model(tmp_path / "m.onnx", ["red", "green", "blue"]), pad=0.0)
    img, boxes = scene()
    scores = clf.classify(img, boxes)
    assert clf.labels == ["red", "green", "blue"] and clf.size == (32, 16)
    assert [clf.labels[i] for i in scores.argmax(axis=1)] == ["red", "green", "blue"]
    np.testing.assert_allclose(scores.max(axis=1), 1.0, atol=1e-3)  # RGB order, 0..1, no softmax needed
    assert (clf.runs, clf.crops) == (1, 3)  # one run per frame
    assert clf.classify(img, np.zeros((0, 4))).shape == (0, 3)


def test_labels_file_softmax_and_fixed_batch(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("# my classes\nno_helmet\n\nok\nother\n")
    clf = CropClassifier(mean_colour_model(tmp_path / "m.onnx", None, scale=10.0, batch=1), labels, pad=0.0)
    img, boxes = scene()
    scores = clf.classify(img, boxes)
    assert clf.labels == ["no_helmet", "ok", "other"]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # logits up to 10: soft-maxed
    assert scores[0].argmax() == 0 and scores[0, 0] > 0.99
    assert clf.crops == 3  # a batch-1 export is run crop by crop


def test_bgr_input_and_normalisation(tmp_path):
    path = mean_colour_model(tmp_path / "m.onnx", ["c0", "c1", "c2"])
    img, boxes = scene()
    bgr = CropClassifier(path, pad=0.0, bgr=True).classify(img, boxes[:1])  # red crop fed as B, G, R
    np.testing.assert_allclose(bgr[0], [0, 0, 1], atol=1e-3)
    norm = CropClassifier(path, pad=0.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), softmax="no").classify(
        img, boxes[:1]
    )
    np.testing.assert_allclose(norm[0], [1, -1, -1], atol=1e-2)


def test_bad_models_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no 'names' metadata; give ppe.classifier.labels_path"):
        CropClassifier(mean_colour_model(tmp_path / "a.onnx", None))
    clf = CropClassifier(mean_colour_model(tmp_path / "b.onnx", ["one", "two"]))
    with pytest.raises(ValueError, match="outputs 3 scores but has 2 labels"):
        clf.classify(*scene())


def test_crop_boxes_pad_and_clip():
    assert crop_boxes(np.array([[10.0, 10, 30, 50]]), (100, 100), 0.25).tolist() == [[5, 0, 35, 60]]


def people(boxes: np.ndarray, ids: list[int]) -> sv.Detections:
    n = len(ids)
    return sv.Detections(
        xyxy=boxes[: len(ids)].copy(),
        confidence=np.full(n, 0.9),
        class_id=np.zeros(n, dtype=int),
        tracker_id=np.array(ids),
        data={"class_name": np.array(["person"] * n)},
    )


def test_two_stage_runs_once_per_person_per_interval_and_maps_through_aliases(tmp_path):
    clf = CropClassifier(mean_colour_model(tmp_path / "m.onnx", ["no_helmet_no_vest", "no-vest", "ok"]), pad=0.0)
    options = PpeOptions.model_validate(
        {"hold_frames": 2, "forget_s": 2.0, "classifier": {"model_path": "m.onnx", "interval_s": 1.0}}
    )
    aliases = {"No Helmet No Vest": "nohelmet:novest", "no_vest": "novest"}
    ppe = PpeClassifier(clf, options, aliases, ["nohelmet", "novest", "person"])
    img, boxes = scene()
    frame = people(boxes, [1, 2, 3])  # red -> no helmet, no vest; green -> no vest; blue -> ok

    def verdicts(at):
        out = ppe.derive(at, img, frame)
        return sorted(zip(out.tracker_id.tolist(), out.data["class_name"].tolist()))

    assert verdicts(0.0) == []  # held 1 frame of 2
    assert clf.crops == 3
    assert verdicts(0.5) == [(1, "nohelmet"), (1, "novest"), (2, "novest")]
    assert clf.crops == 3  # cached: no new run within interval_s
    out = ppe.derive(0.6, img, frame)
    assert out.data["region_label"].tolist()[:2] == ["no_helmet_no_vest"] * 2  # the classifier's label
    assert out.confidence.tolist()[0] == pytest.approx(1.0, abs=1e-3)  # its score
    assert verdicts(1.0) and clf.crops == 6  # interval over: every person classified again, in one run
    assert clf.runs == 2
    # a new person is classified on first sight, the others stay cached
    frame = people(np.vstack([boxes, [[200.0, 40, 240, 200]]]), [1, 2, 3, 4])
    ppe.derive(1.2, img, frame)
    assert clf.crops == 7
    # lost tracks are forgotten: after forget_s unseen, person 1 is classified afresh
    ppe.derive(4.0, img, people(boxes, []))
    ppe.derive(4.1, img, people(boxes, [1]))
    assert clf.crops == 8
