"""The peer in the same run: Roboflow ``inference``'s InferencePipeline on the same cameras and model.

``trakr bench --peer roboflow`` makes (once, then reuses) a virtualenv of its own,
``$TRAKR_CACHE/peer-venv`` (default ``~/.cache/trakr/peer-venv``), installs PyPI
:data:`PEER_PACKAGE` into it (CPU build; several GB with its torch dependency, minutes the first
time), and for every camera count runs ``scripts/peer_roboflow.py`` there: the peer's own
``InferencePipeline.init_with_custom_logic`` reads the same RTSP cameras the bench serves, and its
custom logic runs the same ONNX file through onnxruntime with trakr's ``imgsz``, threads,
letterbox, confidence, IoU and NMS. The script does not import trakr; it prints one JSON object
(analysed fps, p50/p95/p99 capture→result latency, CPU, peak RSS), read here into a
:class:`~trakr.bench.results.PeerResult`. The machine's load is recorded around it like every other measurement.

Nothing here installs anything unless asked (:func:`ensure_peer`); a failed install or run
raises :class:`PeerError` with the tool's own error text.

Example:
    >>> r = PeerResult.from_json({"analysed_fps": 40.5, "latency_ms": {"p50": 90.0, "p95": 200.0, "p99": 300.0},
    ...                           "cpu_percent": 180.0, "rss_peak_mb": 1700.0, "cameras": 8})
    >>> r.analysed_fps, r.latency_ms.p99, r.to_json()["rss_peak_mb"]
    (40.5, 300.0, 1700.0)
    >>> peer_venv().name
    'peer-venv'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from trakr.bench.machine import CpuMeter, MachineLoad, load_1m
from trakr.bench.results import PeerResult

PEERS = ("roboflow",)
PEER_PACKAGE = "inference==1.8.3"
"""What goes into the peer's virtualenv (pinned: a new release measures differently)."""
INSTALL_TIMEOUT_S = 1800.0
"""The whole install (venv + pip); pip's own network timeout is 60 s per request."""
MARKER = ".trakr-peer-installed"
SCRIPT = "peer_roboflow.py"
START_BUDGET_S = 150.0
"""Importing ``inference`` (torch, transformers...) takes 15-60 s, connecting the cameras a few more."""


class PeerError(RuntimeError):
    """The peer could not be installed or run; the message carries the tool's own error text."""


def peer_venv() -> Path:
    """``$TRAKR_CACHE/peer-venv`` (default ``~/.cache/trakr/peer-venv``)."""
    env = os.environ.get("TRAKR_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "trakr") / "peer-venv"


def peer_script() -> Path:
    """``scripts/peer_roboflow.py`` of the trakr source tree this module runs from."""
    path = Path(__file__).resolve().parents[3] / "scripts" / SCRIPT
    if not path.is_file():
        raise PeerError(
            f"the peer script {SCRIPT} is not at {path}: it ships in the trakr source tree (scripts/); "
            "run the bench from a checkout (pip install -e .)"
        )
    return path


def _tail(text: str | bytes | None, n: int = 1500) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "").strip()[-n:]


def ensure_peer(progress: Callable[[str], None] = lambda s: None, timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The peer virtualenv's python, installing :data:`PEER_PACKAGE` first if it is not there yet."""
    venv = peer_venv()
    python = venv / "bin" / "python"
    marker = venv / MARKER
    if python.is_file() and marker.is_file() and marker.read_text().strip() == PEER_PACKAGE:
        return python
    progress(f"installing the peer ({PEER_PACKAGE}) into {venv}: once, takes minutes and several GB")
    deadline = time.monotonic() + timeout_s
    log = venv.parent / "peer-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = []
    if not python.is_file():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append([str(python), "-m", "pip", "install", "--timeout", "60", "--disable-pip-version-check", PEER_PACKAGE])
    with open(log, "ab") as fh:
        for cmd in steps:
            left = deadline - time.monotonic()
            try:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=max(1.0, left))
            except subprocess.TimeoutExpired:
                raise PeerError(
                    f"installing the peer took over {timeout_s:.0f} s ({' '.join(cmd[:3])}...); log: {log}"
                ) from None
            if proc.returncode != 0:
                raise PeerError(
                    f"{' '.join(cmd[:5])} failed ({proc.returncode}): {_tail(log.read_text(errors='replace'))}"
                )
    marker.write_text(PEER_PACKAGE + "\n")
    return python


def peer_command(
    python: Path,
    addresses: Sequence[str],
    model: Path,
    imgsz: int,
    threads: int,
    confidence: float,
    iou: float,
    duration: float,
    warmup: float,
    json_path: Path,
) -> list[str]:
    """The peer script's command line (no shell: addresses are arguments)."""
    return [
        str(python), str(peer_script()), "--model", str(model), "--imgsz", str(imgsz), "--threads", str(threads),
        "--confidence", str(confidence), "--iou", str(iou), "--duration", f"{duration:g}", "--warmup", f"{warmup:g}",
        "--json", str(json_path), *addresses,
    ]  # fmt: skip


def run_peer(
    python: Path,
    addresses: Sequence[str],
    model: Path,
    imgsz: int,
    threads: int,
    confidence: float,
    iou: float,
    duration: float,
    warmup: float,
    helper_pids: Sequence[int] = (),
) -> PeerResult:
    """Run the peer on ``addresses`` for ``duration`` s after its first result; its figures and the
    machine's load meanwhile. Raises :class:`PeerError` with the script's stderr when it fails."""
    with tempfile.TemporaryDirectory(prefix="trakr-peer-") as tmp:
        out = Path(tmp) / "peer.json"
        cmd = peer_command(python, addresses, model, imgsz, threads, confidence, iou, duration, warmup, out)
        load0 = load_1m()
        meter = CpuMeter(helper_pids)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=duration + START_BUDGET_S, cwd=tmp)
        except subprocess.TimeoutExpired as e:
            raise PeerError(
                f"the peer did not finish within {duration + START_BUDGET_S:.0f} s: {_tail(e.stderr)}"
            ) from None
        load = MachineLoad.of(meter.read(), load0, load_1m())
        if proc.returncode != 0 or not out.is_file():
            raise PeerError(f"the peer exited with {proc.returncode}: {_tail(proc.stderr)}")
        return PeerResult.from_json(json.loads(out.read_text()), load)
