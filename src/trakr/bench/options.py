"""What ``trakr bench`` runs (:class:`BenchOptions`), and the trakr config each run uses.

Example:
    >>> opts = BenchOptions(cameras=parse_cameras("1,2"), duration=10, imgsz=320)
    >>> opts.cameras, opts.warmup_s()
    ([1, 2], 2.0)
    >>> cfg = bench_config(base_config_raw(opts), ["a.mp4", "b.mp4"], opts, Path("/tmp/out"))
    >>> [c.name for c in cfg.cameras], cfg.trakr.detector.imgsz
    (['bench-0', 'bench-1'], 320)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trakr.config import SysConfig, parse_config

ConfigPatch = Callable[[dict], None]
"""Changes a raw config in place before it is parsed (e.g. the Redis backend's address)."""


@dataclass
class BenchOptions:
    """What ``trakr bench`` runs (see :func:`trakr.bench.run.run_bench`)."""

    cameras: list[int] = field(default_factory=lambda: [4])
    """Camera counts, one trakr run each."""
    duration: float = 20.0
    """Seconds of each trakr run."""
    warmup: float | None = None
    """Seconds excluded from the steady window; default 20 % of the duration, 2..10 s."""
    source: str = "rtsp"
    """``rtsp`` (a local RTSP server) or ``file`` (the clip at its native rate)."""
    config: Path | None = None
    """Base config whose first cameras are cycled as templates; default the embedded demo."""
    imgsz: int | None = None
    batch_size: int | None = None
    deadline_ms: float | None = None
    threads: int | None = None
    gate: bool | None = None
    backend: str = "onnx"
    """``onnx`` (in-process) or ``redis`` (a private redis-server and ``workers`` trakr workers)."""
    detectors: list[str] | None = None
    """In-process detector backends to run trakr with, one run each per camera count (e.g.
    ``["onnxruntime", "openvino"]``); ``None``: the config's (``auto`` resolved once)."""
    isolate: bool = True
    """Each trakr run in a fresh process: its peak RSS is one pipeline's (compared with the peer's)."""
    gated_cameras: list[int] = field(default_factory=list)
    """Camera counts run once more with the change gate on (first detector backend, no peer, no
    naive loop): how many cameras the box holds when the gate skips unchanged frames."""
    peer: str | None = None
    """``roboflow``: also run Roboflow ``inference``'s InferencePipeline on the same cameras and model."""
    figures: Path | None = None
    """Write the README's Performance table (markdown) here: refused when the run was not quiet,
    unless ``allow_noisy`` (then every figure is marked)."""
    allow_noisy: bool = False
    workers: int = 1
    naive: bool = True
    naive_duration: float | None = None
    raw: bool = True
    raw_seconds: float = 1.5
    gate_check: bool = False
    capture_check: bool = False
    capture_seconds: float = 10.0
    plot: Path | None = None
    json_path: Path | None = Path("trakr-bench.json")
    command: str | None = None
    """The command line, recorded in the JSON."""

    def warmup_s(self) -> float:
        """Seconds left out at the start of each trakr run."""
        if self.warmup is not None:
            return max(0.0, min(self.warmup, self.duration * 0.8))
        return min(10.0, max(2.0, 0.2 * self.duration))

    def naive_s(self) -> float:
        """Seconds of the naive loop."""
        return self.naive_duration or min(10.0, max(3.0, self.duration / 2))

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


DETECTORS = ("onnxruntime", "openvino")


def parse_detectors(text: str | None) -> list[str] | None:
    """``"onnxruntime,openvino"`` -> the list; ``None``/empty -> ``None`` (the config's backend).

    >>> parse_detectors("onnxruntime, openvino"), parse_detectors(None)
    (['onnxruntime', 'openvino'], None)
    >>> parse_detectors("tensorrt")
    Traceback (most recent call last):
    ...
    ValueError: --detectors takes onnxruntime, openvino (got 'tensorrt')
    """
    if not text:
        return None
    vals = [x.strip() for x in text.split(",") if x.strip()]
    if not vals or any(v not in DETECTORS for v in vals):
        raise ValueError(f"--detectors takes {', '.join(DETECTORS)} (got {text!r})")
    return list(dict.fromkeys(vals))


def parse_cameras(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; a clear error for anything else.

    >>> parse_cameras("0")
    Traceback (most recent call last):
    ...
    ValueError: --cameras wants numbers between 1 and 64 (got '0')
    """
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--cameras wants numbers like 1,2,4 (got {text!r})") from None
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise ValueError(f"--cameras wants numbers between 1 and 64 (got {text!r})")
    return vals


def base_config_raw(opts: BenchOptions) -> dict:
    """The config the bench starts from: ``--config``, or the embedded demo."""
    if opts.config is not None:
        return json.loads(Path(opts.config).read_text())
    from trakr.devtools.demo import default_config_raw

    return default_config_raw()


def bench_config(
    base: dict,
    addresses: list[str],
    opts: BenchOptions,
    output_dir: Path,
    extra: ConfigPatch | None = None,
    detector: str | None = None,
) -> SysConfig:
    """``base`` with its cameras cycled over ``addresses`` (ids 0..N-1, every frame sampled);
    ``detector`` replaces the config's detector backend."""
    raw = json.loads(json.dumps(base))
    templates = raw.get("cameras") or [{"Detection": "person", "ROI": "NA"}]
    cams = []
    for i, addr in enumerate(addresses):
        cam = dict(templates[i % len(templates)])
        cam.update(CameraId=i, CamName=f"bench-{i}", Address=addr, CamDelay=0)
        cams.append(cam)
    raw["cameras"] = cams
    common = raw.setdefault("common", {})
    common["LogFileSave"] = False
    if opts.batch_size:
        common["batch_size"] = opts.batch_size
    tr = raw.setdefault("trakr", {})
    tr.setdefault("capture", {}).update(loop_files=True, realtime_files=True)
    tr.setdefault("output", {})["directory"] = str(output_dir)
    det = tr.setdefault("detector", {})
    if detector:
        det["backend"] = detector
    if opts.imgsz:
        det["imgsz"] = opts.imgsz
    if opts.threads is not None:
        det["threads"] = opts.threads
    if opts.deadline_ms is not None:
        tr.setdefault("batch", {})["deadline_ms"] = opts.deadline_ms
    if opts.gate is not None:
        tr.setdefault("gate", {})["enabled"] = opts.gate
    if extra:
        extra(raw)
    report = parse_config(raw)
    if not report.ok or report.config is None:
        raise ValueError("bench config invalid: " + "; ".join(str(p) for p in report.errors))
    return report.config
