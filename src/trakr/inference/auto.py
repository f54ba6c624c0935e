"""The ``auto`` backend: run the fastest in-process backend installed here, measured once.

At first start every installed backend (``onnxruntime`` always, ``openvino`` when the package is
installed, at BF16 and at FP32 when the CPU has BF16 and ``precision`` is ``auto``: measured
here, FP32 beat BF16 whenever other work loaded the machine) loads the model at the configured
``imgsz`` and threads, runs it twice to warm up, then a few times more, the candidates taking
turns (so that load from other work hits them alike).
The one with the lowest median wins; the others are closed. The choice and the figures are
logged and cached in ``backend-choice.json`` under ``$TRAKR_CACHE`` (default ``~/.cache/trakr``),
keyed by the model file's hash, the settings and the machine (CPU model, core count, package
versions), so a later start reuses it at once and a new model, CPU or package version measures
again. A choice measured while the machine was overloaded (1-min load above its core count) is
provisional: the next start measures again. A backend that fails to load is logged and left out.

``batch_size: auto`` (the default of ``common.batch_size``; a number set in the config is used as
it is) works the same way: at first start the chosen detector runs ``detect()`` on camera-sized
frames at batch 1, 2, 4 and 8, the sizes taking turns, and the pipeline takes the smallest batch
that no bigger one beats by more than 5 % per frame (a batch holds every frame's result until the
whole batch is done). The choice is logged once and cached in ``batch-choice.json`` beside the
backend choice, keyed by model, backend, precision, size, threads and machine. Threads are not
picked here: alone, the model always runs fastest on every core; what the decode threads cost it
only shows in the pipeline (``trakr bench --threads``).

Example:
    >>> key = choice_key("0123abcd", imgsz=416, threads=2, providers=None, precision="auto")
    >>> key.startswith("0123abcd/416/2/")
    True
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trakr.inference.base import INT8_METADATA, Detector, LocalDetector, model_file, model_id, model_metadata, to_tensor

log = logging.getLogger(__name__)

CACHE_FILE = "backend-choice.json"
WARMUP_RUNS = 2
TIMED_RUNS = 11


def cache_path() -> Path:
    """``$TRAKR_CACHE/backend-choice.json``, default ``~/.cache/trakr/backend-choice.json``."""
    env = os.environ.get("TRAKR_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "trakr") / CACHE_FILE


def installed_backends() -> list[str]:
    """In-process backends whose package is installed, ``onnxruntime`` first."""
    return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """What the choice depends on besides the model: CPU, cores, package versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ort_pkg = next((p for p in ("onnxruntime", "onnxruntime-gpu") if _version(p) != "-"), "onnxruntime")
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "onnxruntime": f"{ort_pkg} {_version(ort_pkg)}",
        "openvino": _version("openvino"),
    }


def choice_key(
    model_hash: str, imgsz: int, threads: int, providers: list[str] | None, precision: str, info: dict | None = None
) -> str:
    """Cache key: model hash, settings, then the machine (CPU model, cores, versions)."""
    m = info if info is not None else machine()
    prov = ",".join(providers or ["CPUExecutionProvider"])
    return f"{model_hash}/{imgsz}/{threads}/{prov}/{precision}/{m['cpu']}/{m['cores']}/{m['onnxruntime']}/ov-{m['openvino']}"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable backend cache %s: %s", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key`` (atomic replace; other keys kept). Failure is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not cache the backend choice in %s: %s", path, e)


def candidates(path: Path, precision: str) -> list[str]:
    """What ``auto`` compares: ``onnxruntime``, and OpenVINO at each precision worth trying
    (``openvino-bf16`` and ``openvino-fp32`` on a CPU with BF16 when ``precision`` is ``auto``:
    which is faster depends on the machine and its load)."""
    out = ["onnxruntime"]
    if "openvino" not in installed_backends():
        return out
    if precision != "auto":
        return out + [f"openvino-{precision}"]
    if INT8_METADATA in model_metadata(path):
        return out + ["openvino"]  # an INT8 model: the hint only touches the few FP32 layers
    from trakr.inference.openvino import cpu_has_bf16, shared_core

    bf16 = cpu_has_bf16(shared_core())
    return out + (["openvino-bf16", "openvino-fp32"] if bf16 else ["openvino-fp32"])


def _build(candidate: str, args: tuple) -> LocalDetector:
    model_path, imgsz, confidence, iou, threads, providers, precision = args
    backend, _, variant = candidate.partition("-")
    if backend == "openvino":
        from trakr.inference.openvino import OpenVinoDetector

        return OpenVinoDetector(model_path, imgsz, confidence, iou, threads, variant or precision)  # type: ignore[arg-type]
    from trakr.inference.onnx import OnnxDetector

    return OnnxDetector(model_path, imgsz, confidence, iou, threads, providers)


