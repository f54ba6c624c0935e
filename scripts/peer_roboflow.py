"""The peer in ``trakr bench --peer roboflow``: Roboflow ``inference``'s InferencePipeline on the
same RTSP cameras, with custom logic that runs the same ONNX model the way trakr does.

Runs in its own virtualenv (the one ``trakr bench --peer roboflow`` makes, with PyPI ``inference``
in it) and imports nothing from trakr. ``InferencePipeline.init_with_custom_logic`` reads every
camera (its own video sources and multiplexer); ``on_video_frame`` gets the frames the pipeline
collected from all sources in one call and runs them as one batch through onnxruntime: letterbox
(grey 114), RGB float32 NCHW in [0, 1], the model, class-aware NMS (``cv2.dnn.NMSBoxesBatched``),
boxes mapped back to the frame: the same work as trakr's detector at the same ``imgsz``,
threads, confidence and IoU.

Latency of a frame = when its result is ready (``on_video_frame`` returns) minus the frame's
``frame_timestamp`` (the wall time its video source grabbed it), the same span trakr measures
(the reader got the frame -> the detector's result). ``on_prediction`` counts results handed to
the sink. Over the steady window (after ``--warmup``): analysed frames/s, p50/p95/p99 latency, CPU
of this process (percent of one core) and its peak RSS (this process and its children, sampled
every 0.5 s). One JSON object goes to ``--json`` (and stdout).

Usage (what the bench runs)::

    PEER_VENV/bin/python scripts/peer_roboflow.py --model yolo11n.onnx --imgsz 416 --threads 2 \\
        --duration 20 --warmup 4 --json out.json rtsp://127.0.0.1:8554/cam0 rtsp://...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

# Keep the peer from phoning home (version check, usage metrics): nothing outside the box answers here.
os.environ.setdefault("DISABLE_VERSION_CHECK", "True")
os.environ.setdefault("METRICS_ENABLED", "False")
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;100000")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import psutil  # noqa: E402

PAD = 114


class Model:
    """The ONNX model with trakr's pre- and post-processing (letterbox, NMS, boxes in frame px)."""

    def __init__(self, path: str, imgsz: int, threads: int, confidence: float, iou: float):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.imgsz, self.confidence, self.iou = imgsz, confidence, iou
        self.threads = opts.intra_op_num_threads

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        s = self.imgsz
        h, w = image.shape[:2]
        scale = min(s / w, s / h)
        nw, nh = round(w * scale), round(h * scale)
        top, left = int(round((s - nh) / 2 - 0.1)), int(round((s - nw) / 2 - 0.1))
        out = np.full((s, s, 3), PAD, np.uint8)
        out[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return out, scale, float(left), float(top)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        if self.fixed_batch and tensor.shape[0] != self.fixed_batch:
            return np.concatenate(
                [self.session.run(None, {self.input: tensor[i : i + 1]})[0] for i in range(len(tensor))]
            )
        return self.session.run(None, {self.input: tensor})[0]

    def detect(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Boxes (xyxy, frame px), confidences and class ids per image."""
        boxes = [self.letterbox(img) for img in images]
        stage = np.stack([b[0] for b in boxes])
        tensor = np.ascontiguousarray(stage[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
        out = self.run(tensor)
        n, nc = len(out), out.shape[1] - 4
        conf_all = out[:, 4:, :].max(axis=1)
        img, anchor = np.nonzero(conf_all >= self.confidence)
        results: list[dict[str, np.ndarray]] = [
            {"xyxy": np.zeros((0, 4), np.float32), "confidence": np.zeros(0, np.float32), "class_id": np.zeros(0, int)}
            for _ in range(n)
        ]
        if len(img) == 0:
            return results
        cand = out[img, :, anchor]
        class_id = cand[:, 4:].argmax(axis=1)
        conf = conf_all[img, anchor]
        cx, cy, w, h = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]
        x0, y0 = cx - w / 2, cy - h / 2
        kept = cv2.dnn.NMSBoxesBatched(
            np.stack([x0, y0, w, h], axis=1).astype(np.float64), conf, (img * nc + class_id).astype(np.int32),
            self.confidence, self.iou,
        )  # fmt: skip
        keep = np.asarray(kept, dtype=int).reshape(-1)
        for i in range(n):
            k = keep[img[keep] == i]
            _, scale, left, top = boxes[i]
            hh, ww = images[i].shape[:2]
            xyxy = np.stack([x0[k] - left, y0[k] - top, x0[k] + w[k] - left, y0[k] + h[k] - top], axis=1) / scale
            xyxy = np.clip(xyxy, 0, [ww, hh, ww, hh]).astype(np.float32)
            results[i] = {"xyxy": xyxy, "confidence": conf[k].astype(np.float32), "class_id": class_id[k]}
        return results


class Recorder:
    """Results, latencies and resource use, appended from the pipeline's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: list[tuple[float, float, int]] = []  # (result ready, latency s, source)
        self.sunk = 0
        self.batches: list[tuple[float, int, float]] = []  # (done, frames, model s)
        self.rss_peak = 0
        self.errors = 0

    def sample_rss(self, stop: threading.Event) -> None:
        me = psutil.Process()
        while not stop.wait(0.5):
            rss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            with self.lock:
                self.rss_peak = max(self.rss_peak, rss)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("urls", nargs="+", help="camera addresses (rtsp://...)")
    ap.add_argument("--model", required=True, help="the ONNX file trakr runs")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    ap.add_argument("--confidence", type=float, default=0.35)
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds after the first result")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds left out at the start")
    ap.add_argument("--json", default=None, help="write the result here too")
    args = ap.parse_args(argv)

    t_import = time.monotonic()
    import inference
    from inference import InferencePipeline

    import_s = time.monotonic() - t_import
    model = Model(args.model, args.imgsz, args.threads, args.confidence, args.iou)
    model.detect([np.zeros((576, 768, 3), np.uint8)])  # warm-up: the pipeline's first frames are not a model load
    rec = Recorder()

    def on_video_frame(frames: Any) -> list[dict[str, np.ndarray]]:
        frames = frames if isinstance(frames, list) else [frames]
        t0 = time.perf_counter()
        try:
            out = model.detect([f.image for f in frames])
        except Exception:
            with rec.lock:
                rec.errors += 1
            raise
        now = time.time()
        model_s = time.perf_counter() - t0
        with rec.lock:
            rec.batches.append((now, len(frames), model_s))
            rec.done.extend((now, now - f.frame_timestamp.timestamp(), int(f.source_id or 0)) for f in frames)
        return out

    def on_prediction(predictions: Any, frames: Any) -> None:
        n = len([p for p in predictions if p is not None]) if isinstance(predictions, list) else 1
        with rec.lock:
            rec.sunk += n

    pipeline = InferencePipeline.init_with_custom_logic(
        video_reference=list(args.urls), on_video_frame=on_video_frame, on_prediction=on_prediction
    )
    stop = threading.Event()
    sampler = threading.Thread(target=rec.sample_rss, args=(stop,), daemon=True)
    sampler.start()
    t_start = time.monotonic()
    pipeline.start(use_main_thread=False)
    while time.monotonic() - t_start < 60:  # cameras connected and the first result out
        with rec.lock:
            if rec.done:
                break
        time.sleep(0.05)
    first_s = time.monotonic() - t_start
    time.sleep(args.warmup)
    proc = psutil.Process()
    cpu0, w0 = proc.cpu_times(), time.time()
    time.sleep(max(0.5, args.duration - args.warmup))
    cpu1, w1 = proc.cpu_times(), time.time()
    with rec.lock:
        done = [x for x in rec.done if w0 <= x[0] < w1]
        batches = [b for b in rec.batches if w0 <= b[0] < w1]
        rss_peak, sunk, errors = rec.rss_peak, rec.sunk, rec.errors
    pipeline.terminate()
    stop.set()
    join = threading.Thread(target=pipeline.join, daemon=True)
    join.start()
    join.join(timeout=10)
    window = max(1e-6, w1 - w0)
    lat = [x[1] for x in done]
    per_source = {str(i): round(sum(1 for x in done if x[2] == i) / window, 2) for i in range(len(args.urls))}
    n_frames = sum(b[1] for b in batches)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(1000 * v, 1)

    result = {
        "peer": "roboflow-inference",
        "inference_version": getattr(inference, "__version__", None) or _version("inference"),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "cameras": len(args.urls),
        "imgsz": args.imgsz,
        "threads": model.threads,
        "window_s": round(window, 2),
        "analysed_fps": round(len(done) / window, 2),
        "per_camera_fps": per_source,
        "batches": len(batches),
        "mean_batch": round(n_frames / len(batches), 2) if batches else None,
        "model_ms_per_frame": round(1000 * sum(b[2] for b in batches) / n_frames, 1) if n_frames else None,
        "latency_ms": {q: ms(percentile(lat, int(q[1:]))) for q in ("p50", "p95", "p99")},
        "cpu_percent": round(((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / window * 100, 1),  # fmt: skip
        "rss_peak_mb": round(rss_peak / 2**20, 1),
        "results_to_sink": sunk,
        "errors": errors,
        "import_s": round(import_s, 2),
        "first_result_s": round(first_s, 2),
        "joined": not join.is_alive(),
    }
    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    print(text, flush=True)
    sys.stdout.flush()
    os._exit(0)  # the pipeline's source threads may still be blocked in a read: do not wait for them


def _version(pkg: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
