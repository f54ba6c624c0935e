"""The config from the cloud: the start-up fetch and the shared-attribute long-poll.

:func:`startup_config` decides the config ``trakr run --cloud_config 1`` starts with;
:class:`ConfigSync` applies configs pushed while running. Both read the shared attribute
``trakr.cloud.config_key`` of the ``common.cloud_status_ip`` device and check a value the same
way (:func:`check_cloud_value`): decoded, vetted by :func:`trakr.delivery.push_policy.vet_push`,
validated like a file. *Nothing* in a cloud value can stop trakr: whatever goes wrong while
checking it (an invalid config, ``"cameras": 5``, JSON nested 100 000 deep, a list instead of an
object) makes it a rejected config, reported once as client attributes (``config_status =
rejected``, ``config_errors``), and the local or running config stays. The fingerprint of the last
rejected value is kept in ``<config>.rejected``, so the same bad value is not reported again at
every poll or restart.

Example:
    >>> raw, report, errors = check_cloud_value('{"common": {}, "cameras": 5}', None)
    >>> report is None and len(errors) > 0
    True
    >>> check_cloud_value("[" * 100_000, None)[2]
    ['not a usable JSON object: JSON nested too deeply']
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trakr.config import ConfigReport, Problem, SysConfig, load_config, parse_config
from trakr.delivery.push_policy import vet_push
from trakr.delivery.thingsboard import BadAnswer, CloudError, HttpClient
from trakr.evidence import write_atomic
from trakr.logs import redact
from trakr.supervisor import backoff_delay, supervise

log = logging.getLogger(__name__)

Report = Callable[[str, str, list[str]], None]
"""``report(status, version, errors)``: queue the config status for the cloud."""


# --------------------------------------------------------------------------------- files


def last_good_path(path: Path) -> Path:
    return path.with_name(path.name + ".last-good")


def rejected_path(path: Path) -> Path:
    """Where the fingerprint of the last rejected cloud value is kept."""
    return path.with_name(path.name + ".rejected")


def save_config(path: Path, raw: dict) -> None:
    """Write ``raw`` as the local config (atomic) and as its ``.last-good`` copy."""
    data = json.dumps(raw, indent=4).encode()
    write_atomic(path, data)
    write_atomic(last_good_path(path), data)


def _read_rejected(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return rejected_path(path).read_text().strip() or None
    except OSError:
        return None


def _write_rejected(path: Path | None, fingerprint: str | None) -> None:
    if path is None:
        return
    try:
        if fingerprint is None:
            rejected_path(path).unlink(missing_ok=True)
        else:
            write_atomic(rejected_path(path), fingerprint.encode())
    except OSError as e:
        log.warning("cannot record the rejected cloud config: %s", e)


# --------------------------------------------------------------------------------- checking


def fingerprint(value: object) -> str:
    """A stable digest of a cloud value (a JSON string or an already decoded value)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        except (RecursionError, ValueError, TypeError):
            text = f"<unserialisable {type(value).__name__}>"
    return hashlib.sha256(text.encode(errors="replace")).hexdigest()


