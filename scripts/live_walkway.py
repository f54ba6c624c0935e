"""Live walkway score: the sample clip over real RTSP, the whole pipeline in real time, scored.

Serves the clip (H.264, 768x576, 10 fps) from the test RTSP server on 127.0.0.1, runs trakr's
:class:`~trakr.pipeline.Pipeline` on the demo config's camera 0 pointed at it for one pass of the
clip (79 s), and scores the walkway ``person`` alerts against the hand-checked labelling in
tests/data/vtest_walkway_visits.json with the same scorer as the replay tests. The clip time of
an alert is found by comparing its frame with the clip's frames (live capture times drift from
clip time: a start-up burst while the stream is probed, network and decoder jitter).

    .venv/bin/python scripts/live_walkway.py [--seconds 79] [--gate on|off]

Prints one JSON line: visits, alerted, recall, alerts per visit, frames analysed, gate reasons and
the 1-minute load average before and after (figures taken on a loaded machine are not figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from trakr.config import parse_config
from trakr.devtools.demo import default_config_raw
from trakr.devtools.media import h264_annexb_path, sample_clip_path
from trakr.devtools.rtsp_server import RtspServer
from trakr.inference.factory import build_detector
from trakr.pipeline import Pipeline
from trakr.types import Alert, AnalysedFrame

ROOT = Path(__file__).resolve().parents[1]
FPS = 10


class ClipFrames:
    """The clip's frames, small and grey, to tell which frame of the clip a live frame is."""

    SIZE = (96, 72)

    def __init__(self) -> None:
        cap = cv2.VideoCapture(str(sample_clip_path()))
        small = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            small.append(self._small(frame))
        cap.release()
        self.frames = np.stack(small)

    def _small(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey, self.SIZE, interpolation=cv2.INTER_AREA).astype(np.int16)

    def index(self, image: np.ndarray) -> int:
        """The index of the clip frame ``image`` is (least mean absolute difference)."""
        d = np.abs(self.frames - self._small(image)).mean(axis=(1, 2))
        return int(np.argmin(d))


def _scorer():
    spec = importlib.util.spec_from_file_location("replay_scoring", ROOT / "tests" / "rules" / "test_replay.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.score_walkway, mod.load_visits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=79.0, help="how long to run (one pass of the clip is 79.5 s)")
    ap.add_argument("--gate", choices=["on", "off"], default="on")
    args = ap.parse_args()
    score_walkway, load_visits = _scorer()
    load_before = os.getloadavg()[0]
    with RtspServer(h264_annexb_path(), mounts=1) as server, tempfile.TemporaryDirectory() as out:
        raw = default_config_raw()
        cam = next(c for c in raw["cameras"] if int(c["CameraId"]) == 0)
        cam["Address"] = server.url(0)
        raw["cameras"] = [cam]
        raw.setdefault("trakr", {}).setdefault("gate", {})["enabled"] = args.gate == "on"
        config = parse_config(raw).config
        assert config is not None
        clip = ClipFrames()
        alerts: list[Alert] = []
        lock = threading.Lock()

        def on_result(job: AnalysedFrame) -> None:
            # Each alert is dated by its frame's place in the clip: live capture times drift
            # from clip time (stream start-up burst, network and decoder jitter).
            if job.alerts:
                at = clip.index(job.frame.image) / FPS
                with lock:
                    alerts.extend(dataclasses.replace(a, captured_at=at) for a in job.alerts)

        detector = build_detector(config)
        pipe = Pipeline(config, detector, out, result_sinks=[on_result])
        pipe.run(args.seconds)
        snap = pipe.snapshot()
        detector.close()
    s = score_walkway(alerts, load_visits())
    cam_snap = snap.cameras[0]
    print(
        json.dumps(
            {
                "gate": args.gate,
                "seconds": args.seconds,
                "visits": s["visits"],
                "alerted": s["alerted"],
                "recall": round(s["recall"], 3),
                "alerts_per_visit": round(s["alerts_per_visit"], 3),
                "unmatched": s["unmatched"],
                "visits_alerted_more_than_once": [d for d in s["detail"] if d[3] > 1],
                "alerts": [
                    (round(a.captured_at, 1), a.extra.get("track_ids"), a.objects[0]["xyxy"])
                    for a in alerts
                    if a.roi == "walkway"
                ],
                "walkway_alerts": sum(a.roi == "walkway" and a.violation == "person" for a in alerts),
                "camera": {k: v for k, v in vars(cam_snap).items() if isinstance(v, (int, float, str, dict))},
                "load_1min_before": round(load_before, 2),
                "load_1min_after": round(os.getloadavg()[0], 2),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
    )


if __name__ == "__main__":
    main()
