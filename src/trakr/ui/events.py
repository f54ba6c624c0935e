"""The console's event index: stored alerts in SQLite, filtered and paged fast.

The alert records under ``<output>/alerts/<day>/`` stay the source of truth. :class:`EventIndex`
keeps one row per alert in ``<output>/console.sqlite`` (added by a pipeline alert sink as each
alert is stored, and by :meth:`EventIndex.sync` for records written while the console was off or
removed by retention). Lists are keyset-paged newest first on indexed columns, so page 2 000 of
100 000 alerts costs what page 1 does. :func:`delivery` reads each alert's state in the cloud
outbox.

Example:
    >>> import tempfile
    >>> from trakr.types import Alert
    >>> idx = EventIndex(tempfile.mkdtemp())
    >>> idx.add([Alert(f"id{i}", i % 2, "", None, "person", 100.0 + i, 100.0 + i, "", [], (640, 480))
    ...          for i in range(5)])
    >>> page = idx.query(Filters(camera=1), limit=2)
    >>> [r["alert_id"] for r in page.items], page.total, page.next
    (['id3', 'id1'], 2, None)
    >>> inside_dir(Path(tempfile.gettempdir()), "../etc/passwd") is None
    True
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trakr.config import relative_file_name
from trakr.types import Alert

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    alert_id TEXT PRIMARY KEY,
    captured_at REAL NOT NULL,
    camera_id INTEGER NOT NULL,
    camera_name TEXT NOT NULL,
    roi TEXT NOT NULL,
    violation TEXT NOT NULL,
    objects INTEGER NOT NULL,
    evidence_image TEXT,
    record_path TEXT,
    day TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_time ON events (captured_at, alert_id);
CREATE INDEX IF NOT EXISTS events_camera ON events (camera_id, captured_at, alert_id);
CREATE INDEX IF NOT EXISTS events_violation ON events (violation, captured_at, alert_id);
CREATE INDEX IF NOT EXISTS events_roi ON events (roi, captured_at, alert_id);
CREATE INDEX IF NOT EXISTS events_day ON events (day);
CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL);
"""
COLUMNS = (
    "alert_id",
    "captured_at",
    "camera_id",
    "camera_name",
    "roi",
    "violation",
    "objects",
    "evidence_image",
    "record_path",
)
WHOLE_CAMERA = "-"
"""The ``roi`` filter value that selects camera-wide alerts (those without an ROI)."""


def inside_dir(root: Path, rel: str | None) -> Path | None:
    """``root / rel`` if it is an existing file inside ``root`` (no ``..``, no absolute path, no
    symlink out), else ``None``."""
    if not rel:
        return None
    try:
        relative_file_name(rel)
        base = root.resolve()
        path = (base / rel).resolve()
    except (ValueError, OSError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class Filters:
    """What the events list shows: any of camera, rule (violation), ROI, time range."""

    camera: int | None = None
    rule: str | None = None
    roi: str | None = None
    """An ROI name, or :data:`WHOLE_CAMERA` for alerts without an ROI."""
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list]:
        conds: list[str] = []
        args: list[Any] = []
        if self.camera is not None:
            conds.append("camera_id = ?")
            args.append(self.camera)
        if self.rule:
            conds.append("violation = ?")
            args.append(self.rule)
        if self.roi:
            conds.append("roi = ?")
            args.append("" if self.roi == WHOLE_CAMERA else self.roi)
        if self.since is not None:
            conds.append("captured_at >= ?")
            args.append(self.since)
        if self.until is not None:
            conds.append("captured_at < ?")
            args.append(self.until)
        return " AND ".join(conds) or "1", args


@dataclass
class Page:
    items: list[dict]
    total: int
    next: str | None
    """Cursor of the next (older) page, or ``None`` on the last page."""


def _cursor(row: dict) -> str:
    return f"{row['captured_at']!r}:{row['alert_id']}"


def parse_cursor(text: str) -> tuple[float, str]:
    """``"<captured_at>:<alert_id>"`` -> its parts; ``ValueError`` if malformed."""
    t, sep, aid = text.partition(":")
    if not sep or not aid:
        raise ValueError(f"bad page cursor {text!r}")
    return float(t), aid


