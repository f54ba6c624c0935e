"""``trakr model quantize``: an INT8 copy of the model, calibrated on the site's own frames.

INT8 is an option, never the default: it is a little faster on CPUs with VNNI, and it can lose
objects. So the command measures what it loses before it writes anything:

1. frames are grabbed from a clip or a camera (``rtsp://``...), spread over the source: every
   third one is held out, the rest calibrate;
2. ``onnxruntime.quantization.quantize_static`` writes a QDQ model (weights INT8 per channel,
   activations UINT8, MinMax ranges from the calibration frames). The decode head (the Detect
   module's last convolution of each branch, whose outputs are the box distributions and class
   logits, and the decoding: DFL, anchors, strides, sigmoid, concat) stays FP32, as its
   coordinate arithmetic does not survive 8 bits;
3. the FP32 and the INT8 model run on the held-out frames; :func:`agreement` is the share of the
   FP32 boxes that the INT8 model finds too (same class, IoU >= 0.5), per class and overall;
4. below ``min_recall`` (95 % by default) overall or for any class with at least
   ``min_support`` boxes, or when the FP32 model finds nothing to compare on the held-out frames,
   nothing is written (``force`` writes anyway) and the command exits 3.

The INT8 model carries the metadata key ``trakr_quantized``, so detectors report precision
``int8``; point ``trakr.detector.model_path`` at it to use it.

Example:
    >>> import numpy as np, supervision as sv
    >>> ref = sv.Detections(xyxy=np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), class_id=np.array([0, 2]))
    >>> got = sv.Detections(xyxy=np.array([[1, 0, 10, 10]], float), class_id=np.array([0]))
    >>> a = agreement([ref], [got], ["person", "bicycle", "car"])
    >>> a.per_class["person"], a.per_class["car"], a.recall
    ((1, 1), (1, 0), 0.5)
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from trakr.inference.base import INT8_METADATA, letterbox_batch, model_file
from trakr.logs import redact

log = logging.getLogger(__name__)

EXIT_POOR_AGREEMENT = 3


class QuantizeError(RuntimeError):
    """The source gave no frames, or the model could not be quantized."""


# ------------------------------------------------------------------------------------- frames
def grab_frames(source: str, count: int, step: int = 10, timeout_s: float = 10.0) -> list[np.ndarray]:
    """``count`` BGR frames from a clip (spread evenly over it) or a camera (every ``step``-th
    frame as it arrives). Open and read time out after ``timeout_s``."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(timeout_s * 1000),
    ]
    cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        raise QuantizeError(f"cannot open {redact(source)}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if Path(source).is_file() else 0
        if total > 0:
            step = max(1, total // count)
        frames: list[np.ndarray] = []
        i = 0
        while len(frames) < count:
            ok = cap.grab()
            if not ok:
                break
            if i % step == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append(frame)
            i += 1
    finally:
        cap.release()
    if not frames:
        raise QuantizeError(f"no frames from {redact(source)}")
    return frames


def split_frames(frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration and held-out frames: every third frame is held out."""
    return [f for i, f in enumerate(frames) if i % 3 != 2], [f for i, f in enumerate(frames) if i % 3 == 2]


# ------------------------------------------------------------------------------------- model
def decode_head_nodes(model) -> list[str]:
    """Names of the nodes that decode boxes (left in FP32).

    Ultralytics exports name nodes by module (``/model.23/...``): the last module is the Detect
    head, whose ``cv2``/``cv3`` branches are ordinary convolutions (quantized) and whose other
    nodes (DFL, anchor grid, strides, sigmoid, concat) decode boxes. For other exports: every
    node between the output and the last convolutions.
    """
    nodes = model.graph.node
    modules = [m for n in nodes if (m := re.match(r"/model\.(\d+)/", n.name))]
    if modules:
        head = f"/model.{max(int(m.group(1)) for m in modules)}/"
        decode = [
            n
            for n in nodes
            if n.name.startswith(head) and not n.name.startswith((head + "cv2", head + "cv3", head + "one2one"))
        ]
        # the last convolution of each branch too: its output (box distribution and class logits)
        # goes to the decoder in FP32 instead of through an 8-bit quantize/dequantize pair
        feeding = {i for n in decode for i in n.input}
        last = [n for n in nodes if n.name.startswith(head) and n.op_type == "Conv" and set(n.output) & feeding]
        return list(dict.fromkeys(n.name for n in decode + last))
    producer = {o: n for n in nodes for o in n.output}
    out, stack = set(), [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in out or node.op_type == "Conv":
            continue
        out.add(node.name)
        stack.extend(node.input)
    return sorted(out)


def quantize_model(src: Path, dst: Path, frames: list[np.ndarray], imgsz: int) -> list[str]:
    """Write an INT8 QDQ copy of ``src`` to ``dst``, calibrated on ``frames``; returns the nodes
    left in FP32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = ({name: letterbox_batch([f], imgsz)[0]} for f in frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="trakr-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception as e:  # shape inference is an optimisation, not a requirement
            log.warning("quantization pre-processing skipped: %s", e)
            shutil.copyfile(src, prepared)
        model = onnx.load(str(prepared))
        excluded = decode_head_nodes(model)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
        out = onnx.load(str(quantized))
        del out.metadata_props[:]
        for p in onnx.load(str(src), load_external_data=False).metadata_props:  # class names etc.
            out.metadata_props.add(key=p.key, value=p.value)
        out.metadata_props.add(
            key=INT8_METADATA, value=f"QDQ per-channel, {len(frames)} calibration frames, imgsz {imgsz}"
        )
        tmp_out = Path(tmp) / "final.onnx"
        onnx.save(out, str(tmp_out))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_out), dst)
    return excluded


# ------------------------------------------------------------------------------------- agreement
@dataclass
class Agreement:
    """How many of the FP32 model's boxes the INT8 model finds (same class, IoU >= 0.5)."""

    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)
    """class -> (FP32 boxes, of which INT8 found)."""
    extra: int = 0
    """INT8 boxes with no FP32 box."""

    @property
    def reference(self) -> int:
        return sum(n for n, _ in self.per_class.values())

    @property
    def recall(self) -> float:
        return sum(k for _, k in self.per_class.values()) / self.reference if self.reference else 1.0

    def poor(self, min_recall: float, min_support: int) -> list[str]:
        """What falls short: ``"all"`` and/or the classes with enough boxes below ``min_recall``."""
        short = ["all"] if self.recall < min_recall else []
        return short + [c for c, (n, k) in self.per_class.items() if n >= min_support and k / n < min_recall]


def agreement(
    reference: list[sv.Detections], candidate: list[sv.Detections], class_names: list[str], iou: float = 0.5
) -> Agreement:
    """Per-class box recall of ``candidate`` against ``reference``, greedy one-to-one matching."""
    result = Agreement()
    counts: dict[int, list[int]] = {}
    for ref, cand in zip(reference, candidate):
        matched_cand = 0
        for cid in np.unique(np.asarray(ref.class_id)) if len(ref) else []:
            r, c = ref.xyxy[ref.class_id == cid], cand.xyxy[cand.class_id == cid] if len(cand) else np.zeros((0, 4))
            hits = 0
            if len(c):
                ious = sv.box_iou_batch(r, c)
                used: set[int] = set()
                for i in np.argsort(-ious.max(axis=1)):
                    j = next((j for j in np.argsort(-ious[i]) if ious[i, j] >= iou and j not in used), None)
                    if j is not None:
                        used.add(int(j))
                        hits += 1
            matched_cand += hits
            tally = counts.setdefault(int(cid), [0, 0])
            tally[0] += len(r)
            tally[1] += hits
        result.extra += len(cand) - matched_cand
    result.per_class = {class_names[c]: (n, k) for c, (n, k) in sorted(counts.items())}
    return result


# ------------------------------------------------------------------------------------- command
@dataclass
class QuantizeResult:
    agreement: Agreement
    short: list[str]
    """What fell below the threshold (empty: good)."""
    written: bool
    calibration_frames: int
    holdout_frames: int
    fp32_ms: float
    int8_ms: float
    exit_code: int


def quantize_command(
    source: str,
    out: Path,
    *,
    model_path: str | Path | None = None,
    frames: int = 48,
    imgsz: int = 416,
    min_recall: float = 0.95,
    min_support: int = 10,
    confidence: float = 0.35,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> QuantizeResult:
    """Grab, calibrate, compare, and write ``out`` only when the agreement is good (or ``force``)."""
    from trakr.inference.onnx import OnnxDetector

    src = model_file(model_path)
    grabbed = grab_frames(source, frames)
    calib, holdout = split_frames(grabbed)
    if not holdout:
        raise QuantizeError(f"only {len(grabbed)} frame(s) from {redact(source)}: need at least 3")
    echo(f"calibrating on {len(calib)} frames, comparing on {len(holdout)} held-out frames, imgsz {imgsz}")
    with tempfile.TemporaryDirectory(prefix="trakr-quant-") as tmp:
        candidate = Path(tmp) / "int8.onnx"
        quantize_model(src, candidate, calib, imgsz)
        fp32 = OnnxDetector(src, imgsz, confidence)
        int8 = OnnxDetector(candidate, imgsz, confidence)
        ref, fp32_ms = _timed(fp32, holdout)
        got, int8_ms = _timed(int8, holdout)
        agree = agreement(ref, got, fp32.class_names)
        short = agree.poor(min_recall, min_support) if agree.reference else ["no FP32 boxes on the held-out frames"]
        echo(f"{'class':<16}{'fp32 boxes':>11}{'int8 found':>11}{'recall':>8}")
        for name, (n, k) in agree.per_class.items():
            flag = "  <- below" if name in short else ""
            echo(f"{name:<16}{n:>11}{k:>11}{k / n:>8.1%}{flag}")
        echo(f"{'all':<16}{agree.reference:>11}{round(agree.recall * agree.reference):>11}{agree.recall:>8.1%}")
        echo(f"extra int8 boxes: {agree.extra}; detect ms/frame (onnxruntime): fp32 {fp32_ms:.1f}, int8 {int8_ms:.1f}")
        written = False
        if not short or force:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(candidate), out)
            written = True
    need = f"{min_recall:.0%} (overall and for every class with >= {min_support} boxes)"
    if short:
        where = ", ".join(short)
        if written:
            echo(f"WARNING: INT8 agreement is below {need} for: {where}; written anyway (--force) to {out}")
        else:
            echo(f"REFUSED: INT8 agreement is below {need} for: {where}; nothing written (--force writes anyway)")
    else:
        echo(f"INT8 model written to {out}: agreement {agree.recall:.1%} >= {min_recall:.0%}")
    return QuantizeResult(
        agree, short, written, len(calib), len(holdout), fp32_ms, int8_ms, EXIT_POOR_AGREEMENT if short else 0
    )


def _timed(det, frames: list[np.ndarray]) -> tuple[list[sv.Detections], float]:
    det.detect(frames[:1])  # warm-up
    t0 = time.perf_counter()
    dets = [det.detect([f])[0] for f in frames]
    return dets, (time.perf_counter() - t0) * 1000 / len(frames)