def decode_value(value: object) -> dict:
    """The config object in a cloud value (a JSON object, or a string holding one)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def version_of(raw: object) -> str:
    """``common.config_version`` of a raw config, ``"?"`` when there is none."""
    common = raw.get("common") if isinstance(raw, dict) else None
    return str(common.get("config_version", "?"))[:64] if isinstance(common, dict) else "?"


def check_cloud_value(
    value: object, local_raw: dict | None, camera_list: str = "cameras"
) -> tuple[dict, ConfigReport | None, list[str]]:
    """Check a config value from the cloud against the local raw config.

    Returns ``(raw, report, errors)``: ``raw`` is the merged config to run and save, ``report``
    its valid parse, and ``errors`` empty. Otherwise ``report`` is ``None`` and ``errors`` says
    why, one line per reason. Never raises.
    """
    raw: dict = {}
    try:
        pushed = decode_value(value)
        raw, refusals = vet_push(pushed, local_raw)
        if refusals:
            return raw or pushed, None, refusals
        report = parse_config(raw, camera_list=camera_list)
        if not report.runnable or report.config is None:  # invalid cameras alone are left out, as locally
            return raw, None, [redact(str(p)) for p in report.errors] or ["no usable config"]
        return raw, report, []
    except ValueError as e:
        return raw, None, [f"not a usable JSON object: {redact(e)}"]
    except Exception as e:  # RecursionError, TypeError...: a bad value must never stop trakr
        return raw, None, [f"unusable config ({type(e).__name__}: {redact(e)})"[:1000]]


# --------------------------------------------------------------------------------- start-up


def startup_config(path: str | Path, cloud_config: bool = False, camera_list: str = "cameras") -> ConfigReport:
    """The config to start with (``trakr run --cloud_config 1|0``).

    Loads the local file (its ``.last-good`` copy if the file is missing or invalid). With
    ``cloud_config`` it then reads the shared attribute ``trakr.cloud.config_key`` from
    ``common.cloud_status_ip``: a valid config with a different ``config_version`` is saved
    atomically as the local file (and ``.last-good``) and used; an unusable one is reported to
    the cloud once (client attribute ``config_status = rejected``) and the local file is used; an
    unreachable cloud means the local file. What happened is added to the report as warnings.
    """
    path = Path(path)
    report = load_config(path, camera_list=camera_list)
    notes: list[Problem] = []
    loaded_from = path
    if not report.runnable and last_good_path(path).exists():
        fallback = load_config(last_good_path(path), camera_list=camera_list)
        if fallback.runnable:
            notes.append(
                Problem(
                    "file",
                    str(path),
                    None,
                    f"invalid ({len(report.errors)} error(s)); using {last_good_path(path).name}",
                    "warning",
                )
            )
            report, loaded_from = fallback, last_good_path(path)
    cfg = report.config
    if not cloud_config or cfg is None or not report.runnable:
        report.problems += notes
        return report
    url = cfg.common.cloud_status_ip
    if not url:
        report.problems += notes + [
            Problem("cloud", "cloud_status_ip", None, "not set: using the local config", "warning")
        ]
        return report
    key = cfg.trakr.cloud.config_key
    http = HttpClient(cfg.trakr.cloud.http_timeout_s)
    try:
        try:
            shared = http.shared_attributes(url, [key])
        except BadAnswer as e:
            report.problems += notes + _reject_at_start(http, url, path, key, {}, [str(e)], e.fingerprint)
            return report
        if key not in shared:
            notes.append(Problem("cloud", key, None, "no such shared attribute: using the local config", "warning"))
            report.problems += notes
            return report
        local_raw = json.loads(loaded_from.read_text())
        raw, cloud, errors = check_cloud_value(shared[key], local_raw, camera_list)
        if cloud is None or cloud.config is None:
            report.problems += notes + _reject_at_start(http, url, path, key, raw, errors, fingerprint(shared[key]))
            return report
        new = cloud.config
        if new.common.config_version == cfg.common.config_version and loaded_from == path:
            notes.append(
                Problem(
                    "cloud", "config_version", cfg.common.config_version, "the local config is up to date", "warning"
                )
            )
            report.problems += notes
            return report
        save_config(path, raw)
        _write_rejected(path, None)
        http.post_json(
            url, {"config_status": "applied", "config_version": new.common.config_version, "config_errors": ""}
        )
        cloud.problems += notes + [
            Problem(
                "cloud",
                "config_version",
                new.common.config_version,
                f"fetched from the cloud (local was {cfg.common.config_version}) and saved",
                "warning",
            )
        ]
        return cloud
    except (CloudError, ValueError, OSError) as e:
        report.problems += notes + [
            Problem(
                "cloud",
                "cloud_status_ip",
                redact(url),
                f"cloud config unavailable ({redact(e)}): using the local config",
                "warning",
            )
        ]
        return report
    finally:
        http.close()


def _reject_at_start(
    http: HttpClient, url: str, path: Path, key: str, raw: dict, errors: list[str], digest: str
) -> list[Problem]:
    """Report a rejected cloud config (once: not when this value was rejected before)."""
    version = version_of(raw)
    if _read_rejected(path) == digest:
        message = f"cloud config {version} was rejected before: using the local config"
    else:
        out = http.post_json(
            url, {"config_status": "rejected", "config_errors": "; ".join(errors)[:4000], "config_version": version}
        )
        if out.status == "ok":
            _write_rejected(path, digest)
        message = f"cloud config rejected ({len(errors)} error(s)): " + "; ".join(errors[:3])
    return [Problem("cloud", key, version, message[:2000], "warning")]


# --------------------------------------------------------------------------------- while running


class ConfigSync:
    """Shared-attribute long-poll: applies a pushed config without a restart.

    Also re-reads the attribute after every error (a push may have been missed while the link
    was down) and every ``trakr.cloud.config_refresh_s``. A pushed value is checked with
    :func:`check_cloud_value`; an unusable one is reported once (``report("rejected", ...)``) and
    the running config stays. A valid one is applied (``on_apply``, which may return the options
    that only take effect after a restart), then saved as the local file and ``.last-good``, then
    reported ``applied`` (with those options in ``config_errors``). The loop runs on a supervised
    thread.
    """

    def __init__(
        self,
        get_config: Callable[[], SysConfig],
        config_path: str | Path | None,
        on_apply: Callable[[SysConfig], object],
        report: Report,
        local_raw: dict | None = None,
    ):
        self.get_config = get_config
        self.config_path = Path(config_path) if config_path else None
        self.raw: dict | None = local_raw if local_raw is not None else self._read_local()
        self.on_apply = on_apply
        self.report = report
        self.http = HttpClient(get_config().trakr.cloud.http_timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rejected = _read_rejected(self.config_path)
        self.applied = 0
        self.rejected = 0
        self.polls = 0

    def _read_local(self) -> dict | None:
        if self.config_path is None or not self.config_path.exists():
            return None
        try:
            raw = json.loads(self.config_path.read_text())
        except (ValueError, OSError):
            return None
        return raw if isinstance(raw, dict) else None

    def start(self) -> None:
        self._thread = supervise(self._loop, "config-sync", self._stop)

    def stop(self) -> None:
        self._stop.set()
        self.http.close()  # aborts a long-poll in progress
        if self._thread is not None:
            self._thread.join(1.0)

    def _loop(self) -> None:
        failures = 0
        need_fetch, last_fetch = True, time.monotonic()
        while not self._stop.is_set():
            cfg = self.get_config()
            url, key = cfg.common.cloud_status_ip, cfg.trakr.cloud.config_key
            self.http.timeout_s = cfg.trakr.cloud.http_timeout_s
            if not url:
                self._stop.wait(30)
                continue
            try:
                if need_fetch or time.monotonic() - last_fetch > cfg.trakr.cloud.config_refresh_s:
                    need_fetch, last_fetch = False, time.monotonic()
                    shared = self.http.shared_attributes(url, [key])
                    if key in shared:
                        self.offer(shared[key], "fetch")
                self.polls += 1
                update = self.http.wait_updates(url, cfg.trakr.cloud.long_poll_s)
                if update and key in update:
                    self.offer(update[key], "push")
                failures = 0
                continue
            except BadAnswer as e:  # the cloud holds an unusable value: reject it (once), keep polling
                if e.fingerprint != self._rejected:
                    self._reject({}, [str(e)], "fetch", e.fingerprint)
            except Exception as e:  # network, closed client on stop
                if self._stop.is_set():
                    return
                log.warning("config long-poll: %s", redact(e))
                need_fetch = True
            failures += 1
            self._stop.wait(backoff_delay(failures, 1.0, 60.0) * random.uniform(0.5, 1.0))

    def offer(self, value: object, source: str = "push") -> bool:
        """Check and apply a config value from the cloud; ``True`` if it was applied."""
        digest = fingerprint(value)
        if digest == self._rejected:
            return False  # reported already
        raw, report, errors = check_cloud_value(value, self.raw)
        if report is None or report.config is None:
            self._reject(raw, errors, source, digest)
            return False
        if raw == self.raw:
            return False
        new = report.config
        version = new.common.config_version
        try:
            later = self.on_apply(new)
        except Exception as e:
            log.exception("config %s from the cloud could not be applied", version)
            self._reject(raw, [f"apply failed: {type(e).__name__}: {e}"], source, digest)
            return False
        self.raw = raw
        self.applied += 1
        self._rejected = None
        if self.config_path is not None:
            try:
                save_config(self.config_path, raw)
            except OSError as e:
                log.error("config %s applied but not saved: %s", version, e)
            _write_rejected(self.config_path, None)
        log.info("config %s from the cloud (%s) applied: %d camera(s)", version, source, len(new.cameras))
        notes = [f"{k}: takes effect after a restart" for k in later] if isinstance(later, list) else []
        notes += [f"camera {cid} left out: " + "; ".join(lines) for cid, lines in report.invalid_cameras.items()]
        self.report("applied", version, notes)
        return True

    def _reject(self, raw: Any, errors: list[str], source: str, digest: str) -> None:
        self._rejected = digest
        _write_rejected(self.config_path, digest)
        self.rejected += 1
        version = version_of(raw)
        log.warning(
            "config %s from the cloud (%s) rejected, keeping the running one: %s",
            version,
            source,
            "; ".join(errors[:5]),
        )
        self.report("rejected", version, errors)
