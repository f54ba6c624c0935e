"""Cost of the face stage: the face test video replayed with faces off and on, interleaved.

Builds the three-scene face video of tests/faces/conftest.py (1280x720, 10 fps, 155 frames: the
team photo, three players, a portrait, empty rooms between), enrols Yao Ming from the package's
portrait, and replays the video through the real detector, tracker, events and (when on) the face
stage, as fast as the CPU allows. Prints per round: analysed frames/s with faces off and on,
their ratio, face looks and ms per look, and the 1-minute load before and after.

    .venv/bin/python scripts/face_cost.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

from trakr.config import parse_config
from trakr.faces.gallery import Gallery  # noqa: F401  (imported so a missing extra fails here)
from trakr.inference.factory import build_detector
from trakr.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def _video_module():
    spec = importlib.util.spec_from_file_location("face_video", ROOT / "tests" / "faces" / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config(tmp: Path, faces: bool) -> dict:
    roi = {"all": {"points": "NA", "detections": "person:face:Yao Ming:unknown_face" if faces else "person"}}
    return {
        "common": {"batch_size": 1},
        "trakr": {
            "detector": {"imgsz": 416},
            "gate": {"enabled": False},
            "events": {"relink_s": 0, "lost_s": 0.5, "grace_s": 1.0},
            "faces": {"accept_noncommercial_models": True, "gallery_path": str(tmp / "faces.db")},
        },
        "cameras": [{"CameraId": 1, "Address": "x", "faces": faces, "roi_config": roi}],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    mod = _video_module()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        video = mod.write_h264(tmp / "faces.h264")
        on = parse_config(_config(tmp, True)).config
        off = parse_config(_config(tmp, False)).config
        assert on is not None and off is not None
        from typer.testing import CliRunner

        from trakr.cli import app

        cfg_file = tmp / "on.json"
        cfg_file.write_text(json.dumps(_config(tmp, True)))
        res = CliRunner().invoke(
            app, ["faces", "add", "Yao Ming", str(mod.bundled_photo("yaoming.jpg")), "--config", str(cfg_file)]
        )
        assert res.exit_code == 0, res.output
        detector = build_detector(on)
        try:
            replay(video, off, tmp / "warm", detector=detector, max_seconds=3)  # warm-up
            for k in range(args.rounds):
                load0 = os.getloadavg()[0]
                fps = {}
                looks: dict = {}
                for name, cfg in (("off", off), ("on", on)) if k % 2 == 0 else (("on", on), ("off", off)):
                    t0 = time.perf_counter()
                    r = replay(video, cfg, tmp / f"{name}{k}", detector=detector)
                    fps[name] = r.analysed / (time.perf_counter() - t0)
                    if name == "on":
                        looks = {
                            "face_alerts": sum(a.violation.startswith(("face:", "unknown_face")) for a in r.alerts)
                        }
                print(
                    json.dumps(
                        {
                            "round": k,
                            "fps_faces_off": round(fps["off"], 2),
                            "fps_faces_on": round(fps["on"], 2),
                            "ratio_on_off": round(fps["on"] / fps["off"], 3),
                            **looks,
                            "load_1min_before": round(load0, 2),
                            "load_1min_after": round(os.getloadavg()[0], 2),
                        }
                    )
                )
        finally:
            detector.close()


if __name__ == "__main__":
    main()
