"""The ``trakr`` command.

trakr run                              # embedded demo: 4 sample cameras from the real clip
trakr run --config sysconfig.json      # a site's config, until Ctrl-C / SIGTERM
trakr config check sysconfig.json      # validate and show cameras, ROIs and triggers
trakr config default                   # print the embedded default config
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trakr.config import ConfigReport, Problem, SysConfig, load_config, parse_config, trigger_warnings
from trakr.devtools.demo import default_config_raw
from trakr.faces.cli import faces_app
from trakr.logs import redact, setup_logging
from trakr.supervisor import supervise
from trakr.types import PipelineSnapshot

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Camera-based site-safety analytics at the edge.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect and validate configs.")
app.add_typer(config_app, name="config")
console = Console(emoji=False)
err = Console(stderr=True, emoji=False, soft_wrap=True)
log = logging.getLogger("trakr.cli")

if TYPE_CHECKING:
    from trakr.delivery.cloud import Cloud
    from trakr.pipeline import Pipeline

STATUS_INTERVAL_ENV = "TRAKR_STATUS_INTERVAL_S"
"""Seconds between status lines of ``trakr run`` (default 60; tests set it lower)."""


def _load(config: Optional[Path], sample_cameras: bool) -> ConfigReport:
    camera_list = "sample_cameras" if sample_cameras else "cameras"
    if config is None:
        return parse_config(default_config_raw(), camera_list=camera_list)
    return load_config(config, camera_list=camera_list)


def _model_class_names(cfg: SysConfig) -> list[str] | None:
    try:
        from trakr.inference.base import class_names_from_metadata
        from trakr.inference.onnx import open_session

        sess = open_session(cfg.trakr.detector.model_path, threads=1)
        return class_names_from_metadata(sess.get_modelmeta().custom_metadata_map)
    except Exception as e:  # reported as a problem by the caller
        err.print(f"[red]error[/]: model: {e}")
        return None


def _print_problems(report: ConfigReport) -> None:
    for p in report.problems:
        style = "red" if p.severity == "error" else "yellow"
        err.print(f"[{style}]{p.severity}[/]: " + escape(redact(str(p)).removeprefix("warning: ")), highlight=False)


def _refusal(report: ConfigReport, strict: bool) -> str | None:
    """Why ``trakr run`` must not start with ``report``; ``None`` if it may (partial start)."""
    if report.config is None or report.fatal:
        return f"{len(report.errors)} config error(s)"
    if strict and report.errors:
        return f"{len(report.errors)} config error(s) (--strict)"
    if not report.config.cameras and report.invalid_cameras:
        return f"no valid camera ({len(report.invalid_cameras)} invalid, {len(report.errors)} config error(s))"
    return None


def _log_config_problems(report: ConfigReport) -> None:
    """One log line per problem outside cameras, and one per camera left out."""
    for p in report.problems:
        if p.camera is None:
            log.warning("config: %s", redact(str(p)))
    for key in report.invalid_cameras:
        details = "; ".join(p.detail() for p in report.problems if p.camera == key)
        log.error("config: camera %s is invalid and was not started: %s", key, redact(details))


def _camera_table(cfg: SysConfig) -> Table:
    t = Table(title=f"{len(cfg.cameras)} camera(s)")
    for col in ("id", "name", "address", "CamDelay s", "camera triggers", "ROIs (triggers)", "alerts"):
        t.add_column(col)
    for cam in cfg.cameras:
        rois = (
            "\n".join(
                f"{n}: {':'.join(r.detections) or '-'}{' (whole frame)' if not r.points else ''}"
                for n, r in cam.roi_config.items()
            )
            or "-"
        )
        area = "" if not cam.polygon else " (polygon)"
        alerts = "on" if cfg.common.enable_alert and cam.alert_en else "off"
        t.add_row(
            str(cam.camera_id),
            cam.name,
            redact(cam.address),
            f"{cam.cam_delay:g}",
            (":".join(cam.detection) or "-") + area,
            rois,
            f"{alerts}, pause {cam.alert_time_pause:g}s",
        )
    return t


def _trigger_table(cfg: SysConfig, names: list[str], labels: list[str]) -> Table:
    """Per camera, each trigger and how the loaded model produces it (docs/ppe.md)."""
    from trakr.inference.classes import camera_trigger_sources

    t = Table(title="triggers the model can produce (direct, alias, association, classifier)")
    for col in ("camera", "trigger", "how"):
        t.add_column(col)
    for cam in cfg.cameras:
        for trigger, how in camera_trigger_sources(cfg, cam, names, labels).items():
            t.add_row(cam.label, trigger, "; ".join(how) if how else "[yellow]cannot[/]")
    return t


@config_app.command("check")
def config_check(
    path: Path = typer.Argument(..., help="Config file (legacy sysconfig.json format)."),
    sample_cameras: bool = typer.Option(False, "--sample-cameras", help="Check the 'sample_cameras' list."),
) -> None:
    """Validate a config; print every problem and the cameras it defines. Exit 1 on errors."""
    report = _load(path, sample_cameras)
    names: list[str] | None = None
    labels: list[str] = []
    if report.config is not None:
        names = _model_class_names(report.config)
        clf = report.config.trakr.ppe.classifier
        if clf is not None:
            try:
                from trakr.rules.ppe import shared_classifier

                labels = shared_classifier(clf).labels
            except Exception as e:
                report.problems.append(Problem("trakr", "ppe.classifier.model_path", clf.model_path, f"{e}"))
        if names is not None:
            report.problems += trigger_warnings(report.config, names, labels)
        else:
            report.problems.append(
                Problem(
                    "trakr", "detector.model_path", report.config.trakr.detector.model_path, "model cannot be loaded"
                )
            )
    _print_problems(report)
    if report.config is not None:
        console.print(_camera_table(report.config))
        if names is not None:
            console.print(_trigger_table(report.config, names, labels))
    if report.invalid_cameras:
        console.print(
            f"{len(report.invalid_cameras)} invalid camera(s) left out (trakr run starts the others): "
            + ", ".join(report.invalid_cameras),
            highlight=False,
        )
    n_err = len(report.errors)
    console.print(f"{n_err} error(s), {len(report.problems) - n_err} warning(s)")
    raise typer.Exit(1 if n_err or report.config is None else 0)


@config_app.command("default")
def config_default() -> None:
    """Print the embedded default config (a starting point for a site's file)."""
    console.print_json(json.dumps(default_config_raw()))


ui_app = typer.Typer(no_args_is_help=True, help="The web console.")
app.add_typer(ui_app, name="ui")


@ui_app.command("set-password")
def ui_set_password(
    config: Path = typer.Option(..., "--config", "-c", help="Config file to store the password hash in."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input instead of prompting."
    ),
) -> None:
    """Store a salted hash of the console password in the config (trakr.ui.password_hash)."""
    from trakr.ui.auth import store_password_hash

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Console password", hide_input=True, confirmation_prompt=True)
    try:
        path = store_password_hash(config, password)
    except ValueError as e:
        err.print(f"[red]error[/]: {escape(str(e))}")
        raise typer.Exit(2) from None
    console.print(f"password hash stored in {path} (trakr.ui.password_hash); restart trakr to use it")


@app.command()
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file; default: the embedded demo."),
    sample_cameras: bool = typer.Option(False, "--sample-cameras", help="Run the config's 'sample_cameras' list."),
    duration: Optional[float] = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output directory (overrides the config)."),
    log_level: Optional[str] = typer.Option(None, help="Override LoggingLevel."),
    redis_url: Optional[str] = typer.Option(
        None, "--redis", help="redis://host:port/db: run the model on 'trakr worker' processes."
    ),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", help="Serve Prometheus /metrics on this port (overrides trakr.metrics.port)."
    ),
    cloud_config: int = typer.Option(
        0,
        "--cloud_config",
        "--cloud-config",
        min=0,
        max=1,
        help="1: fetch the config from cloud_status_ip at start and apply configs pushed while running; 0: local file only.",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse to run if any camera is invalid (default: run the valid ones)."
    ),
    ui_port: Optional[int] = typer.Option(
        None, "--ui-port", min=0, max=65535, help="Web console port (default 8080, trakr.ui.port); 0 = no console."
    ),
    ui_bind: Optional[str] = typer.Option(
        None, "--ui-bind", help="Web console interface (default 127.0.0.1); any other needs 'trakr ui set-password'."
    ),
    status_interval: float = typer.Option(
        60.0,
        "--status-interval",
        hidden=True,
        envvar=STATUS_INTERVAL_ENV,
        min=0.05,
        help="Seconds between status lines in the log.",
    ),
) -> None:
    """Run the pipeline until Ctrl-C / SIGTERM (or --duration); alerts land in the output directory.

    Cameras with config errors are left out and reported; the others run (exit 2 if none is
    valid, if ``common``/``trakr`` are invalid, or with --strict on any error).
    """
    if config is not None:  # local file (or its .last-good copy), updated from the cloud with --cloud_config 1
        from trakr.delivery.cloud import startup_config

        report = startup_config(config, bool(cloud_config), "sample_cameras" if sample_cameras else "cameras")
    else:
        report = _load(config, sample_cameras)
    reason = _refusal(report, strict)
    if reason is not None or report.config is None:
        _print_problems(report)
        err.print(f"[red]refusing to run[/]: {reason}")
        raise typer.Exit(2)
    cfg = report.config
    if redis_url:
        from trakr.inference.redis_client import with_redis_backend

        cfg = with_redis_backend(cfg, redis_url)
    ui_port = cfg.trakr.ui.port if ui_port is None else ui_port
    ui_bind = cfg.trakr.ui.bind if ui_bind is None else ui_bind
    if ui_port:  # refuse before anything starts: no password, no console off loopback
        from trakr.ui.server import ConsoleRefused, check_bind

        try:
            check_bind(ui_bind, cfg.trakr.ui.password_hash)
        except ConsoleRefused as e:
            err.print(f"[red]refusing to run[/]: {escape(str(e))}")
            raise typer.Exit(2) from None
    out = Path(output or cfg.trakr.output.directory)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(log_level or cfg.common.logging_level, out / "trakr.log" if cfg.common.log_file_save else None)
    try:  # a crash in a native library leaves every thread's stack on the process's stderr (journald)
        faulthandler.enable(file=sys.__stderr__ or 2, all_threads=True)
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, or closed): run without
        log.debug("faulthandler not enabled: no stderr file descriptor")
    _log_config_problems(report)

    from trakr.inference.factory import build_detector
    from trakr.pipeline import Pipeline

    if any(c.faces for c in cfg.cameras):  # the bundled face models need the licence acknowledged
        from trakr.faces.models import FaceModelError
        from trakr.faces.stage import check_licence

        try:
            check_licence(cfg.trakr.faces)
        except FaceModelError as e:
            err.print(f"[red]refusing to run[/]: {escape(str(e))}")
            raise typer.Exit(2) from None
    try:
        detector = build_detector(cfg)
    except Exception as e:  # a missing model file or an unusable provider: say so, don't trace
        err.print(f"[red]error[/]: trakr.detector: {escape(redact(e))}")
        raise typer.Exit(2) from None
    pipeline = Pipeline(cfg, detector=detector, output_dir=out)
    metrics = None
    if metrics_port is not None or cfg.trakr.metrics.port is not None:
        from trakr.metrics import PipelineMetrics, start_metrics_server

        metrics = PipelineMetrics(pipeline)
        start_metrics_server(cfg, metrics.registry, port=metrics_port)
    stop = threading.Event()

    def _signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _signal)
    signal.signal(signal.SIGTERM, _signal)
    from trakr.delivery.cloud import attach

    link = attach(pipeline, cfg, config_path=config, cloud_config=bool(cloud_config) and config is not None)
    if metrics is not None:
        metrics.watch_outbox(link)  # outbox stats plus the sender's blocked channels
    ui_server = None
    if ui_port:
        from trakr.ui.server import ConsoleRefused, start_console

        try:
            ui_server = start_console(
                pipeline,
                cfg,
                port=ui_port,
                bind=ui_bind,
                config_path=config,
                camera_list="sample_cameras" if sample_cameras else "cameras",
                outbox=link.outbox,
                on_config=[pipeline.apply_config, link.apply_config],
                raw=None if config else default_config_raw(),
            )
        except ConsoleRefused as e:  # e.g. the port is taken: the pipeline runs without a console
            log.error("console off: %s", e)
    t0 = time.monotonic()
    pipeline.start()
    from trakr.service import ServiceNotifier

    notifier = ServiceNotifier(pipeline).start()  # systemd READY=1, WATCHDOG=1 while threads live; heartbeat
    status_stop = threading.Event()
    supervise(_status_logger(pipeline, link, status_stop, status_interval), "status", status_stop)
    try:
        stop.wait(duration)
    finally:
        status_stop.set()
        notifier.stop()  # STOPPING=1 before the pipeline's threads end (no false "not alive")
        if ui_server is not None:
            ui_server.stop()
        pipeline.stop()
        link.stop()
    snap = pipeline.snapshot()
    console.print(status_table(snap, time.monotonic() - t0))
    if report.invalid_cameras:
        console.print("not started (invalid config): camera " + ", ".join(report.invalid_cameras), highlight=False)
    console.print(f"{snap.alerts} alert(s) written under {out}/alerts")
    ob = link.last_stats
    console.print(
        f"outbox: {ob['backlog']} message(s) pending, {ob['bytes'] / 1e6:.1f} MB; "
        f"sent {sum(v for k, v in ob.items() if k.startswith('sent.'))}, "
        f"dropped {sum(v for k, v in ob.items() if k.startswith('dropped.'))}"
    )


