"""What a bench measures, typed in one place; ``to_json()`` writes the ``trakr-bench.json`` format.

The JSON keys are those of the files already published (``docs/performance.json``); newer fields
(gate decisions by reason, detector precision, machine load) are added beside them.

A measurement counts as *quiet* when the other processes on the machine used at most
:data:`~trakr.bench.machine.QUIET_SHARE` of it; a run, and the whole bench, are quiet when every
measurement in them is. The machine's types live in :mod:`trakr.bench.machine`, the checks' in
:mod:`trakr.bench.gate_check` and :mod:`trakr.bench.capture_check`.

Example:
    >>> r = Ratios(trakr_over_raw=0.9)
    >>> r.to_json()
    {'trakr_over_raw': 0.9}
    >>> Latency(p50=10.0, p95=20.0, p99=30.0).to_json()
    {'p50': 10.0, 'p95': 20.0, 'p99': 30.0}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from trakr.bench.capture_check import CaptureCheck
from trakr.bench.gate_check import GateCheck
from trakr.bench.machine import CpuShare, MachineInfo, MachineLoad

# -- shared pieces ---------------------------------------------------------------------------------


@dataclass
class Latency:
    """Capture→result latency percentiles (ms)."""

    p50: float | None
    p95: float | None
    p99: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunLatency(Latency):
    max: float | None = None
    mean: float | None = None


@dataclass
class NaiveLatency(Latency):
    max: float | None = None
    first_half_p50: float | None = None
    second_half_p50: float | None = None
    """p50 of the first and second half of the frames: a loop falling behind shows its backlog."""


# -- measurements ----------------------------------------------------------------------------------


@dataclass
class RawResult:
    """The detector alone on preloaded frames: this machine's limit for the model."""

    batch_fps: dict[int, float]
    """Frames/s at each batch size."""
    best_batch: int
    fps: float
    ms_per_frame: float
    batch_ms: dict[int, float]
    infer_only_fps: float | None = None
    """``infer()`` alone on a ready tensor at the best batch size."""
    detector: str = ""
    detector_precision: str = ""
    load: MachineLoad | None = None

    @property
    def quiet(self) -> bool:
        return self.load is None or self.load.quiet

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "batch_fps": {str(k): v for k, v in self.batch_fps.items()},
            "best_batch": self.best_batch,
            "fps": self.fps,
            "ms_per_frame": self.ms_per_frame,
        }
        if self.infer_only_fps is not None:
            d["infer_only_fps"] = self.infer_only_fps
        d["batch_ms"] = {str(k): v for k, v in self.batch_ms.items()}
        d["detector"], d["detector_precision"] = self.detector, self.detector_precision
        if self.load is not None:
            d["load"] = self.load.to_json()
        return d


