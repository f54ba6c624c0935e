"""Speaker announcements for alerts: an HTTP speaker driver and a local text-to-speech driver.

:class:`SpeakerSink` is an alert sink. For an alert of a camera with ``en_spkr`` (and the site's
``enableSpeaker``) it queues one announcement in the outbox (channel ``spk:<ip>`` or ``tts``,
category ``speaker``), throttled to one per speaker and violation every
``trakr.speaker.min_interval_s`` seconds, and never sent later than
``trakr.outbox.speaker_max_age_s`` (a late "wear your helmet" helps nobody).

* ``http`` driver: calls ``trakr.speaker.url_template`` (default ``http://{ip}/play?code={code}``)
  with ``ip`` = the ROI's ``speaker_ip`` (or the camera's ``Speaker``) and ``code`` =
  ``audio_key[violation]`` (e.g. ``m:1``); alerts without a speaker address or an audio key are
  skipped and counted.
* ``tts`` driver: ``espeak-ng -w <wav> --stdin`` speaks the violation's ``recommendations`` text
  into ``<output>/speaker/cam<id>_<violation>.wav`` (one file per camera and violation,
  overwritten), then runs ``player_command`` if one is set (there is no sound card on the build
  machines; on site use e.g. ``["aplay", "-q", "{wav}"]``).

Example:
    >>> speech_text("nohelmet", "-> Please train workers to enter with proper \\n safety helmet")
    'Please train workers to enter with proper safety helmet'
    >>> speech_text("person", "")
    'person detected'
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from trakr.config import SpeakerOptions, SysConfig
from trakr.delivery.outbox import Message, Outbox
from trakr.delivery.sender import OK, RETRY, Outcome
from trakr.delivery.thingsboard import HttpClient
from trakr.evidence import safe_name
from trakr.types import Alert

log = logging.getLogger(__name__)


def speech_text(violation: str, recommendation: str) -> str:
    """Plain text to speak: the recommendation without arrows and line breaks."""
    text = re.sub(r"\s+", " ", recommendation.replace("->", " ")).strip()
    return text or f"{violation.replace('_', ' ')} detected"


class SpeakerSink:
    """Alert sink that queues speaker announcements (thread-safe)."""

    def __init__(self, get_config: Callable[[], SysConfig], outbox: Outbox):
        self.get_config = get_config
        self.outbox = outbox
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.queued = 0
        self.throttled = 0
        self.skipped = 0

    def __call__(self, alert: Alert, output_dir: Path) -> None:
        cfg = self.get_config()
        opts = cfg.trakr.speaker
        cam = next((c for c in cfg.cameras if c.camera_id == alert.camera_id), None)
        if opts.driver == "none" or not cfg.common.enable_speaker or cam is None or not cam.en_spkr:
            return
        text = speech_text(alert.violation, alert.recommendation or cfg.recommendation(alert.violation))
        if opts.driver == "http":
            ip = alert.speaker or cam.speaker
            code = cfg.common.audio_key.get(alert.violation)
            if not ip or not code:
                self.skipped += 1
                log.debug(
                    "speaker: no %s for camera %s %s",
                    "address" if not ip else "audio_key",
                    alert.camera_id,
                    alert.violation,
                )
                return
            channel, target = f"spk:{ip}", ip
            payload = {
                "ip": ip,
                "code": code,
                "violation": alert.violation,
                "camera_id": alert.camera_id,
                "text": text,
                "alert_id": alert.alert_id,
            }
        else:
            channel, target = "tts", f"tts:{alert.camera_id}"
            payload = {
                "violation": alert.violation,
                "camera_id": alert.camera_id,
                "text": text,
                "alert_id": alert.alert_id,
            }
        now = time.monotonic()
        with self._lock:
            last = self._last.get((target, alert.violation))
            if last is not None and now - last < opts.min_interval_s:
                self.throttled += 1
                return
            self._last[(target, alert.violation)] = now
        if self.outbox.put(f"speaker:{alert.alert_id}", channel, "speaker", payload):
            self.queued += 1


def speaker_url(opts: SpeakerOptions, payload: dict) -> str:
    return opts.url_template.format(
        ip=payload["ip"],
        code=quote(str(payload["code"]), safe=""),
        violation=quote(payload["violation"]),
        camera_id=payload["camera_id"],
        text=quote(payload["text"]),
    )


def deliver_http(http: HttpClient, opts: SpeakerOptions, msg: Message) -> Outcome:
    url = speaker_url(opts, msg.payload)
    return http.call(opts.method, url, key=msg.key)


def synthesize(opts: SpeakerOptions, text: str, wav: Path, timeout_s: float = 15.0) -> None:
    """Run the TTS command into ``wav`` (atomically: a temporary file renamed)."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_name(f".{wav.name}.{os.getpid()}.tmp.wav")
    cmd = [a.replace("{wav}", str(tmp)) for a in opts.tts_command]
    try:  # the text goes on stdin, never into argv, so it can never be read as an option
        subprocess.run(
            cmd, check=True, timeout=timeout_s, input=text.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        os.replace(tmp, wav)
    finally:
        tmp.unlink(missing_ok=True)


def deliver_tts(opts: SpeakerOptions, output_dir: Path, msg: Message) -> Outcome:
    p = msg.payload
    wav = output_dir / "speaker" / f"cam{int(p['camera_id'])}_{safe_name(p['violation'])}.wav"
    try:
        synthesize(opts, p["text"], wav)
        if opts.player_command:
            subprocess.run(
                [a.replace("{wav}", str(wav)) for a in opts.player_command],
                check=True,
                timeout=60,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
    except FileNotFoundError as e:
        return Outcome(RETRY, f"tts: command not found: {e.filename}")
    except subprocess.CalledProcessError as e:
        return Outcome(RETRY, f"tts: {e.cmd[0]} exited {e.returncode}: {(e.stderr or b'').decode()[:200]}")
    except subprocess.TimeoutExpired as e:
        return Outcome(RETRY, f"tts: {e.cmd[0]} timed out")
    return Outcome(OK)
