"""Bounded local disk: prune old evidence, saved frames and training images.

An edge box runs for months; the output directory must not fill its disk. :func:`prune` deletes
files older than ``retention_days`` and, while the kept files exceed ``max_disk_mb``, the oldest
files in this order: raw input frames (``inputs/``), annotated frames (``detections/``), training
images (``training/``), and only then alerts (``alerts/``). The cloud outbox has its own bound.

Example:
    >>> import os, tempfile, time
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> for kind in ("inputs", "alerts"):
    ...     (out / kind / "d").mkdir(parents=True)
    ...     _ = (out / kind / "d" / "a.jpg").write_bytes(b"x" * 600_000)
    >>> r = prune(out, max_disk_mb=1.0, retention_days=30)
    >>> r.deleted, sorted(p.parent.parent.name for p in out.rglob("*.jpg"))
    (1, ['alerts'])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PRUNE_ORDER = ("inputs", "detections", "training", "alerts")
"""Folders under the output directory, cheapest to lose first."""
KEEP = {"classes.txt"}


@dataclass
class PruneReport:
    deleted: int = 0
    freed_bytes: int = 0
    kept_bytes: int = 0


def prune(output_dir: str | Path, max_disk_mb: float, retention_days: float, now: float | None = None) -> PruneReport:
    """Delete expired files, then the oldest of the cheapest kind until under ``max_disk_mb``."""
    root = Path(output_dir)
    now = time.time() if now is None else now
    files: dict[str, list[tuple[float, int, Path]]] = {}
    for kind in PRUNE_ORDER:
        entries = []
        for p in (root / kind).rglob("*"):
            if p.is_file() and p.name not in KEEP and not p.name.startswith("."):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                entries.append((st.st_mtime, st.st_size, p))
        files[kind] = sorted(entries)
    report = PruneReport()

    def delete(size: int, path: Path) -> None:
        path.unlink(missing_ok=True)
        report.deleted += 1
        report.freed_bytes += size

    cutoff = now - retention_days * 86400
    for kind in PRUNE_ORDER:
        keep = []
        for mtime, size, path in files[kind]:
            if mtime < cutoff:
                delete(size, path)
            else:
                keep.append((mtime, size, path))
        files[kind] = keep
    total = sum(size for kind in PRUNE_ORDER for _, size, _ in files[kind])
    limit = max_disk_mb * 1e6
    for kind in PRUNE_ORDER:
        while total > limit and files[kind]:
            _, size, path = files[kind].pop(0)
            delete(size, path)
            total -= size
    report.kept_bytes = total
    for kind in PRUNE_ORDER:  # empty day/camera folders
        for d in sorted((root / kind).glob("*/"), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
    return report


class RetentionJanitor:
    """Runs :func:`prune` at start, every ``interval_s``, and as soon as ``written()`` (bytes written
    under the output directory so far) grew by more than ``early_fraction`` of ``max_disk_mb`` since
    the last pass, so a burst of images cannot overshoot the bound by more than that."""

    def __init__(
        self,
        output_dir: str | Path,
        max_disk_mb: float,
        retention_days: float,
        interval_s: float = 60,
        written: Callable[[], int] | None = None,
        early_fraction: float = 0.05,
        poll_s: float = 1.0,
    ):
        self.output_dir, self.max_disk_mb, self.retention_days = Path(output_dir), max_disk_mb, retention_days
        self.interval_s = interval_s
        self.written = written or (lambda: 0)
        self.early_fraction = early_fraction
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _pass(self) -> None:
        try:
            r = prune(self.output_dir, self.max_disk_mb, self.retention_days)
            if r.deleted:
                log.warning(
                    "output over its disk bound or retention: deleted %d old file(s), %.1f MB; %.1f MB kept",
                    r.deleted,
                    r.freed_bytes / 1e6,
                    r.kept_bytes / 1e6,
                )
        except Exception:
            log.exception("retention pass failed")

    def _run(self) -> None:
        while True:
            last_at, last_written = time.monotonic(), self.written()  # before: writes during the pass count
            self._pass()
            while True:
                if self._stop.wait(self.poll_s):
                    return
                grown = self.written() - last_written
                if (
                    grown > self.early_fraction * self.max_disk_mb * 1e6
                    or time.monotonic() - last_at >= self.interval_s
                ):
                    break
