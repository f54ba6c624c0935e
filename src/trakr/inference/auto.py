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
from pathlib import Path
from typing import Any

import numpy as np

from trakr.inference.base import INT8_METADATA, LocalDetector, model_file, model_id, model_metadata, to_tensor

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
    from trakr.inference.openvino import _import_openvino, cpu_has_bf16

    bf16 = cpu_has_bf16(_import_openvino().Core())
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
) -> LocalDetector:
    """The fastest installed backend for this model and machine (cached choice, else measured)."""
    path = model_file(model_path)
    args = (path, imgsz, confidence, iou, threads, providers, precision)
    names = candidates(path, precision)
    key = choice_key(model_id(path), imgsz, threads, providers, precision)
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