def status_table(snap: PipelineSnapshot, elapsed: float) -> Table:
    """Per-camera summary from one snapshot: state, capture and analysed rates, gate pass rate,
    drops, reconnects."""
    elapsed = max(elapsed, 1e-9)
    t = Table(title=f"trakr after {elapsed:.0f}s")
    t.add_column("camera", no_wrap=True)
    for col in ("state", "fps in", "fps analysed", "gate pass", "drops", "reconn."):
        t.add_column(col, justify="right")
    for cid, c in sorted(snap.cameras.items()):
        t.add_row(
            f"{cid}:{c.name}" if c.name else str(cid),
            c.state if c.state == "up" or c.reason in ("", c.state) else f"{c.state} ({c.reason})",
            f"{c.frames_read / elapsed:.1f}",
            f"{c.frames_analysed / elapsed:.1f}",
            f"{c.gate_passed / c.gate_seen:.0%}" if c.gate_seen else "-",
            str(c.frames_dropped),
            str(c.reconnects),
        )
    return t


def status_line(snap: PipelineSnapshot, prev: PipelineSnapshot | None, backlog: int | None) -> str:
    """The status line logged every minute: cameras up, analysed fps and alerts since ``prev``,
    outbox backlog, and what is wrong (cameras not up, detector down, a dead thread)."""
    dt = snap.at - prev.at if prev is not None else 0.0
    fps = (snap.frames_analysed - prev.frames_analysed) / dt if prev is not None and dt > 0 else 0.0
    new_alerts = snap.alerts - prev.alerts if prev is not None else snap.alerts
    line = (
        f"status: cameras {snap.cameras_up}/{len(snap.cameras)} up, analysed {fps:.1f} fps, "
        f"alerts {snap.alerts} (+{new_alerts}), outbox backlog {'?' if backlog is None else backlog}"
    )
    not_up = [
        f"{cid} {c.state}" + (f" ({c.reason})" if c.reason and c.reason != c.state else "")
        for cid, c in sorted(snap.cameras.items())
        if c.state != "up"
    ]
    if not_up:
        line += "; not up: " + ", ".join(not_up[:10]) + (f" and {len(not_up) - 10} more" if len(not_up) > 10 else "")
    if snap.detector_health == "down":
        line += f"; detector {snap.detector} down"
    if not snap.threads_alive:
        line += "; a pipeline thread is not running"
    return line