@dataclass
class CameraResult:
    """One camera over the steady window of a trakr run."""

    camera: int
    name: str
    state: str
    capture_fps: float | None
    published_fps: float | None
    analysed_fps: float | None
    gate_pass_rate: float | None
    dropped: int
    """Frames replaced in the latest-frame slot before the batcher took them."""
    drop_rate: float | None
    """``dropped`` / frames put into the slot."""
    reconnects: int
    latency_ms: Latency
    gate_reasons: dict[str, int]
    """Gate decisions by reason (``motion``, ``keyframe``, ``tracked``, ``ungated``, ``skipped``)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """One second of a trakr run (the plot's points)."""

    t: float
    rss_mb: float
    cpu_percent: float
    analysed_fps: float
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class TrakrResult:
    """The real pipeline over its steady window."""

    cameras: int
    duration_s: float
    window_s: float
    batch_size: int
    deadline_ms: float
    imgsz: int
    gate: bool
    backend: str
    """The configured backend (``onnx``, ``redis``...)."""
    per_camera: list[CameraResult]
    capture_fps: float | None
    published_fps: float | None
    analysed_fps: float | None
    gate_pass_rate: float | None
    gate_reasons: dict[str, int]
    dropped: int
    drop_rate: float | None
    saturated: bool
    """More than 5 % of the frames put into the slots were dropped: the pipeline was the limit."""
    batches: int
    batch_fill: float | None
    model_ms_per_frame: float | None
    model_ms_per_batch: float | None
    detector_busy: float | None
    latency_ms: RunLatency
    latency_p50_slope_ms_per_min: float | None
    rss_peak_mb: float
    rss_slope_mb_per_min: float | None
    cpu: CpuShare
    alerts: int
    detector_errors: int
    detector: str
    """The backend as the detector names itself (``onnxruntime``, ``redis``...)."""
    detector_precision: str
    detector_stats: dict[str, float] | None
    load: MachineLoad
    series: list[Sample]
    batch_choice: dict[str, Any] | None = None
    """How the batch size was chosen (:meth:`trakr.inference.auto.BatchChoice.to_json`)."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if v is None and name == "batch_choice":
                continue
            if name == "cpu":
                d.update(v.to_json())
            elif name == "per_camera":
                d[name] = [c.to_json() for c in v]
            elif name == "series":
                d[name] = [asdict(s) for s in v]
            elif hasattr(v, "to_json"):
                d[name] = v.to_json()
            else:
                d[name] = v
        return d


@dataclass
class NaiveResult:
    """One thread reading each camera in turn and running the model on every frame."""

    cameras: int
    duration_s: float
    analysed_fps: float | None
    latency_ms: NaiveLatency
    latency_slope_ms_per_min: float | None
    cpu: CpuShare
    load: MachineLoad

    def to_json(self) -> dict[str, Any]:
        return {
            "cameras": self.cameras,
            "duration_s": self.duration_s,
            "analysed_fps": self.analysed_fps,
            "latency_ms": self.latency_ms.to_json(),
            "latency_slope_ms_per_min": self.latency_slope_ms_per_min,
            **self.cpu.to_json(),
            "load": self.load.to_json(),
        }


@dataclass
class PeerResult:
    """The peer over its steady window (the figures its script measured)."""

    cameras: int
    analysed_fps: float | None
    latency_ms: Latency
    cpu_percent: float | None
    """The peer process, percent of one core."""
    rss_peak_mb: float | None
    """The peer process and its children, peak."""
    details: dict[str, Any] = field(default_factory=dict)
    """Everything else the script reported (versions, batches, model ms/frame, start-up times)."""
    load: MachineLoad | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any], load: MachineLoad | None = None) -> PeerResult:
        lat = d.get("latency_ms") or {}
        core = {"cameras", "analysed_fps", "latency_ms", "cpu_percent", "rss_peak_mb"}
        return cls(
            cameras=int(d.get("cameras") or 0),
            analysed_fps=d.get("analysed_fps"),
            latency_ms=Latency(p50=lat.get("p50"), p95=lat.get("p95"), p99=lat.get("p99")),
            cpu_percent=d.get("cpu_percent"),
            rss_peak_mb=d.get("rss_peak_mb"),
            details={k: v for k, v in d.items() if k not in core},
            load=load,
        )

    @classmethod
    def failed(cls, cameras: int, error: str) -> PeerResult:
        return cls(cameras, None, Latency(None, None, None), None, None, error=error)

    @property
    def quiet(self) -> bool:
        return self.load is None or self.load.quiet

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "cameras": self.cameras,
            "analysed_fps": self.analysed_fps,
            "latency_ms": self.latency_ms.to_json(),
            "cpu_percent": self.cpu_percent,
            "rss_peak_mb": self.rss_peak_mb,
            **self.details,
        }
        if self.load is not None:
            d["load"] = self.load.to_json()
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class Ratios:
    trakr_over_raw: float | None = None
    trakr_over_raw_same_batch: float | None = None
    trakr_over_naive: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ThroughputTarget:
    analysed_fps: float | None
    raw_fps: float
    ratio: float | None
    saturated: bool
    target: str
    met: bool | None
    """``None`` when the run was not saturated (the cameras, not trakr, were the limit)."""


@dataclass
class LatencyTarget:
    p99_ms: float
    bound_ms: float
    target: str
    met: bool
    p50_slope_ms_per_min: float | None


@dataclass
class RssTarget:
    slope_mb_per_min: float | None
    target: str
    met: bool | None
    note: str


@dataclass
class Targets:
    rss: RssTarget
    throughput: ThroughputTarget | None = None
    latency: LatencyTarget | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.throughput is not None:
            d["throughput"] = asdict(self.throughput)
        if self.latency is not None:
            d["latency"] = asdict(self.latency)
        d["rss"] = asdict(self.rss)
        return d


@dataclass
class RunResult:
    """One camera count: trakr, the naive loop, and where trakr stands."""

    cameras: int
    trakr: TrakrResult
    ratios: Ratios
    targets: Targets
    naive: NaiveResult | None = None
    peer: PeerResult | None = None
    """The peer on the same cameras (``--peer``; once per camera count, beside the first detector's run)."""

    @property
    def quiet(self) -> bool:
        return (
            self.trakr.load.quiet
            and (self.naive is None or self.naive.load.quiet)
            and (self.peer is None or self.peer.quiet)
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"cameras": self.cameras, "trakr": self.trakr.to_json()}
        if self.naive is not None:
            d["naive"] = self.naive.to_json()
        if self.peer is not None:
            d["peer"] = self.peer.to_json()
        d["ratios"] = self.ratios.to_json()
        d["targets"] = self.targets.to_json()
        d["quiet"] = self.quiet
        return d


# -- the whole bench -------------------------------------------------------------------------------


@dataclass
class BenchResult:
    command: str | None
    started: str
    machine: MachineInfo
    options: dict[str, Any]
    warmup_s: float
    runs: list[RunResult] = field(default_factory=list)
    raw: RawResult | None = None
    """The raw model of the first detector backend (the published format)."""
    raw_by_detector: dict[str, RawResult] = field(default_factory=dict)
    """The raw model of every detector backend the runs used (``--detectors``)."""
    gate_check: GateCheck | None = None
    capture_check: CaptureCheck | None = None
    plot: str | None = None

    @property
    def quiet(self) -> bool:
        """Every measurement ran on a quiet machine."""
        return all(r.quiet for r in self.runs) and all(
            r.quiet for r in [*([self.raw] if self.raw else []), *self.raw_by_detector.values()]
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "command": self.command,
            "started": self.started,
            "machine": self.machine.to_json(),
            "options": self.options,
            "warmup_s": self.warmup_s,
            "runs": [r.to_json() for r in self.runs],
        }
        for name in ("raw", "gate_check", "capture_check"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v.to_json()
        if len(self.raw_by_detector) > 1:
            d["raw_by_detector"] = {k: v.to_json() for k, v in self.raw_by_detector.items()}
        if self.plot is not None:
            d["plot"] = self.plot
        d["quiet"] = self.quiet
        return d
