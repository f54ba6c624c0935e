"""What a config pushed from the cloud may change: an explicit allow-list.

The cloud owns the legacy sections (``common``, ``cameras``): the site's URLs, cameras, ROIs and
rules. trakr's own ``trakr`` section is local: a push may tune only the options listed in
:data:`PUSHABLE`; commands, paths, the detector model, listening ports and the cloud link itself
are local-only, and a push that tries to change one is refused, naming it. A push that would cut
the box off from the cloud (no ``cloud_status_ip`` any more while the running config has one) is
refused too.

Example:
    >>> local = {"common": {"cloud_status_ip": "http://tb/api/v1/T/attributes"}, "cameras": [],
    ...          "trakr": {"speaker": {"tts_command": ["espeak-ng", "-w", "{wav}", "--stdin"]}}}
    >>> pushed = {"common": {"cloud_status_ip": "http://tb/api/v1/T/attributes"}, "cameras": [],
    ...           "trakr": {"speaker": {"tts_command": ["sh", "-c", "id"]}, "gate": {"keyframe_s": 2}}}
    >>> raw, refused = vet_push(pushed, local)
    >>> refused
    ['trakr.speaker.tts_command: local-only setting; a config pushed from the cloud cannot change it']
    >>> vet_push({"common": [], "cameras": []}, local)[1]
    ['common: a pushed config must be a JSON object with a common section']
"""

from __future__ import annotations

from typing import Any

PUSHABLE: frozenset[str] = frozenset(
    {
        "detector.confidence",
        "detector.iou",
        "detector.imgsz",
        "gate.enabled",
        "gate.width",
        "gate.pixel_threshold",
        "gate.area_threshold",
        "gate.keyframe_s",
        "batch.deadline_ms",
        "capture.open_timeout_s",
        "capture.read_timeout_s",
        "capture.backoff_min_s",
        "capture.backoff_max_s",
        "output.jpeg_quality",
        "output.save_all_interval_s",
        "output.retention_days",
        "outbox.retry_min_s",
        "outbox.retry_max_s",
        "outbox.speaker_max_age_s",
        "cloud.health_interval_s",
        "cloud.frame_interval_s",
        "cloud.training_upload",
        "cloud.config_refresh_s",
        "speaker.min_interval_s",
    }
)
"""Dotted ``trakr`` options a pushed config may set. Everything else in ``trakr`` is local-only."""


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, path + "."))
        else:
            out[path] = v
    return out


def _set(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[last] = value


def _get(d: dict, dotted: str, default: Any = None) -> Any:
    for p in dotted.split("."):
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def vet_push(pushed: Any, local_raw: dict | None) -> tuple[dict, list[str]]:
    """Merge a pushed config onto the local one; returns ``(raw, refusals)``.

    ``raw`` is the pushed ``common`` and camera lists with the local ``trakr`` section, plus the
    allowed ``trakr`` options of the push. ``refusals`` is empty when the push may be applied;
    otherwise one line per reason, for the log and the cloud's ``config_errors``.
    """
    local = local_raw if isinstance(local_raw, dict) else {}
    if not isinstance(pushed, dict) or not isinstance(pushed.get("common"), dict):
        return {}, ["common: a pushed config must be a JSON object with a common section"]
    refusals: list[str] = []
    found = local.get("trakr")
    local_trakr: dict = found if isinstance(found, dict) else {}
    trakr = _copy(local_trakr)
    pushed_trakr = pushed.get("trakr")
    if pushed_trakr is not None and not isinstance(pushed_trakr, dict):
        refusals.append("trakr: expected a JSON object")
    elif pushed_trakr:
        for path, value in _leaves(pushed_trakr).items():
            if path in PUSHABLE:
                _set(trakr, path, value)
            elif _get(local_trakr, path, _MISSING) != value:
                refusals.append(f"trakr.{path}: local-only setting; a config pushed from the cloud cannot change it")
    local_status = _get(local, "common.cloud_status_ip")
    if _usable(local_status) and not _usable(pushed["common"].get("cloud_status_ip")):
        refusals.append(
            "common.cloud_status_ip: a push cannot remove the address this box reads its config "
            "from (it would cut the box off from the cloud)"
        )
    raw = {k: v for k, v in pushed.items() if k != "trakr"}
    if trakr:
        raw["trakr"] = trakr
    return raw, refusals


_MISSING = object()


def _usable(url: Any) -> bool:
    return isinstance(url, str) and url.strip().lower() not in ("", "na", "none", "null")


def _copy(d: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in d.items()}
