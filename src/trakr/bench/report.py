"""What ``trakr bench`` prints: rich tables of a :class:`~trakr.bench.results.BenchResult`, and a plain
warning line for every measurement taken while other work kept the machine busy.

Example:
    >>> reasons_text({"skipped": 30, "motion": 12, "keyframe": 2})
    'motion 12, keyframe 2, skipped 30'
    >>> fmt(None), fmt(0.25, "{:.0%}")
    ('-', '25%')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from trakr.bench.capture_check import CaptureCheck
from trakr.bench.figures import ratio
from trakr.bench.gate_check import GateCheck
from trakr.bench.machine import MachineLoad
from trakr.bench.results import BenchResult, PeerResult, RawResult, RunResult, TrakrResult

REASON_ORDER = ("motion", "tracked", "keyframe", "ungated", "skipped")


def fmt(x: float | None, spec: str = "{:.1f}") -> str:
    return "-" if x is None else spec.format(x)


def reasons_text(reasons: dict[str, int]) -> str:
    """Gate decisions by reason, passing reasons first."""
    order = [r for r in REASON_ORDER if r in reasons] + sorted(set(reasons) - set(REASON_ORDER))
    return ", ".join(f"{r} {reasons[r]}" for r in order) or "-"


def batch_text(size: int, choice: dict[str, Any] | None) -> str:
    """The batch size and how it was chosen.

    >>> batch_text(1, {"batch_size": 1, "source": "measured", "ms_per_frame": {"1": 9.5, "2": 9.7}})
    '1 (auto, measured: 1 9.5, 2 9.7 ms/frame)'
    >>> batch_text(4, {"batch_size": 4, "source": "config"}), batch_text(2, None)
    ('4 (config)', '2')
    """
    if not choice:
        return str(size)
    if choice.get("source") == "config":
        return f"{size} (config)"
    ms = choice.get("ms_per_frame") or {}
    figures = ", ".join(f"{b} {v:.1f}" for b, v in ms.items())
    return f"{size} (auto, {choice.get('source')}" + (f": {figures} ms/frame)" if figures else ")")


def _table(title: str, columns: tuple[str, ...]) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right")
    return t


def run_table(run: RunResult) -> Table:
    """Per-camera detail of one trakr run."""
    t = run.trakr
    detector = f"{t.detector} {t.detector_precision}".strip()
    tab = _table(
        f"trakr, {run.cameras} camera(s), {t.window_s:.0f}s steady window "
        f"(imgsz {t.imgsz}, batch {batch_text(t.batch_size, t.batch_choice)}, deadline {t.deadline_ms:g} ms, "
        f"gate {'on' if t.gate else 'off'}, detector {detector})",
        (
            "camera",
            "capture fps",
            "analysed fps",
            "gate pass",
            "gate decisions",
            "slot drops",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ),
    )
    for c in t.per_camera:
        lat = c.latency_ms
        tab.add_row(
            str(c.camera),
            fmt(c.capture_fps),
            fmt(c.analysed_fps),
            fmt(c.gate_pass_rate, "{:.0%}"),
            reasons_text(c.gate_reasons),
            str(c.dropped),
            fmt(lat.p50, "{:.0f}"),
            fmt(lat.p95, "{:.0f}"),
            fmt(lat.p99, "{:.0f}"),
        )
    lat = t.latency_ms
    tab.add_row(
        "all",
        fmt(t.capture_fps),
        fmt(t.analysed_fps),
        fmt(t.gate_pass_rate, "{:.0%}"),
        reasons_text(t.gate_reasons),
        str(t.dropped),
        fmt(lat.p50, "{:.0f}"),
        fmt(lat.p95, "{:.0f}"),
        fmt(lat.p99, "{:.0f}"),
        style="bold",
    )
    return tab


def summary_table(result: BenchResult) -> Table:
    summ = _table(
        "trakr: " + ("scaling" if len(result.runs) > 1 else "summary"),
        (
            "cameras",
            "capture fps",
            "analysed fps",
            "batch fill",
            "model ms/frame",
            "detector busy",
            "p50 ms",
            "p99 ms",
            "CPU %",
            "helpers CPU %",
            "others CPU %",
            "peak RSS MB",
            "slot drops",
        ),
    )
    for run in result.runs:
        t = run.trakr
        summ.add_row(
            str(run.cameras),
            fmt(t.capture_fps),
            fmt(t.analysed_fps),
            fmt(t.batch_fill, "{:.0%}"),
            fmt(t.model_ms_per_frame),
            fmt(t.detector_busy, "{:.0%}"),
            fmt(t.latency_ms.p50, "{:.0f}"),
            fmt(t.latency_ms.p99, "{:.0f}"),
            fmt(t.cpu.process_cpu_percent, "{:.0f}"),
            fmt(t.cpu.helper_cpu_percent, "{:.0f}"),
            fmt(t.load.others_cpu_percent, "{:.0f}") + ("" if t.load.quiet else " (noisy)"),
            fmt(t.rss_peak_mb, "{:.0f}"),
            fmt(t.drop_rate, "{:.0%}"),
        )
    return summ


def references_table(result: BenchResult) -> Table:
    raw = result.raw
    ref = _table(
        "references: raw model" + (f" {raw.fps:.1f} fps at batch {raw.best_batch}" if raw else "") + ", naive loop",
        (
            "cameras",
            "trakr fps",
            "naive fps",
            "naive p50 ms",
            "naive p99 ms",
            "trakr/raw",
            "trakr/naive",
            "p99 < bound",
            "machine CPU %",
        ),
    )
    for run in result.runs:
        t, nv, r, lat = run.trakr, run.naive, run.ratios, run.targets.latency
        ref.add_row(
            str(run.cameras),
            fmt(t.analysed_fps),
            fmt(nv.analysed_fps if nv else None),
            fmt(nv.latency_ms.p50 if nv else None, "{:.0f}"),
            fmt(nv.latency_ms.p99 if nv else None, "{:.0f}"),
            fmt(r.trakr_over_raw, "{:.2f}"),
            fmt(r.trakr_over_naive, "{:.2f}"),
            f"{lat.p99_ms:.0f} {'<' if lat.met else '>'} {lat.bound_ms:.0f}" if lat else "-",
            fmt(t.cpu.machine_cpu_percent, "{:.0f}"),
        )
    return ref


def raw_table(raw: RawResult) -> Table:
    detector = f"{raw.detector} {raw.detector_precision}".strip()
    rt = _table(
        f"raw model throughput ({detector or 'detector'} alone, preloaded frames)", ("batch", "frames/s", "ms/batch")
    )
    for b, fps in raw.batch_fps.items():
        rt.add_row(f"{b}" + (" (best)" if b == raw.best_batch else ""), f"{fps:.1f}", f"{raw.batch_ms[b]:.0f}")
    if raw.infer_only_fps:
        rt.add_row(f"{raw.best_batch} infer() only", f"{raw.infer_only_fps:.1f}", "")
    return rt


def gate_table(g: GateCheck) -> Table:
    gt = _table(
        f"gate check: {g.frames} frames x {g.cameras} camera(s) of {g.clip}",
        (
            "area threshold",
            "frames analysed ungated",
            "gated",
            "skipped",
            "alerts ungated",
            "gated",
            "person alerts ungated",
            "person missed",
            "all missed",
            "target met",
        ),
    )
    gt.add_row(
        f"{g.gate_options['area_threshold']:g} (config)",
        str(g.frames_analysed.ungated),
        str(g.frames_analysed.gated),
        fmt(g.skipped_fraction, "{:.0%}"),
        str(g.alerts.ungated),
        str(g.alerts.gated),
        str(g.person_alerts.ungated),
        str(g.person_alerts.missed),
        str(len(g.missed)),
        str(g.target_met),
    )
    for sw in g.sweep:
        gt.add_row(
            f"{sw.area_threshold:g}",
            str(g.frames_analysed.ungated),
            str(sw.frames_analysed),
            fmt(sw.skipped_fraction, "{:.0%}"),
            str(g.alerts.ungated),
            str(sw.alerts),
            str(g.person_alerts.ungated),
            str(sw.person_missed),
            str(sw.missed),
            str(sw.target_met),
        )
    return gt


def capture_table(c: CaptureCheck) -> Table:
    ct = _table(
        f"capture cost of one {c.resolution}/{c.fps} fps camera, CPU ms per frame",
        (
            "ffmpeg",
            "ffmpeg -re",
            "ffmpeg -re bgr24",
            "OpenCV loop",
            "OpenCV paced",
            "trakr reader",
            "PyAV paced",
            "reader gated",
            "reader / PyAV",
            "gated / PyAV",
            "reader / ffmpeg -re",
            "reader / ffmpeg",
            "target met",
        ),
    )
    ct.add_row(
        f"{c.ffmpeg_decode.ms_per_frame:.2f}",
        f"{c.ffmpeg_decode_realtime.ms_per_frame:.2f}",
        f"{c.ffmpeg_decode_realtime_bgr24.ms_per_frame:.2f}",
        f"{c.opencv_read_loop.ms_per_frame:.2f}",
        f"{c.opencv_read_loop_paced.ms_per_frame:.2f}",
        f"{c.trakr_reader.ms_per_frame:.2f}",
        f"{c.pyav_decode_paced.ms_per_frame:.2f}",
        f"{c.trakr_reader_gated.ms_per_frame:.2f}",
        f"{c.ratio_vs_pyav_paced:.2f}",
        f"{c.ratio_gated_vs_pyav_paced:.2f}",
        f"{c.ratio_vs_ffmpeg_realtime:.2f}",
        f"{c.ratio_vs_ffmpeg_unpaced:.2f}",
        str(c.target_met),
    )
    return ct


def _system(t: TrakrResult) -> str:
    gate = ", gate on" if t.gate else ""
    return f"trakr, {t.detector or t.backend} {t.detector_precision}".strip() + f" (batch {t.batch_size}{gate})"


def _peer_system(p: PeerResult) -> str:
    version = p.details.get("inference_version") or "?"
    return f"peer: Roboflow inference {version} InferencePipeline, onnxruntime {p.details.get('onnxruntime', '?')}"


def _raw_for(result: BenchResult, detector: str) -> RawResult | None:
    """The raw model of one backend as the detector names itself (``onnxruntime``, ``openvino``)."""
    for raw in [*result.raw_by_detector.values(), *([result.raw] if result.raw else [])]:
        if raw.detector == detector:
            return raw
    return None


def comparison_rows(result: BenchResult) -> list[dict[str, Any]]:
    """One row per camera count and system (trakr per backend, then the peer): what the README shows."""
    rows: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    for i, run in enumerate(result.runs):
        t = run.trakr
        raw = _raw_for(result, t.detector)
        rows.append(
            {
                "cameras": run.cameras,
                "system": _system(t),
                "fps": t.analysed_fps,
                "p50": t.latency_ms.p50,
                "p99": t.latency_ms.p99,
                "cpu": t.cpu.process_cpu_percent,
                "rss": t.rss_peak_mb,
                "over_raw": ratio(t.analysed_fps, raw.fps if raw else None),
                "load": t.load,
                "error": None,
            }
        )
        p = run.peer
        if p is not None:
            raw = _raw_for(result, "onnxruntime")
            peers.append(
                {
                    "cameras": run.cameras,
                    "system": _peer_system(p) if p.error is None else "peer",
                    "fps": p.analysed_fps,
                    "p50": p.latency_ms.p50,
                    "p99": p.latency_ms.p99,
                    "cpu": p.cpu_percent,
                    "rss": p.rss_peak_mb,
                    "over_raw": ratio(p.analysed_fps, raw.fps if raw else None),
                    "load": p.load,
                    "error": p.error,
                }
            )
        last_of_count = i + 1 == len(result.runs) or result.runs[i + 1].cameras != run.cameras
        if last_of_count:  # the peer after every trakr backend of that camera count
            rows += peers
            peers = []
    return rows


def _load_text(load: MachineLoad | None) -> str:
    if load is None:
        return "-"
    return f"{load.others_share:.0%}" if load.quiet else f"{load.others_share:.0%} NOT QUIET"


def comparison_table(result: BenchResult) -> Table:
    """trakr (each backend) and the peer side by side, per camera count."""
    tab = _table(
        "side by side: analysed fps, capture→result latency, CPU (percent of one core), peak RSS",
        ("cameras", "system", "analysed fps", "p50 ms", "p99 ms", "CPU %", "RSS MB", "fps / raw", "others"),
    )
    tab.columns[1].justify = "left"
    for r in comparison_rows(result):
        if r["error"]:
            tab.add_row(str(r["cameras"]), r["system"], f"failed: {r['error'][:80]}", *[""] * 6)
            continue
        tab.add_row(
            str(r["cameras"]),
            r["system"],
            fmt(r["fps"]),
            fmt(r["p50"], "{:.0f}"),
            fmt(r["p99"], "{:.0f}"),
            fmt(r["cpu"], "{:.0f}"),
            fmt(r["rss"], "{:.0f}"),
            fmt(r["over_raw"], "{:.2f}"),
            _load_text(r["load"]),
        )
    return tab


class NoisyFigures(RuntimeError):
    """Figures from a run that other work disturbed: not written (``allow_noisy`` marks them instead).
    ``args``: the message and the :class:`~trakr.bench.results.BenchResult` (its JSON is written)."""


def figures_markdown(result: BenchResult) -> str:
    """The README's Performance table from one run, with how it was made; noisy figures marked."""
    m = result.machine
    lines = [
        f"<!-- written by `{result.command or 'trakr bench'}`, started {result.started} -->",
        "",
        "| cameras | system | analysed fps | p50 ms | p99 ms | CPU % | peak RSS MB | fps / raw model | other load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in comparison_rows(result):
        if r["error"]:
            lines.append(f"| {r['cameras']} | {r['system']} | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(
            f"| {r['cameras']} | {r['system']} | {fmt(r['fps'])} | {fmt(r['p50'], '{:.0f}')} | "
            f"{fmt(r['p99'], '{:.0f}')} | {fmt(r['cpu'], '{:.0f}')} | {fmt(r['rss'], '{:.0f}')} | "
            f"{fmt(r['over_raw'], '{:.2f}')} | {_load_text(r['load'])} |"
        )
    raws = result.raw_by_detector or ({"": result.raw} if result.raw else {})
    raw_text = "; ".join(
        f"{r.detector} {r.detector_precision} {r.fps:.1f} frames/s (batch {r.best_batch}, {r.ms_per_frame:.1f} ms/frame)"
        for r in raws.values()
    )
    opts = result.options
    lines += [
        "",
        f"Raw model (`detect()` alone on preloaded frames): {raw_text or 'not measured'}.",
        f"Cameras: the sample clip (768x576, 10 fps) as {opts.get('source', 'rtsp')} cameras; "
        f"{opts.get('duration')} s per run, the first {result.warmup_s:g} s left out; "
        f"gate {'default' if opts.get('gate') is None else ('on' if opts.get('gate') else 'off')}"
        f"{' (rows marked gate on: on, default settings)' if opts.get('gated_cameras') else ''}. "
        f"Machine: {m.cpu}, {m.cores} cores, {m.memory_gb} GB, Python {m.python}, onnxruntime {m.onnxruntime}. "
        "CPU % is the process's (100 = one core); 'other load' is the share of the machine that other "
        "processes used during that measurement.",
    ]
    if not result.quiet:
        lines += ["", "**NOT QUIET: other work loaded the machine during some of these measurements; "
                  "they are not figures to size hardware by.**"]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_figures(result: BenchResult, path: Path, allow_noisy: bool = False) -> None:
    """Write :func:`figures_markdown` to ``path``; refuse (:class:`NoisyFigures`) when the run was
    not quiet, unless ``allow_noisy`` (every noisy figure is then marked in the file)."""
    if not result.quiet and not allow_noisy:
        raise NoisyFigures(
            f"not writing {path}: other work loaded the machine during the run "
            "(see the warnings; rerun on a quiet machine, or pass --allow-noisy to write them marked)",
            result,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(figures_markdown(result))


def noise_warnings(result: BenchResult) -> list[str]:
    """One plain line per measurement taken while other processes used more than the quiet share."""
    out = []
    for run in result.runs:
        t = run.trakr
        for what, m in ((f"trakr ({t.detector or t.backend})", t), ("naive loop", run.naive), ("peer", run.peer)):
            load = getattr(m, "load", None)
            if load is not None and not load.quiet:
                out.append(f"warning: {run.cameras} camera(s), {what}: not quiet: {load.describe()}")
    raws = {id(r): r for r in [*result.raw_by_detector.values(), *([result.raw] if result.raw else [])]}
    for raw in raws.values():
        if raw.load is not None and not raw.load.quiet:
            out.append(f"warning: raw model ({raw.detector}): not quiet: {raw.load.describe()}")
    if out:
        out.append("warning: figures from a busy machine are not figures; rerun on a quiet one before publishing")
    return out


def tables(result: BenchResult) -> list[Any]:
    """Everything to print, in order: per-run tables, summary, references, raw model, checks, warnings."""
    out: list[Any] = [run_table(run) for run in result.runs]
    out += [summary_table(result), references_table(result)]
    if len(result.raw_by_detector) > 1 or any(run.peer is not None for run in result.runs):
        out.append(comparison_table(result))
    for run in result.runs:
        if run.peer is not None and run.peer.error:
            out.append(Text(f"peer failed on {run.cameras} camera(s): {run.peer.error}", style="bold red"))
    for raw in result.raw_by_detector.values() or ([result.raw] if result.raw else []):
        out.append(raw_table(raw))
    if result.gate_check is not None:
        out.append(gate_table(result.gate_check))
    if result.capture_check is not None:
        out.append(capture_table(result.capture_check))
    out += [Text(line, style="bold yellow") for line in noise_warnings(result)]
    return out