def _status_logger(pipeline: Pipeline, link: Cloud, stop: threading.Event, interval: float) -> Callable[[], None]:
    """A loop (for :func:`supervise`) that logs :func:`status_line` every ``interval`` seconds."""
    prev: list[PipelineSnapshot] = [pipeline.snapshot()]

    def loop() -> None:
        while not stop.wait(interval):
            snap = pipeline.snapshot()
            try:
                backlog: int | None = int(link.outbox.stats()["backlog"])
            except Exception:  # the outbox is closing or its disk failed: say "?" rather than stop
                backlog = None
            log.info("%s", status_line(snap, prev[0], backlog))
            prev[0] = snap

    return loop


@app.command()
def worker(
    redis_url: str = typer.Option(..., "--redis", help="redis://host:port/db of the Redis the clients use."),
    batch: int = typer.Option(
        8, "--batch", min=1, help="Most frames per model run (batches of several clients are merged)."
    ),
    provider: list[str] = typer.Option(
        ["CPUExecutionProvider"],
        "--provider",
        help="ONNX Runtime provider, in order of preference (repeat): "
        "CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider.",
    ),
    imgsz: int = typer.Option(
        416, "--imgsz", help="Warm-up input size; each request runs at the size its client sent."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Ultralytics-format ONNX model; default: bundled YOLO11n."
    ),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime intra-op threads (0 = all cores)."),
    backend: str = typer.Option(
        "auto", "--backend", help="onnxruntime, openvino or auto (the fastest here, measured once and cached)."
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="OpenVINO: auto (BF16 where the CPU has it), fp32, bf16."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Take stream names and timeouts from this config's trakr.redis."
    ),
    visibility_timeout: Optional[float] = typer.Option(
        None, "--visibility-timeout", help="Reclaim batches left unacked this many seconds."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Consumer name (default host-pid)."),
    delay_ms: float = typer.Option(
        0.0, "--delay-ms", help="TESTS/BENCHMARKS ONLY: sleep this long before every model run."
    ),
    duration: Optional[float] = typer.Option(
        None, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM)."
    ),
    log_level: str = typer.Option("INFO", help="Log level."),
) -> None:
    """Serve inference for trakr clients through Redis Streams (start one per GPU / machine)."""
    from trakr.config import RedisOptions
    from trakr.inference.worker import Worker

    setup_logging(log_level, None)
    options = RedisOptions()
    if config is not None:
        report = load_config(config)
        if report.config is None:
            _print_problems(report)
            raise typer.Exit(2)
        options = report.config.trakr.redis
    if visibility_timeout is not None:
        options = options.model_copy(update={"visibility_timeout_s": visibility_timeout})
    providers = [p for item in provider for p in item.split(",") if p]
    w = Worker(
        redis_url,
        model_path=model,
        imgsz=imgsz,
        batch=batch,
        providers=providers,
        threads=threads,
        backend=backend,
        precision=precision,
        options=options,
        name=name,
        delay_ms=delay_ms,
    )

    def _signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        w.stop()

    signal.signal(signal.SIGINT, _signal)
    signal.signal(signal.SIGTERM, _signal)
    w.run(max_seconds=duration)


