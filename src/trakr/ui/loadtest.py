"""What the console costs the pipeline: throughput with it off, on with nobody watching, and on
with viewers (``python -m trakr.ui.loadtest``; results in docs/console.md).

The set-up of ``trakr bench --source rtsp`` at saturation: 8 cameras (4 RTSP mounts of the sample
clip, each read twice) at 10 fps, change gate off, so every frame goes to the detector and the
analysed rate is what the detector can do. Runs are interleaved (off, idle, viewers) so a change
in the machine's load hits all three alike. The viewers run in another process (in real life the
browser is on another machine): each of the 8 grid tiles fetches its preview twice a second at
480 px, as the live page does, and one MJPEG stream runs at 5 fps, as the camera page does. Each
run reports the analysed fps, the process' CPU, the CPU of the console's own threads, the JPEGs
encoded and the 1-minute load.

Example:
    >>> summarise([{"mode": "off", "analysed_fps": 40.0, "console_cpu_percent": 0.0},
    ...            {"mode": "off", "analysed_fps": 44.0, "console_cpu_percent": 0.0},
    ...            {"mode": "viewers", "analysed_fps": 38.0, "console_cpu_percent": 6.0}])
    {'off': {'runs': 2, 'analysed_fps_median': 42.0, 'console_cpu_percent_median': 0.0}, 'viewers': {'runs': 1, 'analysed_fps_median': 38.0, 'console_cpu_percent_median': 6.0}}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MODES = ("off", "idle", "viewers")


def summarise(results: list[dict]) -> dict:
    """Median analysed fps and console CPU per mode."""
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        runs = [r for r in results if r["mode"] == mode]
        out[mode] = {
            "runs": len(runs),
            "analysed_fps_median": round(statistics.median(r["analysed_fps"] for r in runs), 1),
            "console_cpu_percent_median": round(statistics.median(r["console_cpu_percent"] for r in runs), 1),
        }
    return out


def _grid_tile(port: int, cam: int, stop: threading.Event) -> None:
    import httpx

    with httpx.Client(timeout=5) as c:
        n = 0
        while not stop.wait(0.5):
            try:
                c.get(f"http://127.0.0.1:{port}/api/cameras/{cam}/preview.jpg?width=480")
                n += 1
                if cam == 0 and n % 4 == 0:
                    c.get(f"http://127.0.0.1:{port}/api/cameras")  # the grid's status poll
            except httpx.HTTPError:
                continue


def _mjpeg(port: int, cam: int, stop: threading.Event) -> None:
    import httpx

    while not stop.is_set():
        try:
            with httpx.stream("GET", f"http://127.0.0.1:{port}/api/cameras/{cam}/stream.mjpg?fps=5", timeout=5) as r:
                for _ in r.iter_bytes():
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            stop.wait(0.5)


def viewers(port: int, cameras: int) -> None:
    """Run the viewers until killed (in their own process)."""
    stop = threading.Event()
    threads = [threading.Thread(target=_grid_tile, args=(port, c, stop), daemon=True) for c in range(cameras)]
    threads.append(threading.Thread(target=_mjpeg, args=(port, 0, stop), daemon=True))
    for t in threads:
        t.start()
    stop.wait()


def _console_cpu(proc) -> float:
    """CPU seconds of the console's threads (uvicorn's loop and workers, the index sync)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    return sum(
        t.user_time + t.system_time
        for t in proc.threads()
        if names.get(t.id, "").startswith(("console", "AnyIO", "asyncio"))
    )


def _config(urls: list[str], cameras: int, port: int):
    from trakr.config import parse_config

    return parse_config(
        {
            "common": {"batch_size": 4, "CamDelay": 0},
            "trakr": {
                "gate": {"enabled": False},
                "ui": {"port": port},
                "output": {"directory": tempfile.mkdtemp(prefix="trakr-loadtest-")},
            },
            "cameras": [
                {"CameraId": i, "Address": urls[i % len(urls)], "Detection": "person", "alert_time_pause": 30}
                for i in range(cameras)
            ],
        }
    ).config


def run_once(urls: list[str], detector, mode: str, port: int, cameras: int, duration: float, warmup: float) -> dict:
    import psutil

    from trakr.pipeline import Pipeline
    from trakr.ui.server import start_console

    cfg = _config(urls, cameras, port if mode != "off" else 0)
    pipeline = Pipeline(cfg, detector=detector, output_dir=cfg.trakr.output.directory)
    ui = start_console(pipeline, cfg) if mode != "off" else None
    proc = psutil.Process()
    pipeline.start()
    viewer = None
    if mode == "viewers":
        viewer = subprocess.Popen([sys.executable, "-m", "trakr.ui.loadtest", "--viewers", str(port), str(cameras)])
    try:
        time.sleep(warmup)
        s0, c0, u0, l0 = pipeline.snapshot(), proc.cpu_times(), _console_cpu(proc), os.getloadavg()[0]
        time.sleep(duration - warmup)
        s1, c1, u1, l1 = pipeline.snapshot(), proc.cpu_times(), _console_cpu(proc), os.getloadavg()[0]
    finally:
        if viewer is not None:
            viewer.terminate()
            viewer.wait(10)
        encoded = ui.state.previewer.encoded if ui is not None else 0
        if ui is not None:
            ui.stop()
        pipeline.stop()
    dt = s1.at - s0.at
    return {
        "mode": mode,
        "analysed_fps": round((s1.frames_analysed - s0.frames_analysed) / dt, 1),
        "cpu_percent": round(((c1.user + c1.system) - (c0.user + c0.system)) / dt * 100, 1),
        "console_cpu_percent": round((u1 - u0) / dt * 100, 1),
        "preview_jpegs": encoded,
        "load_1m": round((l0 + l1) / 2, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="Seconds per run.")
    ap.add_argument("--warmup", type=float, default=8.0, help="Seconds left out at the start of each run.")
    ap.add_argument("--repeats", type=int, default=4, help="Rounds of (off, idle, viewers).")
    ap.add_argument("--cameras", type=int, default=8, help="Cameras (over 4 RTSP mounts).")
    ap.add_argument("--port", type=int, default=18110, help="Console port.")
    ap.add_argument("--json", default="trakr-console-load.json", help="Where to write the results.")
    ap.add_argument("--viewers", nargs=2, type=int, metavar=("PORT", "CAMERAS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.viewers:
        viewers(*args.viewers)
        return
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;100000")
    from trakr.devtools.media import h264_annexb_path
    from trakr.devtools.rtsp_server import RtspServer
    from trakr.inference.factory import build_detector

    results = []
    with RtspServer(h264_annexb_path(), mounts=4) as server:
        detector = build_detector(_config(server.urls(), 1, 0))
        for _ in range(args.repeats):
            for mode in MODES:
                r = run_once(server.urls(), detector, mode, args.port, args.cameras, args.duration, args.warmup)
                print(json.dumps(r), flush=True)
                results.append(r)
    summary = summarise(results)
    print(json.dumps(summary, indent=1))
    with open(args.json, "w") as f:
        json.dump({"runs": results, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
