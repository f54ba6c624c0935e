"""A config pushed from the cloud can never run commands, write outside the output directory, or cut
the box off; alert text never reaches a command as an argument (issue "Months unattended", item 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from fake_thingsboard import FakeThingsBoard

from trakr.config import parse_config
from trakr.delivery.cloud import Cloud
from trakr.delivery.outbox import Message
from trakr.delivery.push_policy import vet_push
from trakr.delivery.sender import OK
from trakr.delivery.speaker import deliver_tts

HERE = Path(__file__).resolve().parent

RECORDER = """import json, sys
out = sys.argv[1]
open(out, "wb").write(b"RIFF....WAVEfake")
with open(sys.argv[2], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read()}) + "\\n")
"""


def base_raw(fake: FakeThingsBoard, tmp_path: Path, marker: Path) -> dict:
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    return {
        "common": {
            "config_version": "1",
            "cloud_status_ip": fake.url("ATTRtok", "attributes"),
            "enableSpeaker": True,
            "recommendations": {"person": "-f/etc/passwd"},
        },
        "cameras": [{"CameraId": 1, "Address": "0", "Detection": "person", "en_spkr": 1}],
        "trakr": {
            "speaker": {"driver": "tts", "tts_command": [sys.executable, str(recorder), "{wav}", str(marker)]},
            "cloud": {"http_timeout_s": 3},
        },
    }


@pytest.mark.parametrize(
    "trakr_push, field",
    [
        ({"speaker": {"tts_command": ["sh", "-c", "id > /tmp/pwned"]}}, "trakr.speaker.tts_command"),
        ({"speaker": {"player_command": ["sh", "-c", "id"]}}, "trakr.speaker.player_command"),
        ({"output": {"directory": "/etc"}}, "trakr.output.directory"),
        ({"outbox": {"path": "/"}}, "trakr.outbox.path"),
        ({"detector": {"model_path": "/tmp/evil.onnx"}}, "trakr.detector.model_path"),
        ({"metrics": {"host": "0.0.0.0", "port": 9100}}, "trakr.metrics.host"),
        ({"cloud": {"enabled": False}}, "trakr.cloud.enabled"),
    ],
)
def test_push_of_a_local_only_setting_is_refused_naming_it(fake, tmp_path, trakr_push, field):
    marker = tmp_path / "tts.log"
    raw = base_raw(fake, tmp_path, marker)
    pushed = json.loads(json.dumps(raw))
    pushed["common"]["config_version"] = "2"
    pushed["trakr"] = trakr_push
    cloud = Cloud(parse_config(raw).config, tmp_path / "out", config_path=None, cloud_config=True)
    try:
        sync = cloud.config_sync
        sync.raw = raw
        assert sync.offer(json.dumps(pushed)) is False
        assert sync.rejected == 1 and sync.applied == 0
        assert cloud.config.common.config_version == "1"
        status = [m for m in _queued(cloud) if m.channel == "attr"]
        assert status and status[-1].payload["attributes"]["config_status"] == "rejected"
        assert field in status[-1].payload["attributes"]["config_errors"]
    finally:
        cloud.outbox.close()


def test_push_of_allowed_options_is_applied_and_keeps_local_commands(fake, tmp_path):
    marker = tmp_path / "tts.log"
    raw = base_raw(fake, tmp_path, marker)
    pushed = {
        "common": dict(raw["common"], config_version="2"),
        "cameras": raw["cameras"],
        "trakr": {"gate": {"keyframe_s": 2.0}, "speaker": {"min_interval_s": 3}},
    }
    applied = []
    cloud = Cloud(parse_config(raw).config, tmp_path / "out", cloud_config=True, on_config=applied.append)
    try:
        cloud.config_sync.raw = raw
        assert cloud.config_sync.offer(pushed) is True
        new = applied[0]
        assert new.trakr.gate.keyframe_s == 2.0 and new.trakr.speaker.min_interval_s == 3
        assert new.trakr.speaker.tts_command == raw["trakr"]["speaker"]["tts_command"]
    finally:
        cloud.outbox.close()


@pytest.mark.parametrize(
    "pushed, reason",
    [
        ({"common": [], "cameras": []}, "common"),
        ({"cameras": []}, "common"),
        ({"common": {"config_version": "9"}, "cameras": []}, "cloud_status_ip"),
        ({"common": {"config_version": "9", "cloud_status_ip": "NA"}, "cameras": []}, "cloud_status_ip"),
    ],
)
def test_push_that_would_cut_the_box_off_is_refused_and_not_saved(fake, tmp_path, pushed, reason):
    marker = tmp_path / "tts.log"
    raw = base_raw(fake, tmp_path, marker)
    path = tmp_path / "sysconfig.json"
    path.write_text(json.dumps(raw))
    cloud = Cloud(parse_config(raw).config, tmp_path / "out", config_path=path, cloud_config=True)
    try:
        cloud.config_sync.raw = raw
        assert cloud.config_sync.offer(pushed) is False
        assert json.loads(path.read_text()) == raw  # the saved config is untouched
        status = [m for m in _queued(cloud) if m.channel == "attr"][-1].payload["attributes"]
        assert status["config_status"] == "rejected" and reason in status["config_errors"]
    finally:
        cloud.outbox.close()


@pytest.mark.parametrize("frame_file", ["../x", "/etc/cron.d/x", "a/../../x", "", "C:\\x"])
def test_frame_file_outside_the_output_directory_is_a_config_error(frame_file):
    report = parse_config({"common": {"frameFile": frame_file}, "cameras": []})
    assert not report.ok
    assert any(p.field == "frameFile" and p.value == frame_file for p in report.errors)


def test_frame_file_symlink_out_of_the_output_directory_is_not_followed(tmp_path):
    from trakr.delivery.training import FrameWriter

    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    cfg = parse_config({"common": {"frameFile": "link/escaped.png"}, "cameras": []}).config
    with pytest.raises(ValueError, match="leaves the output directory"):
        FrameWriter(lambda: cfg, out).path(cfg)


def test_text_placeholder_in_a_command_is_refused():
    report = parse_config(
        {"common": {}, "cameras": [], "trakr": {"speaker": {"tts_command": ["espeak-ng", "-w", "{wav}", "{text}"]}}}
    )
    assert any("tts_command" in p.field and "standard input" in p.message for p in report.errors)


def test_recommendation_text_reaches_tts_on_stdin_never_as_an_option(fake, tmp_path):
    marker = tmp_path / "tts.log"
    cfg = parse_config(base_raw(fake, tmp_path, marker)).config
    msg = Message(
        id=1,
        key="speaker:x",
        channel="tts",
        category="speaker",
        created=time.time(),
        attempts=0,
        payload={"violation": "../../x", "camera_id": 1, "text": "-f/etc/passwd"},
        file=None,
        size=0,
    )
    outcome = deliver_tts(cfg.trakr.speaker, tmp_path, msg)
    assert outcome.status == OK, outcome
    call = json.loads(marker.read_text().splitlines()[0])
    assert call["stdin"] == "-f/etc/passwd"
    assert all("passwd" not in a for a in call["argv"])
    assert [p.name for p in (tmp_path / "speaker").iterdir()] == ["cam1_" + "_" * 6 + "x.wav"]


def test_real_espeak_speaks_option_like_text_instead_of_reading_the_file(tmp_path):
    """espeak-ng with the default command: '-f<file>' is spoken as words, so the WAV is short."""
    from trakr.config import SpeakerOptions
    from trakr.delivery.speaker import synthesize

    secret = tmp_path / "secret.txt"
    secret.write_text("this is a long secret text that must never be read aloud " * 20)
    as_text, as_file = tmp_path / "t.wav", tmp_path / "f.wav"
    synthesize(SpeakerOptions(), f"-f{secret}", as_text)
    synthesize(SpeakerOptions(), secret.read_text(), as_file)
    assert as_text.stat().st_size < as_file.stat().st_size / 4


def test_vet_push_merges_allowed_options_over_local():
    local = {"common": {"cloud_status_ip": "http://tb/a"}, "cameras": [], "trakr": {"gate": {"width": 100}}}
    raw, refused = vet_push(
        {
            "common": {"cloud_status_ip": "http://tb/a"},
            "cameras": [],
            "trakr": {"gate": {"keyframe_s": 1}, "speaker": {"driver": "http"}},
        },
        local,
    )
    assert refused == ["trakr.speaker.driver: local-only setting; a config pushed from the cloud cannot change it"]
    raw, refused = vet_push(
        {
            "common": {"cloud_status_ip": "http://tb/a"},
            "cameras": [],
            "trakr": {"gate": {"keyframe_s": 1, "width": 100}},
        },
        local,
    )
    assert not refused and raw["trakr"] == {"gate": {"width": 100, "keyframe_s": 1}}


def _queued(cloud: Cloud) -> list:
    return cloud.outbox.pending()


def test_push_with_one_invalid_camera_applies_the_valid_ones_and_reports_the_other(fake, tmp_path):
    marker = tmp_path / "tts.log"
    raw = base_raw(fake, tmp_path, marker)
    pushed = json.loads(json.dumps(raw))
    pushed["common"]["config_version"] = "2"
    pushed["cameras"].append({"CameraId": 2, "Address": "0", "CamDelay": -3})
    applied = []
    cloud = Cloud(parse_config(raw).config, tmp_path / "out", cloud_config=True, on_config=applied.append)
    try:
        cloud.config_sync.raw = raw
        assert cloud.config_sync.offer(pushed) is True
        assert [c.camera_id for c in applied[0].cameras] == [1]
        status = [m for m in _queued(cloud) if m.channel == "attr"][-1].payload["attributes"]
        assert status["config_status"] == "applied" and "camera 2 left out" in status["config_errors"]
        assert "CamDelay" in status["config_errors"]
    finally:
        cloud.outbox.close()