def _probe_tensor(imgsz: int) -> np.ndarray:
    """A deterministic textured frame (timing does not depend on content, NMS barely does)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (imgsz, imgsz, 3), dtype=np.uint8)
    return to_tensor([frame])


def measure(detectors: dict[str, LocalDetector], imgsz: int, runs: int = TIMED_RUNS) -> dict[str, float]:
    """Median ms per run of each detector's model at batch 1, the backends taking turns."""
    tensor = _probe_tensor(imgsz)
    for det in detectors.values():
        for _ in range(WARMUP_RUNS):
            det.infer(tensor)
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(runs):
        for name, det in detectors.items():
            t0 = time.perf_counter()
            det.infer(tensor)
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: round(statistics.median(ts), 2) for name, ts in times.items()}


def build_fastest(
    model_path: str | Path | None = None,
    imgsz: int = 416,
    confidence: float = 0.35,
    iou: float = 0.5,
    threads: int = 0,
    providers: list[str] | None = None,
    precision: str = "auto",
    backends: tuple[str, ...] | None = None,
) -> LocalDetector:
    """The fastest installed backend for this model and machine (cached choice, else measured).

    ``backends`` limits the candidates, e.g. ``("openvino",)``: the ``openvino`` backend with
    ``precision: auto`` runs whichever of BF16 and FP32 is faster here (a CPU that has BF16
    instructions is not always faster with them: measured 40 against 16 ms/frame on one)."""
    path = model_file(model_path)
    args = (path, imgsz, confidence, iou, threads, providers, precision)
    names = [n for n in candidates(path, precision) if backends is None or n.partition("-")[0] in backends]
    key = choice_key(model_id(path), imgsz, threads, providers, precision)
    if backends is not None:
        key += "/only-" + ",".join(sorted(backends))
    cache = cache_path()
    cached = _read_cache(cache).get(key)
    overloaded = isinstance(cached, dict) and float(cached.get("load_1min") or 0) > (os.cpu_count() or 1)
    if isinstance(cached, dict) and cached.get("choice") in names and not overloaded:
        try:
            det = _build(cached["choice"], args)
        except Exception as e:  # the package broke since: measure again
            log.warning("cached backend %s failed to load (%s); measuring again", cached["choice"], e)
        else:
            log.info(
                "detector backend auto: %s (cached choice of %s: %s)",
                cached["choice"],
                cached.get("measured_at", "?"),
                _figures(cached.get("ms_per_frame", {}), cached.get("load_1min")),
            )
            return det
    detectors: dict[str, LocalDetector] = {}
    for name in names:
        try:
            detectors[name] = _build(name, args)
        except Exception as e:
            log.warning("detector backend auto: %s failed to load, left out: %s", name, e)
    if not detectors:
        raise RuntimeError("detector backend auto: no backend could load the model (see the warnings above)")
    if len(detectors) == 1:
        name, det = next(iter(detectors.items()))
        log.info("detector backend auto: %s (the only backend that loads here)", name)
        return det
    imgsz_run = next(iter(detectors.values())).imgsz
    load = round(os.getloadavg()[0], 2)
    ms = measure(detectors, imgsz_run)
    best = min(ms, key=lambda k: ms[k])
    for name, det in detectors.items():
        if name != best:
            det.close()
    log.info(
        "detector backend auto: %s, measured at imgsz %d, batch 1, %s threads: %s; cached in %s",
        best,
        imgsz_run,
        threads or os.cpu_count(),
        _figures(ms, load),
        cache,
    )
    entry = {
        "choice": best,
        "backend": detectors[best].backend,
        "precision": detectors[best].precision,
        "ms_per_frame": ms,
        "load_1min": load,
        "imgsz": imgsz_run,
        "threads": threads,
        "model": path.name,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_cache(cache, key, entry)
    return detectors[best]


def _figures(ms: dict[str, float], load: float | None) -> str:
    text = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(ms.items(), key=lambda kv: kv[1]))
    return text + (f" (1-min load {load})" if load is not None else "")


# ------------------------------------------------------------------------------ batch_size: auto

BATCH_CACHE_FILE = "batch-choice.json"
BATCH_CANDIDATES = (1, 2, 4, 8)
BATCH_ROUNDS = 5
BATCH_TOLERANCE = 0.05
"""A bigger batch is taken only when it is more than this share faster per frame than every
smaller one: a batch of ``b`` holds each frame's result until ``b`` frames are done."""
REMOTE_BATCH_SIZE = 4
"""``batch_size: auto`` with a remote backend (Redis workers): a batch amortises one round trip;
nothing here can measure the workers' machine."""


@dataclass(frozen=True)
class BatchChoice:
    """The batch size the pipeline uses, and where it came from."""

    batch_size: int
    source: str
    """``config`` (set in the config), ``measured``, ``cached`` (a measurement of an earlier start)
    or ``remote`` (Redis workers: :data:`REMOTE_BATCH_SIZE`)."""
    ms_per_frame: dict[int, float] = field(default_factory=dict)
    """Median ms per frame of ``detect()`` at each batch size measured."""
    load_1min: float | None = None

    def describe(self) -> str:
        """``"1 (auto, measured: batch 1 9.8 ms/frame, ...)"``: for the log, the bench and the console."""
        if self.source == "config":
            return f"{self.batch_size} (config)"
        if self.source == "remote":
            return f"{self.batch_size} (auto, remote backend default)"
        figures = ", ".join(f"batch {b} {ms:.1f}" for b, ms in sorted(self.ms_per_frame.items()))
        return f"{self.batch_size} (auto, {self.source}: {figures} ms/frame)"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"batch_size": self.batch_size, "source": self.source}
        if self.ms_per_frame:
            d["ms_per_frame"] = {str(b): v for b, v in sorted(self.ms_per_frame.items())}
        if self.load_1min is not None:
            d["load_1min"] = self.load_1min
        return d


