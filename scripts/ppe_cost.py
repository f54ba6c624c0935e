#!/usr/bin/env python
"""What the two-stage PPE classifier costs: ms per person crop, and analysed frames per second of
one inference thread (detector, then tracking, rules and derivers as in the pipeline and
``trakr replay``) with and without it (docs/ppe.md).

    .venv/bin/python scripts/ppe_cost.py [--seconds 20] [--imgsz 416] [--threads 2]

No PPE classifier weights ship in any package reachable here, so two stand-ins are measured:

- ``colour``: the tests' classifier (a linear function of mean colours, 96 x 48 input): the fixed
  cost of cropping, resizing and batching, with next to no model;
- ``cnn224``: YOLO11n's own network run on 224 x 224 crops with its output reduced to 84 scores,
  the compute of a small CNN classifier (yolo11n is about 6.5 GFLOPs at 640, so about 0.8 at 224).

Prints the machine load (``os.getloadavg``) before and after; figures can triple under load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import onnx
from onnx import TensorProto, helper

from trakr.config import parse_config
from trakr.devtools.media import sample_clip_path
from trakr.devtools.ppe_models import colour_classifier
from trakr.inference.base import default_model_path
from trakr.inference.crop_classifier import CropClassifier
from trakr.inference.onnx import OnnxDetector
from trakr.pipeline import make_events, model_output


def cnn_model(path: Path) -> Path:
    """YOLO11n's network with its (N, 84, anchors) output max-reduced to (N, 84) sigmoid-like scores."""
    model = onnx.load(str(default_model_path()))
    out = model.graph.output[0].name
    model.graph.node.append(helper.make_node("ReduceMax", [out], ["scores"], axes=[2], keepdims=0))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 84]))
    names = {i: f"c{i}" for i in range(84)}
    names.update({0: "NO-Hardhat", 1: "NO-Safety Vest"})
    del model.metadata_props[:]
    helper.set_model_props(model, {"names": str(names)})
    onnx.save(model, str(path))
    return path


def per_crop_ms(model: Path, imgsz: tuple[int, int] | None, frames, boxes, threads: int) -> dict[str, float]:
    clf = CropClassifier(model, imgsz=imgsz, threads=threads, softmax="no")
    out = {}
    for batch in (1, 6):
        clf.classify(frames[0], boxes[0][:batch])  # warm up
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            for f, b in zip(frames, boxes):
                clf.classify(f, b[:batch])
                n += len(b[:batch])
        out[f"batch{batch}_ms_per_crop"] = round(1000 * (time.perf_counter() - t0) / n, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="Clip seconds replayed per run.")
    ap.add_argument("--imgsz", type=int, default=416, help="Detector input size.")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (detector and classifier).")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ppe-cost-"))
    clip = sample_clip_path()
    models = {
        "colour": (colour_classifier(tmp / "colour.onnx"), None),
        "cnn224": (cnn_model(tmp / "cnn.onnx"), (224, 224)),
    }
    load = {"before": [round(x, 2) for x in os.getloadavg()]}

    det = OnnxDetector(imgsz=args.imgsz, threads=args.threads)
    cap = cv2.VideoCapture(str(clip))
    frames, boxes = [], []
    for i in range(200):
        ok, f = cap.read()
        if not ok:
            break
        if i % 20 == 0:
            d = det.detect([f])[0]
            p = d.xyxy[d.data["class_name"] == "person"]
            if len(p) >= 6:
                frames.append(f)
                boxes.append(p)
    cap.release()
    crops = {name: per_crop_ms(m, size, frames, boxes, args.threads) for name, (m, size) in models.items()}

    # the inference thread's work per analysed frame: detector, then tracking + rules + derivers
    # (alerts are written by the pipeline's output thread, so they are left out here)
    cap = cv2.VideoCapture(str(clip))
    clip_frames = [cap.read()[1] for _ in range(int(args.seconds * 10))]
    cap.release()
    t0 = time.perf_counter()
    detections = [det.detect([f])[0] for f in clip_frames]
    detect_ms = 1000 * (time.perf_counter() - t0) / len(clip_frames)

    def config(ppe: dict | None):
        raw = {
            "common": {},
            "trakr": {"detector": {"imgsz": args.imgsz}, **({"ppe": ppe} if ppe else {})},
            "cameras": [{"CameraId": 0, "Address": "clip", "Detection": "person:nohelmet:novest"}],
        }
        return parse_config(raw).config

    configs = {"no classifier": config(None)}
    for name, (m, size) in models.items():
        for interval in (3.0, 0.0):
            clf = {"model_path": str(m), "multi_label": True, "interval_s": interval, "threads": args.threads,
                   "aliases": {"NO-Hardhat": "nohelmet", "NO-Safety Vest": "novest"}}  # fmt: skip
            if size:
                clf["imgsz"] = list(size)
            configs[f"{name}, interval_s {interval:g}"] = config({"classifier": clf})
    spent = {k: 0.0 for k in configs}
    for _ in range(3):  # interleaved rounds: load drifts alike for every config
        for name, cfg in configs.items():
            events = make_events(cfg, cfg.cameras[0])
            t0 = time.perf_counter()
            for k, (f, d) in enumerate(zip(clip_frames, detections)):
                events.update(k / 10, (f.shape[1], f.shape[0]), model_output(d, (0, 0), cfg), f)
            spent[name] += time.perf_counter() - t0
    runs = {}
    for name, s in spent.items():
        rules_ms = 1000 * s / (3 * len(clip_frames))
        runs[name] = {"rules_ms": round(rules_ms, 2), "fps": round(1000 / (detect_ms + rules_ms), 1)}
    runs["detector_ms_per_frame"] = round(detect_ms, 2)  # type: ignore[assignment]
    load["after"] = [round(x, 2) for x in os.getloadavg()]
    base = runs["no classifier"]["fps"]
    for r in runs.values():
        if isinstance(r, dict):
            r["fps_ratio"] = round(r["fps"] / base, 3)
    print(
        json.dumps({"args": vars(args), "cpus": os.cpu_count(), "load": load, "crops": crops, "frames": runs}, indent=1)
    )


if __name__ == "__main__":
    main()
