"""Face recognition end to end on real parts: the real RTSP server serving a video made from the
face package's photos, real YOLO11n, SCRFD and ArcFace, the pipeline's event engine, the durable
outbox and the fake ThingsBoard (a real HTTP server) through a cloud outage. Plus enrolment
errors, removal, the licence acknowledgement and trigger parsing.

Similarities measured here (Yao Ming enrolled from ``yaoming.jpg``): his other photo
(``players.jpg`` in the video) 0.60-0.65; the 14 other players -0.15..0.17 (docs/faces.md).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fake_thingsboard import FakeThingsBoard
from helpers import wait_until
from typer.testing import CliRunner

from trakr.cli import app
from trakr.config import parse_config
from trakr.delivery.cloud import attach
from trakr.evidence import read_alerts
from trakr.faces.gallery import EnrolError, Gallery, enrol
from trakr.faces.models import FaceModelError
from trakr.faces.stage import FaceStage, engine_for
from trakr.pipeline import Pipeline

ENROLLED = "Yao Ming"
TOKEN = "FACEtok3n1"
THRESHOLD = 0.4


def _site(tmp_path, cameras, **trakr) -> dict:
    return {
        "common": {"batch_size": 1, "CamNotReachableLimit": 2},
        "trakr": {
            "detector": {"imgsz": 416},
            "gate": {"enabled": False},  # still photos: every frame analysed
            "capture": {"open_timeout_s": 3, "read_timeout_s": 3, "backoff_min_s": 0.3, "backoff_max_s": 2},
            # people leave between the scenes: no re-link across a scene, events end quickly
            "events": {"relink_s": 0, "lost_s": 0.5, "grace_s": 1.0},
            "faces": {"accept_noncommercial_models": True, "gallery_path": str(tmp_path / "faces.db")},
            **trakr,
        },
        "cameras": cameras,
    }


def _config(raw):
    rep = parse_config(raw)
    assert rep.ok and rep.config is not None, rep.problems
    return rep.config


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- triggers


def test_face_triggers_parse_from_legacy_strings_and_json_lists_and_the_legacy_format_is_unchanged():
    roi = {"points": "NA", "detections": "person:face:Asha Rao:unknown_face"}
    cam = {"CameraId": 1, "Address": "0", "Detection": "person:car", "faces": "true", "roi_config": {"door": roi}}
    listed = {"points": "NA", "detections": ["face:R2:D2", "unknown_face"]}
    cam2 = {"CameraId": 2, "Address": "0", "Detection": '["face:Asha Rao"]', "roi_config": {"gate": listed}}
    cfg = _config({"common": {}, "cameras": [cam, cam2]})
    c1, c2 = cfg.cameras
    assert c1.detection == ["person", "car"] and c1.faces is True and c2.faces is False
    assert c1.roi_config["door"].detections == ["person", "face:Asha Rao", "unknown_face"]
    assert c2.detection == ["face:Asha Rao"] and c2.roi_config["gate"].detections == ["face:R2:D2", "unknown_face"]
    rep = parse_config({"common": {}, "cameras": [{"CameraId": 3, "Address": "0", "Detection": "person:face"}]})
    assert str(rep.problems[0]) == "camera 3: Detection = 'person:face': 'face' needs a name after it: face:<name>"


# --------------------------------------------------------------------------- gallery and CLI


def test_enrolment_refuses_photos_with_no_face_or_several_naming_the_file_and_stores_nothing(tmp_path, photos):
    cfg = _config(_site(tmp_path, []))
    e = engine_for(cfg)
    g = Gallery(tmp_path / "g.db", e.embedder.model_id)
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((400, 300, 3), 120, np.uint8))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    cases = {
        photos["gdp.jpg"]: "gdp.jpg: 3 faces found",
        blank: "wall.jpg: no face found",
        text: "notes.jpg: not a readable image",
    }
    for bad, message in cases.items():
        with pytest.raises(EnrolError, match=message):
            enrol(g, "Someone", [photos["yaoming.jpg"], bad], e.detector, e.embedder)
    assert g.entries() == []  # one bad photo: nothing stored, not even the good one
    assert enrol(g, ENROLLED, [photos["yaoming.jpg"]], e.detector, e.embedder) == 1
    # the stored row holds the embedding, name, time and file name; no photo unless asked
    import sqlite3

    rows = sqlite3.connect(g.path).execute("SELECT name, source, length(embedding), photo FROM faces").fetchall()
    assert rows == [(ENROLLED, "yaoming.jpg", 512 * 4, None)]


def test_cli_add_list_identify_remove(tmp_path, photos):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(_site(tmp_path, [])))
    r = _invoke("faces", "add", ENROLLED, photos["yaoming.jpg"], "-c", site)
    assert r.exit_code == 0, r.output
    r = _invoke("faces", "add", "Team", photos["players.jpg"], "-c", site)
    assert r.exit_code == 1 and "players.jpg" in r.output and "faces found" in r.output
    r = _invoke("faces", "list", "-c", site)
    assert r.exit_code == 0 and ENROLLED in r.output and "Team" not in r.output
    r = _invoke("faces", "identify", photos["players.jpg"], "-c", site)
    assert r.exit_code == 0 and r.output.count(ENROLLED) == 1 and r.output.count("unknown") >= 5, r.output
    assert "skipped" in r.output  # faces under 40 px in the full team photo are not judged
    r = _invoke("faces", "remove", ENROLLED, "-c", site)
    assert r.exit_code == 0 and "1 sample" in r.output
    assert ENROLLED not in _invoke("faces", "list", "-c", site).output
    assert _invoke("faces", "remove", ENROLLED, "-c", site).exit_code == 1
    r = _invoke("faces", "identify", photos["players.jpg"], "-c", site)
    assert ENROLLED not in r.output


def test_bundled_models_are_refused_until_the_site_acknowledges_their_licence(tmp_path, photos):
    raw = _site(tmp_path, [{"CameraId": 1, "Address": "0", "faces": True, "Detection": "unknown_face"}])
    del raw["trakr"]["faces"]["accept_noncommercial_models"]
    site = tmp_path / "site.json"
    site.write_text(json.dumps(raw))
    for args in (
        ("run", "-c", site, "--duration", "1", "-o", tmp_path / "out"),
        ("faces", "add", "X", photos["yaoming.jpg"], "-c", site),
    ):
        r = _invoke(*args)
        assert r.exit_code == 2, r.output
        assert "trakr.faces.accept_noncommercial_models" in r.output and "non-commercial" in r.output
    with pytest.raises(FaceModelError, match="accept_noncommercial_models"):
        Pipeline(_config(raw), output_dir=tmp_path / "out").start()
    # faces off on the camera: the models are not needed, nothing is refused
    raw["cameras"][0]["faces"] = False
    assert Pipeline(_config(raw), output_dir=tmp_path / "out")._make_events(_config(raw).cameras[0]) is not None


# --------------------------------------------------------------------------- end to end


def test_enrolled_person_is_named_others_are_unknown_tiny_faces_yield_nothing_and_the_cloud_gets_all_after_an_outage(
    tmp_path, photos, face_rtsp, rtsp_server
):
    door = {"points": "NA", "detections": f"face:{ENROLLED}:unknown_face"}  # the legacy colon string
    cams = [
        {"CameraId": 1, "CamName": "door", "Address": face_rtsp.url(0), "faces": True, "roi_config": {"door": door}},
        {"CameraId": 2, "CamName": "yard", "Address": rtsp_server.url(0), "faces": True, "roi_config": {"yard": door}},
    ]
    raw = _site(tmp_path, cams)
    with FakeThingsBoard() as fake:
        raw["common"].update(alert_url=fake.url(TOKEN), alert_storage_ip=f"{fake.base}/upload/AlertImageData/")
        raw["trakr"].update(outbox={"retry_min_s": 0.05, "retry_max_s": 0.3}, cloud={"http_timeout_s": 3})
        cfg = _config(raw)
        e = engine_for(cfg)
        enrol(e.gallery, ENROLLED, [photos["yaoming.jpg"]], e.detector, e.embedder)
        fake.refuse()  # the cloud is down for the whole run
        p = Pipeline(cfg, output_dir=tmp_path / "out")
        link = attach(p, cfg)
        p.start()
        try:

            def seen() -> bool:
                alerts = read_alerts(tmp_path / "out")
                named = [a for a in alerts if a.violation == f"face:{ENROLLED}"]
                return len(named) >= 2 and sum(a.violation == "unknown_face" for a in alerts) >= 12

            assert wait_until(seen, 60, 0.5), [a.violation for a in read_alerts(tmp_path / "out")]
            stages = {cid: [d for d in c.events.derivers if isinstance(d, FaceStage)] for cid, c in p.cameras().items()}
        finally:
            p.stop()
        alerts = read_alerts(tmp_path / "out")
        named = [a for a in alerts if a.violation.startswith("face:")]
        unknown = [a for a in alerts if a.violation == "unknown_face"]
        # 1. Yao Ming is named (in the team photo and in his portrait), nobody else is
        assert {a.violation for a in named} == {f"face:{ENROLLED}"}
        for a in named:
            (obj,) = a.objects
            assert obj["sub_label"] == ENROLLED and obj["similarity"] >= 0.5, obj
            fx = (obj["region"][0] + obj["region"][2]) / 2  # his face: centre of the frame in both scenes
            assert 560 < fx < 800, obj
            assert a.extra["face_image"] and (tmp_path / "out" / a.extra["face_image"]).is_file()
        # 2. the others are unknown faces, far below the threshold
        assert len({a.extra["track_ids"][0] for a in unknown if a.camera_id == 1}) >= 12
        sims = [a.objects[0]["similarity"] for a in unknown if "similarity" in a.objects[0]]
        assert all(obj.get("sub_label") is None for a in unknown for obj in a.objects)
        assert max(sims) < 0.3 and min(o["similarity"] for a in named for o in a.objects) - max(sims) > 0.3
        # 3. the sample clip's people (faces far under 40 px) yield no identity at all
        assert not [a for a in alerts if a.camera_id == 2]
        (yard,) = stages[2]
        assert yard.tracks and yard.counts["named"] == yard.counts["unknown"] == 0, yard.counts
        # the models were loaded once for both cameras
        (door_stage,) = stages[1]
        assert door_stage.engine is yard.engine
        # 4. nothing was accepted during the outage, everything is kept; then the cloud comes back
        assert not fake.received()
        fake.accept()
        want = {a.alert_id for a in alerts}
        assert fake.wait_for(lambda: {v["alert_id"] for v in fake.telemetry_values(TOKEN)} >= want, 30)
        values = {v["alert_id"]: v for v in fake.telemetry_values(TOKEN)}
        for a in named:
            v = values[a.alert_id]
            assert (v["face_name"], v["face_known"], v["camera_id"], v["roi"]) == (ENROLLED, True, 1, "door")
            assert v["face_similarity"] >= 0.5 and v["captured_at"]
        assert all(values[a.alert_id]["face_name"] == "unknown" for a in unknown)
        assert fake.wait_for(
            lambda: {u.fields["alert_id"] for u in fake.received("upload") if u.fields.get("kind") == "face"} >= want,
            30,
        )
        crops = [u for u in fake.received("upload") if u.fields.get("kind") == "face"]
        img = cv2.imdecode(np.frombuffer(next(iter(crops[0].files.values()))[1], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and 40 <= min(img.shape[:2]) <= 400
        link.stop()