def batch_cache_path() -> Path:
    """``$TRAKR_CACHE/batch-choice.json`` (beside the backend choice)."""
    return cache_path().with_name(BATCH_CACHE_FILE)


def batch_key(detector: LocalDetector, info: dict | None = None) -> str:
    """Cache key of a batch choice: the model, the backend as it runs (precision, size, threads)
    and the machine."""
    m = info if info is not None else machine()
    threads = getattr(detector, "threads", 0) or os.cpu_count() or 1
    return (
        f"{model_id(detector.model_path)}/{detector.backend}/{detector.precision}/{detector.imgsz}/{threads}"
        f"/{m['cpu']}/{m['cores']}/{m['onnxruntime']}/ov-{m['openvino']}"
    )


def _probe_frames(n: int) -> list[np.ndarray]:
    """``n`` deterministic camera-sized textured frames (768x576, the sample cameras' size)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (576, 768, 3), dtype=np.uint8)
    return [np.roll(base, 8 * i, axis=1) for i in range(n)]


def measure_batches(
    detector: LocalDetector, sizes: tuple[int, ...] = BATCH_CANDIDATES, rounds: int = BATCH_ROUNDS
) -> dict[int, float]:
    """Median ms per frame of ``detector.detect()`` (letterbox, model, NMS) at each batch size,
    the sizes taking turns so that load from other work hits them alike."""
    frames = _probe_frames(max(sizes))
    for b in sizes:  # warm-up: allocations, per-shape compilation
        detector.detect(frames[:b])
    times: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(rounds):
        for b in sizes:
            t0 = time.perf_counter()
            detector.detect(frames[:b])
            times[b].append((time.perf_counter() - t0) * 1000 / b)
    return {b: round(statistics.median(ts), 2) for b, ts in times.items()}


def pick_batch(ms_per_frame: dict[int, float], tolerance: float = BATCH_TOLERANCE) -> int:
    """The smallest batch size no bigger one beats by more than ``tolerance`` per frame.

    >>> pick_batch({1: 10.0, 2: 9.8, 4: 9.7, 8: 9.9})
    1
    >>> pick_batch({1: 10.0, 2: 8.0, 4: 7.9, 8: 6.0})
    8
    """
    sizes = sorted(ms_per_frame)
    best = sizes[0]
    for b in sizes[1:]:
        if ms_per_frame[b] < ms_per_frame[best] * (1 - tolerance):
            best = b
    return best


def choose_batch_size(
    detector: LocalDetector, sizes: tuple[int, ...] = BATCH_CANDIDATES, max_load: float | None = None
) -> BatchChoice:
    """The batch size for ``detector`` on this machine: cached, else measured now and cached.

    A measurement taken while the machine was overloaded (1-min load above ``max_load``, default
    its core count) is provisional: the next start measures again."""
    key = batch_key(detector)
    cache = batch_cache_path()
    cached = _read_cache(cache).get(key)
    limit = max_load if max_load is not None else float(os.cpu_count() or 1)
    if isinstance(cached, dict) and float(cached.get("load_1min") or 0) <= limit:
        try:
            size = int(cached["batch_size"])
            ms = {int(b): float(v) for b, v in cached.get("ms_per_frame", {}).items()}
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed batch choice in %s", cache)
        else:
            if size >= 1:
                return BatchChoice(size, "cached", ms, cached.get("load_1min"))
    load = round(os.getloadavg()[0], 2)
    ms = measure_batches(detector, sizes)
    choice = BatchChoice(pick_batch(ms), "measured", ms, load)
    entry = {
        "batch_size": choice.batch_size,
        "ms_per_frame": {str(b): v for b, v in ms.items()},
        "load_1min": load,
        "backend": detector.backend,
        "precision": detector.precision,
        "imgsz": detector.imgsz,
        "model": detector.model_path.name,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_cache(cache, key, entry)
    return choice


def batch_size_for(configured: int | str, detector: Detector) -> BatchChoice:
    """What ``common.batch_size`` means for this detector: an int as it is; ``"auto"`` measured
    on an in-process detector (cached per model and machine), :data:`REMOTE_BATCH_SIZE` for a
    remote one. Logs the choice once."""
    if isinstance(configured, int):
        return BatchChoice(configured, "config")
    if not isinstance(detector, LocalDetector):
        choice = BatchChoice(REMOTE_BATCH_SIZE, "remote")
    else:
        choice = choose_batch_size(detector)
    log.info(
        "batch size auto: %s%s",
        choice.describe(),
        f"; cached in {batch_cache_path()}" if choice.source == "measured" else "",
    )
    return choice
