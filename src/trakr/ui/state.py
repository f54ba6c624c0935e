"""What the console knows and does, apart from HTTP: camera views, health, saving ROIs.

:class:`ConsoleState` reads the pipeline only through :meth:`Pipeline.snapshot` and the preview
sink, indexes alerts through an alert sink, and changes the config only through
:meth:`ConsoleState.save_rois` (validated, written atomically, applied live). Everything it
shows passes through :func:`clean` first, so device tokens and camera passwords never reach a page.

Example:
    >>> clean("rtsp://admin:hunter2@10.0.0.5/live?user=a&password=s3cret")
    'rtsp://***@10.0.0.5/live?user=a&password=***'
    >>> r = RateTracker(); r.rate("cam1", 0, now=0.0), r.rate("cam1", 30, now=2.0)
    (None, 15.0)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trakr.config import CameraConfig, Problem, SysConfig, parse_config
from trakr.logs import redact
from trakr.types import PipelineSnapshot
from trakr.ui.events import EventIndex
from trakr.ui.preview import Previewer
from trakr.ui.roi import RoiEdit, apply_edit, config_sha, editor_model, prev_path, save_config_file

log = logging.getLogger(__name__)

_SECRET_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pwd|pass|token|access_token|key|secret|auth)=)[^&;#\s]*")


def clean(text: object) -> str:
    """``text`` as it may be shown: :func:`trakr.logs.redact` plus secret-looking URL parameters."""
    return _SECRET_PARAM.sub(r"\1***", redact(text))


def problem_json(p: Problem) -> dict:
    return {
        "where": p.where,
        "field": p.field,
        "value": clean(json.dumps(p.value)) if not isinstance(p.value, str) else clean(p.value),
        "message": clean(p.message),
        "severity": p.severity,
        "text": clean(str(p)),
    }


class RateTracker:
    """Rates from counters sampled when someone asks (no background work)."""

    def __init__(self, window_s: float = 10.0):
        self.window_s = window_s
        self._samples: dict[Any, deque] = {}
        self._lock = threading.Lock()

    def rate(self, key: Any, count: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._samples.setdefault(key, deque())
            if q and count < q[-1][1]:
                q.clear()  # the counter restarted (camera re-added)
            q.append((now, count))
            while len(q) > 2 and now - q[1][0] >= self.window_s:
                q.popleft()
            t0, c0 = q[0]
            if now - t0 < 0.5:
                return None
            return round((count - c0) / (now - t0), 2)


class SaveError(Exception):
    """An ROI edit refused: the HTTP status and every problem."""

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, list(problems)


@dataclass
class ConsoleState:
    """Everything the console's pages and API read and change."""

    pipeline: Any
    """A running :class:`trakr.pipeline.Pipeline` (read through ``snapshot()``)."""
    config_path: Path | None = None
    """The config file ROI edits are written to; ``None`` runs the embedded config (not saved)."""
    camera_list: str = "cameras"
    outbox: Any = None
    """The cloud link's :class:`trakr.delivery.outbox.Outbox`, or ``None``."""
    on_config: list[Callable[[SysConfig], Any]] = field(default_factory=list)
    """Called with the new config after an ROI edit (``pipeline.apply_config``, the cloud link...)."""
    raw: dict | None = None
    """The config document when there is no file (the embedded demo)."""
    preview_fps: float = 5.0

    def __post_init__(self) -> None:
        out = Path(self.pipeline.output_dir)
        self.output_dir = out
        self.previewer = Previewer(fps=self.preview_fps)
        self.events = EventIndex(out)
        self.rates = RateTracker()
        self.started_at = time.time()
        self._save_lock = threading.Lock()
        self._disk: tuple[float, dict] | None = None
        self._disk_lock = threading.Lock()
        self.stopping = threading.Event()
        """Set when the console stops (ends live streams)."""

    def attach(self) -> None:
        """Register the preview and event sinks on the pipeline."""
        self.pipeline.add_result_sink(self.previewer.sink)
        self.pipeline.add_alert_sink(self.events.sink)

    @property
    def config(self) -> SysConfig:
        return self.pipeline.config

    # -- cameras --------------------------------------------------------------------------------
    def frame_size(self, camera_id: int) -> tuple[int, int] | None:
        af = self.previewer.latest(camera_id)
        return af.frame.size if af is not None else None

    def cameras(self, snap: PipelineSnapshot | None = None) -> list[dict]:
        """Every configured camera: state, rates, latest frame, and zone problems."""
        snap = snap or self.pipeline.snapshot()
        now = time.time()
        self.previewer.forget({c.camera_id for c in self.config.cameras})  # cameras removed live
        out = []
        for cam in self.config.cameras:
            cs = snap.cameras.get(cam.camera_id)
            af = self.previewer.latest(cam.camera_id)
            size = af.frame.size if af is not None else None
            zones = editor_model(cam, size)["zones"]
            state = cs.state if cs else "starting"
            out.append(
                {
                    "camera_id": cam.camera_id,
                    "name": cam.name,
                    "label": cam.label,
                    "address": clean(cam.address),
                    "state": state,
                    "reason": clean(cs.reason) if cs else "",
                    "capture_fps": round(cs.capture_fps, 2) if cs else 0.0,
                    "analysed_fps": self.rates.rate(("analysed", cam.camera_id), cs.frames_analysed) if cs else None,
                    "frames_analysed": cs.frames_analysed if cs else 0,
                    "frames_dropped": cs.frames_dropped if cs else 0,
                    "reconnects": cs.reconnects if cs else 0,
                    "failures": cs.failures if cs else 0,
                    "last_error": clean(cs.last_error) if cs else "",
                    "last_frame_age_s": round(now - cs.last_frame_at, 1) if cs and cs.last_frame_at else None,
                    "last_analysed_at": af.done_at if af is not None else None,
                    "frame_size": list(size) if size else None,
                    "detections": len(af.detections) if af is not None else 0,
                    "triggers": sorted({t for z in zones for t in z["triggers"]}),
                    "zone_problems": [
                        f"{z['name'] or 'camera polygon'}: {z['problem']}" for z in zones if z["problem"]
                    ],
                }
            )
        return out

    def camera(self, camera_id: int) -> CameraConfig | None:
        return self.camera_in(self.config, camera_id)

    @staticmethod
    def camera_in(config: SysConfig, camera_id: int) -> CameraConfig | None:
        return next((c for c in config.cameras if c.camera_id == camera_id), None)

    # -- health ---------------------------------------------------------------------------------
    def disk_usage(self, max_age_s: float = 30.0) -> dict:
        """Bytes and files under the output directory (walked at most every ``max_age_s``)."""
        with self._disk_lock:
            if self._disk is not None and time.monotonic() - self._disk[0] < max_age_s:
                return self._disk[1]
            total = files = 0
            by_dir: dict[str, int] = {}
            stack = [self.output_dir]
            while stack:
                d = stack.pop()
                try:
                    entries = list(os.scandir(d))
                except OSError:
                    continue
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        elif e.is_file(follow_symlinks=False):
                            size = e.stat(follow_symlinks=False).st_size
                            total += size
                            files += 1
                            parts = Path(e.path).relative_to(self.output_dir).parts
                            top = parts[0] if len(parts) > 1 else "(top level)"
                            by_dir[top] = by_dir.get(top, 0) + size
                    except OSError:
                        continue
            fs = shutil.disk_usage(self.output_dir)
            result = {
                "path": str(self.output_dir),
                "bytes": total,
                "files": files,
                "by_folder": dict(sorted(by_dir.items(), key=lambda kv: -kv[1])),
                "limit_bytes": int(self.config.trakr.output.max_disk_mb * 1e6),
                "filesystem_free_bytes": fs.free,
                "filesystem_total_bytes": fs.total,
                "measured_at": time.time(),
            }
            self._disk = (time.monotonic(), result)
            return result

    def outbox_health(self) -> dict | None:
        if self.outbox is None:
            return None
        try:
            st = self.outbox.stats()
        except sqlite3.Error:
            return None
        channels: dict[str, dict] = {}
        db = Path(self.outbox.dir) / "outbox.db"
        try:  # a read-only connection of our own: the outbox's lock is never held for a report
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
            try:
                for ch, n, oldest, attempts in con.execute(
                    "SELECT channel, COUNT(*), MIN(created), MAX(attempts) FROM messages GROUP BY channel"
                ):
                    channels[ch] = {
                        "backlog": n,
                        "oldest_age_s": round(time.time() - oldest, 1) if oldest else 0.0,
                        "max_attempts": attempts,
                    }
            finally:
                con.close()
        except sqlite3.Error as e:
            log.debug("console: outbox channels unreadable: %s", e)
        counters = {k: v for k, v in st.items() if "." in k and isinstance(v, int)}
        return {
            "backlog": st.get("backlog", 0),
            "bytes": st.get("bytes", 0),
            "max_bytes": st.get("max_bytes", 0),
            "oldest_age_s": round(st.get("oldest_age_s", 0.0), 1),
            "by_channel": channels,
            "by_category": st.get("backlog_by_category", {}),
            "counters": counters,
        }

    def config_info(self) -> dict:
        info: dict[str, Any] = {
            "version": self.config.common.config_version,
            "client_name": self.config.common.client_name,
            "camera_list": self.camera_list,
            "path": str(self.config_path) if self.config_path else None,
            "cameras": len(self.config.cameras),
        }
        if self.config_path is not None and self.config_path.exists():
            data = self.config_path.read_bytes()
            info.update(
                sha=config_sha(data),
                modified_at=self.config_path.stat().st_mtime,
                previous=str(prev_path(self.config_path)) if prev_path(self.config_path).exists() else None,
            )
        return info

    def health(self) -> dict:
        snap = self.pipeline.snapshot()
        det = {
            "backend": snap.detector,
            "health": snap.detector_health,
            "precision": snap.detector_precision or "not reported",
            "batch_size": snap.batch_size,
            "inflight": snap.inflight,
            "errors": snap.detector_errors,
            "batches": snap.batches,
            "frames_analysed": snap.frames_analysed,
            "analysed_fps": self.rates.rate("analysed-all", snap.frames_analysed),
        }
        return {
            "at": snap.at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "cameras": self.cameras(snap),
            "detector": det,
            "pipeline": {
                "alerts": snap.alerts,
                "alerts_pending_disk": getattr(snap, "alerts_pending_disk", 0),
                "alerts_suppressed": getattr(snap, "alerts_suppressed", 0),
                "output_skipped": snap.output_skipped,
                "threads_alive": snap.threads_alive,
                "thread_restarts": snap.thread_restarts,
            },
            "outbox": self.outbox_health(),
            "disk": self.disk_usage(),
            "config": self.config_info(),
            "console": {
                "preview_encodes": self.previewer.encoded,
                "events_indexed": self.events.count(),
            },
        }

    # -- ROI editing ----------------------------------------------------------------------------
    def _read_raw(self) -> tuple[dict, bytes]:
        if self.config_path is None:
            raw = self.raw if self.raw is not None else {}
            data = json.dumps(raw, sort_keys=True).encode()
            return json.loads(data), data
        data = self.config_path.read_bytes()
        try:
            raw = json.loads(data)
        except ValueError as e:
            raise SaveError(409, f"the config file is not valid JSON any more ({e}); fix it by hand") from None
        if not isinstance(raw, dict):
            raise SaveError(409, "the config file is not a JSON object")
        return raw, data

    def editor(self, camera_id: int) -> dict | None:
        cam = self.camera(camera_id)
        if cam is None:
            return None
        model = editor_model(cam, self.frame_size(camera_id))
        _, data = self._read_raw()
        names = list(getattr(self.pipeline.detector, "class_names", None) or [])
        model.update(
            config_sha=config_sha(data),
            config_path=str(self.config_path) if self.config_path else None,
            known_triggers=sorted(set(names) | {"social_distancing"}),
        )
        return model

    def save_rois(self, camera_id: int, edit: RoiEdit) -> dict:
        """Validate ``edit``, write it into the config file, and apply it live."""
        with self._save_lock:
            raw, data = self._read_raw()
            if edit.config_sha and edit.config_sha != config_sha(data):
                raise SaveError(409, "the config file changed since the editor was opened: reload the page")
            new_raw, problems = apply_edit(raw, camera_id, edit, self.camera_list)
            if problems:
                raise SaveError(422, "not saved: the ROIs have problems", problems)
            report = parse_config(new_raw, camera_list=self.camera_list)
            known = {str(p) for p in parse_config(raw, camera_list=self.camera_list).errors}
            errors = [p for p in report.errors if str(p) not in known]  # other cameras' old errors don't block
            if errors or report.config is None or self.camera_in(report.config, camera_id) is None:
                raise SaveError(422, "not saved: the config would not load", errors or report.errors)
            new_cam = self.camera_in(report.config, camera_id)
            if self.config_path is not None:
                written = save_config_file(self.config_path, new_raw)
                note = f"saved to {self.config_path} (previous version kept as {prev_path(self.config_path).name})"
            else:
                self.raw = new_raw
                written = json.dumps(new_raw, sort_keys=True).encode()
                note = "applied live only: trakr runs its embedded config (start it with --config FILE to keep edits)"
            running = self.config
            cams = [new_cam if c.camera_id == camera_id else c for c in running.cameras]
            if all(c.camera_id != camera_id for c in running.cameras):
                cams.append(new_cam)
            updated = running.model_copy(update={"cameras": cams})
            for fn in self.on_config:
                fn(updated)
            log.info("console: ROIs of camera %s saved and applied: %s", camera_id, note)
            return {
                "ok": True,
                "message": note,
                "config_sha": config_sha(written),
                "warnings": [problem_json(p) for p in report.problems if p.severity == "warning"],
            }