model_app = typer.Typer(no_args_is_help=True, help="Model tools.")
app.add_typer(model_app, name="model")
app.add_typer(faces_app, name="faces")  # enrol/list/remove/identify (docs/faces.md)


@model_app.command("quantize")
def model_quantize(
    clip: str = typer.Option(..., "--clip", help="Clip file or camera address (rtsp://...) to grab frames from."),
    out: Path = typer.Option(..., "--out", help="Where to write the INT8 ONNX model."),
    frames: int = typer.Option(48, "--frames", min=3, help="Frames to grab; every third is held out to compare."),
    imgsz: int = typer.Option(416, "--imgsz", min=32, max=2048, help="Input size to calibrate and compare at."),
    model: Optional[Path] = typer.Option(None, "--model", help="FP32 ONNX model; default: bundled YOLO11n."),
    min_recall: float = typer.Option(
        0.95, "--min-recall", min=0.0, max=1.0, help="Least share of FP32 boxes INT8 must find."
    ),
    force: bool = typer.Option(False, "--force", help="Write even when the agreement is poor (still exits 3)."),
) -> None:
    """INT8 copy of the model calibrated on a site's frames; refused (exit 3) when it loses boxes."""
    from trakr.inference.quantize import QuantizeError, quantize_command

    try:
        result = quantize_command(
            clip, out, model_path=model, frames=frames, imgsz=imgsz, min_recall=min_recall, force=force, echo=typer.echo
        )
    except (QuantizeError, FileNotFoundError) as e:
        err.print(f"[red]error[/]: {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from e
    raise typer.Exit(result.exit_code)


def _command_line(ctx: typer.Context) -> str:
    """The command as typed, rebuilt from the options that were given (for result files)."""
    import shlex

    parts = ["trakr", ctx.info_name or ""]
    for p in ctx.command.params:
        source = ctx.get_parameter_source(p.name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params.get(p.name)
        if getattr(p, "is_flag", False) or isinstance(value, bool):
            parts.append(p.opts[0] if value or not p.secondary_opts else p.secondary_opts[0])
        else:
            parts += [p.opts[0], shlex.quote(str(value))]
    return " ".join(x for x in parts if x)


@app.command()
def bench(
    ctx: typer.Context,
    cameras: str = typer.Option(
        "4", "--cameras", help="Number of sample cameras, or a list for a scaling table: 1,2,4,8,16."
    ),
    duration: float = typer.Option(20.0, "--duration", help="Seconds of each trakr run."),
    source: str = typer.Option(
        "rtsp", "--source", help="rtsp (local RTSP server, as in the tests) or file (the clip at its native rate)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Base config whose cameras are cycled as templates; default: the embedded demo."
    ),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Model input size (overrides the config)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (overrides the config)."),
    deadline_ms: Optional[float] = typer.Option(None, "--deadline-ms", help="Batch deadline (overrides the config)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime threads (overrides the config)."),
    gate: Optional[bool] = typer.Option(None, "--gate/--no-gate", help="Change gate on/off (default: the config's)."),
    backend: str = typer.Option(
        "onnx", "--backend", help="onnx (in-process) or redis (a private redis-server and --workers trakr workers)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="trakr worker processes for --backend redis."),
    detectors: Optional[str] = typer.Option(
        None,
        "--detectors",
        help="Run trakr once per in-process backend, e.g. onnxruntime,openvino (default: the config's).",
    ),
    gated_cameras: Optional[str] = typer.Option(
        None, "--gated-cameras", help="Camera counts run once more with the gate on, e.g. 32 (first backend only)."
    ),
    peer: Optional[str] = typer.Option(
        None, "--peer", help="roboflow: also run Roboflow inference's InferencePipeline (own venv) on the same cameras."
    ),
    figures: Optional[Path] = typer.Option(
        None, "--figures", help="Write the README Performance table (markdown) here; refused if the run was not quiet."
    ),
    allow_noisy: bool = typer.Option(False, "--allow-noisy", help="Write --figures even if not quiet, marked."),
    naive: bool = typer.Option(True, "--naive/--no-naive", help="Also run the naive one-thread loop."),
    naive_duration: Optional[float] = typer.Option(
        None, "--naive-duration", help="Seconds of the naive loop (default half of --duration, 3-10 s)."
    ),
    raw: bool = typer.Option(True, "--raw/--no-raw", help="Also measure raw model throughput."),
    raw_seconds: float = typer.Option(
        1.5, "--raw-seconds", help="Seconds per batch size of the raw model measurement."
    ),
    gate_check: bool = typer.Option(
        False, "--gate-check", help="Gated vs ungated alerts on every frame of the real clip."
    ),
    capture_check: bool = typer.Option(
        False, "--capture-check", help="CPU of a 720p/25 fps camera reader vs ffmpeg decode."
    ),
    warmup: Optional[float] = typer.Option(
        None, "--warmup", help="Seconds left out of the measurements (default 20%% of --duration, 2-10 s)."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of latency, RSS and CPU over time."),
    json_out: Path = typer.Option(Path("trakr-bench.json"), "--json", help="Where to write the JSON results."),
    log_level: str = typer.Option("WARNING", "--log-level", help="Log level of the pipeline during the bench."),
) -> None:
    """Measure throughput, latency, CPU and memory against the raw model and a naive loop."""
    from trakr.bench.run import BenchOptions, NoisyFigures, parse_cameras, parse_detectors, run_bench, tables

    try:
        counts = parse_cameras(cameras)
        backends = parse_detectors(detectors)
        gated_counts = parse_cameras(gated_cameras) if gated_cameras else []
        if peer not in (None, "roboflow"):
            raise ValueError(f"--peer takes roboflow (got {peer!r})")
    except ValueError as e:
        err.print(f"[red]error[/]: {e}")
        raise typer.Exit(2) from None
    if source not in ("rtsp", "file") or backend not in ("onnx", "redis"):
        err.print("[red]error[/]: --source is rtsp or file, --backend is onnx or redis")
        raise typer.Exit(2)
    setup_logging(log_level, None)
    opts = BenchOptions(
        cameras=counts,
        duration=duration,
        warmup=warmup,
        source=source,
        config=config,
        imgsz=imgsz,
        batch_size=batch_size,
        deadline_ms=deadline_ms,
        threads=threads,
        gate=gate,
        backend=backend,
        workers=workers,
        detectors=backends,
        gated_cameras=gated_counts,
        peer=peer,
        figures=figures,
        allow_noisy=allow_noisy,
        naive=naive,
        naive_duration=naive_duration,
        raw=raw,
        raw_seconds=raw_seconds,
        gate_check=gate_check,
        capture_check=capture_check,
        plot=plot,
        json_path=json_out,
        command=_command_line(ctx),
    )
    refused = None
    try:
        result = run_bench(opts, progress=lambda msg: err.print(f"[dim]bench:[/] {msg}", highlight=False))
    except NoisyFigures as e:
        result, refused = e.args[1], e.args[0]
    out = console if console.is_terminal else Console(emoji=False, width=150)
    for t in tables(result):
        out.print(t)
    out.print(
        f"results: {json_out}"
        + (f", plot: {plot}" if plot else "")
        + (f", figures: {figures}" if figures and not refused else "")
    )
    if refused:
        err.print(f"[red]error[/]: {refused}")
        raise typer.Exit(3)


@app.command("replay")
def replay_clip(
    clip: Path = typer.Argument(..., help="A recorded video file."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (default: the embedded demo)."),
    camera: Optional[int] = typer.Option(None, "--camera", help="CameraId the clip stands for (default: the first)."),
    output: Path = typer.Option(Path("trakr-replay"), "--output", "-o", help="Where alerts and events are written."),
    seconds: Optional[float] = typer.Option(None, "--seconds", min=0, help="Stop after this much clip time."),
) -> None:
    """Play a recorded clip through gate, detector, tracking and events on its own timestamps (deterministic)."""
    from trakr.replay import replay

    setup_logging("WARNING", None)
    report = _load(config, False)
    _print_problems(report)
    if report.config is None or not clip.is_file():
        err.print(f"[red]error[/]: {'no usable config' if report.config is None else f'no such file: {clip}'}")
        raise typer.Exit(2)
    try:
        result = replay(clip, report.config, output, camera_id=camera, max_seconds=seconds)
    except ValueError as e:
        err.print(f"[red]error[/]: {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    table = Table("clip s", "roi", "violation", "tracks", "record")
    for a in result.alerts:
        table.add_row(f"{a.captured_at:.1f}", a.roi or "-", a.violation, str(a.extra["track_ids"]), a.record_path)
    console.print(table)
    console.print(
        f"camera {result.camera_id}: {result.frames} frames ({result.clip_s:.1f} s), {result.analysed} analysed "
        f"{result.gate_reasons}, {len(result.events)} events, {len(result.alerts)} alerts, "
        f"not alerted: pause {result.counts['pause']}, cap {result.counts['cap']}; {result.wall_s:.1f} s -> {output}"
    )


def main() -> None:  # console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