class EventIndex:
    """SQLite index of stored alerts (thread-safe)."""

    def __init__(self, output_dir: str | Path, path: str | Path | None = None):
        self.output_dir = Path(output_dir)
        self.path = Path(path) if path else self.output_dir / "console.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # an index: rebuilt from the records if lost
        self._db.executescript(_SCHEMA)
        self.closed = False

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._db.close()

    # -- writing --------------------------------------------------------------------------------
    @staticmethod
    def _row(a: Alert) -> tuple:
        day = Path(a.record_path).parent.name if a.record_path else ""
        return (
            a.alert_id,
            float(a.captured_at),
            int(a.camera_id),
            a.camera_name or "",
            a.roi or "",
            a.violation,
            len(a.objects),
            a.evidence_image,
            a.record_path,
            day,
        )

    def add(self, alerts: Iterable[Alert]) -> None:
        rows = [self._row(a) for a in alerts]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def sink(self, alert: Alert, output_dir: Path) -> None:
        """Pipeline alert sink: index the alert just stored (a failure is logged; the next
        :meth:`sync` indexes it from its record)."""
        if self.closed:  # the console stopped first; the next start's sync indexes it
            return
        try:
            self.add([alert])
        except sqlite3.Error as e:
            log.warning("console: could not index alert %s (%s); it is indexed at the next sync", alert.alert_id, e)

    def sync(self) -> int:
        """Bring the index in line with the records on disk; returns rows added or removed.

        Only day folders whose modification time changed since the last sync are listed, and
        only records not yet indexed are read.
        """
        root = self.output_dir / "alerts"
        changed = 0
        days = {e.name: e for e in os.scandir(root) if e.is_dir()} if root.is_dir() else {}
        with self._lock:
            known = dict(self._db.execute("SELECT day, mtime_ns FROM days"))
        for gone in set(known) - set(days):
            changed += self._drop_day(gone)
        for day, entry in sorted(days.items()):
            mtime = entry.stat().st_mtime_ns
            if known.get(day) == mtime:
                continue
            changed += self._sync_day(day, Path(entry.path), mtime)
        return changed

    def _drop_day(self, day: str) -> int:
        with self._lock:
            n = self._db.execute("DELETE FROM events WHERE day = ?", (day,)).rowcount
            self._db.execute("DELETE FROM days WHERE day = ?", (day,))
        return n

    def _sync_day(self, day: str, folder: Path, mtime: int) -> int:
        on_disk = {f"alerts/{day}/{e.name}" for e in os.scandir(folder) if e.name.endswith(".json")}
        with self._lock:
            indexed = {r[0] for r in self._db.execute("SELECT record_path FROM events WHERE day = ?", (day,))}
        new = []
        for i, rel in enumerate(sorted(on_disk - indexed), 1):
            if i % 200 == 0:
                time.sleep(0.01)  # a first sync of a big archive must not starve the pipeline
            try:
                alert = Alert.from_json(json.loads((self.output_dir / rel).read_text()))
                alert.record_path = rel  # where it is, whatever the record says
                new.append(alert)
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.debug("console: skipping unreadable record %s: %s", rel, e)
        self.add(new)
        gone = sorted(indexed - on_disk)
        with self._lock:
            self._db.executemany("DELETE FROM events WHERE record_path = ?", [(g,) for g in gone])
            self._db.execute("INSERT OR REPLACE INTO days VALUES (?, ?)", (day, mtime))
        return len(new) + len(gone)

    # -- reading --------------------------------------------------------------------------------
    def query(self, filters: Filters = Filters(), *, before: str | None = None, limit: int = 50) -> Page:
        """Newest first; ``before`` is the ``next`` cursor of the previous page."""
        where, args = filters.where()
        page_where, page_args = where, list(args)
        if before:
            t, aid = parse_cursor(before)
            page_where += " AND (captured_at, alert_id) < (?, ?)"
            page_args += [t, aid]
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE {page_where} "
            "ORDER BY captured_at DESC, alert_id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*page_args, limit + 1]).fetchall()
            total = self._db.execute(f"SELECT COUNT(*) FROM events WHERE {where}", args).fetchone()[0]
        items = [dict(zip(COLUMNS, r)) for r in rows[:limit]]
        for it in items:
            it["roi"] = it["roi"] or None
        return Page(items, total, _cursor(items[-1]) if len(rows) > limit else None)

    def plans(self, filters: Filters, before: str | None = None) -> list[str]:
        """SQLite's query plans of :meth:`query` (tests check that no query scans the table)."""
        where, args = filters.where()
        page_where, page_args = where, list(args)
        if before:
            page_where += " AND (captured_at, alert_id) < (?, ?)"
            page_args += list(parse_cursor(before))
        sqls = [
            (f"SELECT * FROM events WHERE {page_where} ORDER BY captured_at DESC, alert_id DESC LIMIT 51", page_args),
            (f"SELECT COUNT(*) FROM events WHERE {where}", args),
        ]
        with self._lock:
            return [
                " / ".join(r[3] for r in self._db.execute("EXPLAIN QUERY PLAN " + sql, a).fetchall()) for sql, a in sqls
            ]

    def get(self, alert_id: str) -> dict | None:
        with self._lock:
            r = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE alert_id = ?", (alert_id,)).fetchone()
        if r is None:
            return None
        row = dict(zip(COLUMNS, r))
        row["roi"] = row["roi"] or None
        return row

    def facets(self) -> dict[str, list]:
        """Distinct cameras, rules and ROIs (for the filter menus)."""
        with self._lock:
            cams = [r[0] for r in self._db.execute("SELECT DISTINCT camera_id FROM events ORDER BY camera_id")]
            rules = [r[0] for r in self._db.execute("SELECT DISTINCT violation FROM events ORDER BY violation")]
            rois = [r[0] for r in self._db.execute("SELECT DISTINCT roi FROM events ORDER BY roi") if r[0]]
        return {"cameras": cams, "rules": rules, "rois": rois}

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


# --------------------------------------------------------------------------------- delivery

_STATE = {"pending": "queued"}


def delivery(outbox, alert_id: str) -> dict:
    """Delivery state of one alert's messages in the cloud outbox.

    ``{"state": ..., "messages": {"telemetry"|"image"|"roi": state}}``; a state is ``queued``,
    ``sent``, ``dropped``, ``rejected`` or ``expired``. ``state`` sums them up: ``local only``
    without a cloud link, ``not queued`` when no cloud URL is configured for it.
    """
    if outbox is None:
        return {"state": "local only", "messages": {}}
    keys = {"telemetry": f"alert:{alert_id}", "image": f"alert-image:{alert_id}", "roi": f"roi:{alert_id}"}
    msgs = {}
    for name, key in keys.items():
        try:
            outcome = outbox.outcome(key)
        except sqlite3.Error:  # the outbox is closed (shutting down)
            outcome = None
        if outcome is not None:
            msgs[name] = _STATE.get(outcome, outcome)
    states = set(msgs.values())
    if not states:
        state = "not queued"
    elif "queued" in states:
        state = "queued"
    elif states == {"sent"}:
        state = "sent"
    else:
        state = sorted(states - {"sent"})[0]
    return {"state": state, "messages": msgs}
