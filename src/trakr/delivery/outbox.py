"""Durable store-and-forward outbox for everything trakr sends off the box.

Every outbound message (ThingsBoard telemetry, image upload, speaker call, config status) is
committed to a SQLite database (WAL, ``synchronous=FULL``) before anything tries to send it; a
:class:`Sender` delivers it later with retries, exponential backoff with jitter, and an
idempotency key per message. A cloud outage, a restart, ``kill -9`` or a power cut loses nothing:

* a message's file (an image) is written and fsynced under ``<outbox>/files/`` *before* its row
  is committed, so a committed row always has its file; files without a row (a crash between the
  two) are removed when the outbox is opened;
* a row is deleted only after the receiver answered 2xx, in the same transaction that records its
  key as delivered, so a restart resends at most the one message that was in flight (at-least-once;
  the key lets the receiver drop that duplicate, and ThingsBoard overwrites a telemetry value
  with the same ``ts`` anyway);
* :meth:`Outbox.put` with a key that is pending or finished recently (sent, dropped, rejected,
  expired; remembered ``keep_finished_s``) is a no-op, so re-enqueueing after a restart is safe.

Messages are grouped in *channels* (one per destination, e.g. ``tb:alert``); each channel is
delivered strictly in order (the oldest message first, later ones wait while it is retried), and
channels are independent, so a dead image store does not hold up alert telemetry. Sending is the
job of :class:`trakr.delivery.sender.Sender`; this module only stores.

Disk bound (``trakr.outbox.max_disk_mb``): rows, files and SQLite's write-ahead log are counted.
The log is checkpointed and truncated first when it would break the bound (it is also
checkpointed early in proportion to the bound, so a small outbox never grows a large log); when a
new message still does not fit, messages are dropped by *category rank*, lowest first, oldest
first within a rank:
``training`` < ``health`` < ``speaker`` < ``alert_image`` < ``roi``/``config`` < ``alert``.
A new message is itself dropped when everything left ranks higher than it. Every drop is counted
per category (persisted, reported in health telemetry) and logged.

Example:
    >>> import tempfile
    >>> box = Outbox(tempfile.mkdtemp(), max_bytes=10_000_000)
    >>> box.put("alert:1", "tb:alert", "alert", {"ts": 1, "values": {"a": 1}})
    True
    >>> box.put("alert:1", "tb:alert", "alert", {"ts": 1, "values": {"a": 1}})  # same key: no-op
    True
    >>> m = box.head("tb:alert"); box.done(m, "sent"); box.stats()["backlog"]
    0
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trakr.evidence import write_atomic
from trakr.logs import redact

log = logging.getLogger(__name__)

RANK = {"training": 0, "health": 1, "speaker": 2, "alert_image": 3, "roi": 4, "config": 4, "alert": 5}
"""Drop order when the disk bound is reached: lowest rank first (unknown categories rank 1)."""
ROW_OVERHEAD = 512
"""Bytes counted per row on top of its payload and file (index, page slack)."""
WAL_SHARE = 4
"""The write-ahead log is checkpointed once it holds about 1/WAL_SHARE of the bound (1000 pages at most)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    category TEXT NOT NULL,
    rank INTEGER NOT NULL,
    payload TEXT NOT NULL,
    file TEXT,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_channel ON messages (channel, id);
CREATE INDEX IF NOT EXISTS messages_rank ON messages (rank, id);
CREATE TABLE IF NOT EXISTS finished (key TEXT PRIMARY KEY, at REAL NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class Message:
    """One pending message as stored."""

    id: int
    key: str
    channel: str
    category: str
    payload: dict
    file: Path | None
    size: int
    created: float
    attempts: int

    def read_file(self) -> bytes | None:
        return self.file.read_bytes() if self.file is not None else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """The SQLite outbox (thread-safe; one per process and directory)."""

    def __init__(self, directory: str | Path, max_bytes: int = 2 << 30, keep_finished_s: float = 4 * 86400):
        self.dir = Path(directory)
        self.files = self.dir / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.dir / "outbox.db", check_same_thread=False, isolation_level=None, timeout=30)
        self._wal = self.dir / "outbox.db-wal"
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        share = self.max_bytes // WAL_SHARE
        self._db.execute(f"PRAGMA wal_autocheckpoint={max(1, min(1000, share // page))}")
        self._db.execute(f"PRAGMA journal_size_limit={max(page, share)}")
        self._db.executescript(_SCHEMA)
        self.listeners: list[Callable[[str, str], None]] = []
        """Called with ``(channel, category)`` after each new message: wakes the sender."""
        self._last_drop_log: dict[str, float] = {}
        self._pending_unlinks: list[str] = []
        self._closed: dict | None = None
        with self._lock:
            self._db.execute("DELETE FROM finished WHERE at < ?", (time.time() - keep_finished_s,))
            self._sweep_orphans()
            self.used: int = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0]
            self._checkpoint()

    # -- housekeeping -------------------------------------------------------------------------
    def _sweep_orphans(self) -> None:
        """Remove files that no row references (a crash between file write and row commit)."""
        known = {r[0] for r in self._db.execute("SELECT file FROM messages WHERE file IS NOT NULL")}
        removed = 0
        for p in self.files.iterdir():
            if p.name not in known:
                p.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("outbox: removed %d orphan file(s)", removed)

    def close(self) -> None:
        with self._lock:
            if self._closed is not None:
                return
            self._checkpoint()
            self._closed = self.stats()  # what stats() answers from now on (metrics scrapes at exit)
            self._db.close()

    def wal_bytes(self) -> int:
        """Current size of SQLite's write-ahead log file."""
        try:
            return self._wal.stat().st_size
        except OSError:
            return 0

    def _keep_bound(self) -> None:
        """After a commit: empty the write-ahead log if it took the outbox over its bound."""
        if self.used + self.wal_bytes() > self.max_bytes:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it (outside a transaction)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warning("outbox: checkpoint failed: %s", e)

    def _count(self, name: str, n: int = 1) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    # -- writing ------------------------------------------------------------------------------
    def _store_file(self, src: Path | None, data: bytes | None, name: str) -> tuple[str, int]:
        """Place the file under files/ durably; returns (stored name, size)."""
        stored = f"{uuid.uuid4().hex}_{name}"
        dest = self.files / stored
        if src is not None:
            try:
                os.link(src, dest)  # the alert/training image is already fsynced: share its inode
            except OSError:
                tmp = dest.with_name("." + stored + ".tmp")
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, dest)
        else:
            write_atomic(dest, data or b"")
        _fsync_dir(self.files)
        return stored, dest.stat().st_size

    def put(
        self,
        key: str,
        channel: str,
        category: str,
        payload: dict,
        *,
        file: str | Path | None = None,
        data: bytes | None = None,
        filename: str = "file.bin",
    ) -> bool:
        """Commit a message; ``file`` (a path, linked or copied) or ``data`` is its attachment.

        Returns ``True`` when the message is stored (or already pending / delivered under ``key``),
        ``False`` when the disk bound made it drop (counted).
        """
        rank = RANK.get(category, 1)
        body = json.dumps(payload, separators=(",", ":"))
        with self._lock:
            if self._known(key):
                return True
        stored, fsize = None, 0
        if file is not None or data is not None:
            src = Path(file) if file is not None else None
            if src is not None and not src.exists():
                log.warning("outbox: attachment %s of %s is missing; sending without it", src, key)
            else:
                stored, fsize = self._store_file(src, data, Path(filename if src is None else src.name).name)
        size = len(body) + fsize + ROW_OVERHEAD
        with self._lock:
            if self.used + self.wal_bytes() + size > self.max_bytes:
                self._checkpoint()  # the log counts against the bound: empty it before dropping anything
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if self._known(key):
                    self._db.execute("ROLLBACK")
                    self._unlink(stored)
                    return True
                if not self._make_room(size, rank, category):
                    self._count(f"dropped.{category}")
                    self._finish(key, "dropped")
                    self._db.execute("COMMIT")
                    self._unlink(stored)
                    self._log_drop(category)
                    return False
                self._db.execute(
                    "INSERT INTO messages (key, channel, category, rank, payload, file, size, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, channel, category, rank, body, stored, size, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._unlink(stored)
                raise
            self.used += size
            for dropped in self._pending_unlinks:
                self._unlink(dropped)
            self._pending_unlinks = []
            self._keep_bound()
        for fn in self.listeners:
            fn(channel, category)
        return True

    def _known(self, key: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM messages WHERE key = ? UNION ALL SELECT 1 FROM finished WHERE key = ? LIMIT 1",
                (key, key),
            ).fetchone()
            is not None
        )

    def _make_room(self, size: int, rank: int, category: str) -> bool:
        """Inside a transaction: drop lower/equal-rank messages until ``size`` fits."""
        self._pending_unlinks = []
        used = self.used + self.wal_bytes()
        if used + size <= self.max_bytes:
            return True
        droppable = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM messages WHERE rank <= ?", (rank,)).fetchone()[
            0
        ]
        if used - droppable + size > self.max_bytes:
            return False  # would not fit even after dropping everything it outranks: drop it
        freed = 0
        while used - freed + size > self.max_bytes:
            row = self._db.execute(
                "SELECT id, category, rank, file, size, key FROM messages ORDER BY rank, id LIMIT 1"
            ).fetchone()
            if row is None or row[2] > rank:  # cannot happen after the check above
                break
            self._db.execute("DELETE FROM messages WHERE id = ?", (row[0],))
            self._count(f"dropped.{row[1]}")
            self._finish(row[5], "dropped")
            self._log_drop(row[1])
            freed += row[4]
            if row[3]:
                self._pending_unlinks.append(row[3])
        self.used -= freed
        return True

    def _finish(self, key: str, outcome: str) -> None:
        """Remember a finished key (so a re-enqueue after restart is a no-op)."""
        self._db.execute(
            "INSERT OR REPLACE INTO finished (key, at, outcome) VALUES (?, ?, ?)", (key, time.time(), outcome)
        )

    def _log_drop(self, category: str) -> None:
        now = time.monotonic()
        if now - self._last_drop_log.get(category, -1e9) > 10:
            self._last_drop_log[category] = now
            log.warning(
                "outbox full (%.1f MB bound): dropping %s messages (oldest first)", self.max_bytes / 1e6, category
            )

    def _unlink(self, stored: str | None) -> None:
        if stored:
            (self.files / stored).unlink(missing_ok=True)

    # -- reading / completing -----------------------------------------------------------------
    def _row(self, r: tuple) -> Message:
        return Message(
            id=r[0],
            key=r[1],
            channel=r[2],
            category=r[3],
            payload=json.loads(r[4]),
            file=(self.files / r[5]) if r[5] else None,
            size=r[6],
            created=r[7],
            attempts=r[8],
        )

    def channels(self) -> dict[str, str]:
        """Channels that have pending messages, each with the category of its oldest message."""
        with self._lock:
            rows = self._db.execute("SELECT channel, MIN(id), category FROM messages GROUP BY channel").fetchall()
        return {r[0]: r[2] for r in rows}

    def head(self, channel: str) -> Message | None:
        """The oldest pending message of ``channel``. A row that cannot be decoded (a damaged
        database) is removed as ``rejected`` rather than blocking its channel for ever."""
        while True:
            with self._lock:
                r = self._db.execute(
                    "SELECT id, key, channel, category, payload, file, size, created, attempts "
                    "FROM messages WHERE channel = ? ORDER BY id LIMIT 1",
                    (channel,),
                ).fetchone()
            if r is None:
                return None
            try:
                return self._row(r)
            except ValueError as e:
                bad = Message(r[0], r[1], r[2], r[3], {}, (self.files / r[5]) if r[5] else None, r[6], r[7], r[8])
                self.done(bad, "rejected", f"unreadable row: {e}")

    def pending(self, channel: str | None = None) -> list[Message]:
        with self._lock:
            q = "SELECT id, key, channel, category, payload, file, size, created, attempts FROM messages"
            rows = self._db.execute(
                q + (" WHERE channel = ?" if channel else "") + " ORDER BY id", (channel,) if channel else ()
            ).fetchall()
        return [self._row(r) for r in rows]

    def done(self, msg: Message, outcome: str = "sent", detail: str = "") -> None:
        """Remove a message: ``sent`` (remembered as delivered), ``rejected`` or ``expired``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("DELETE FROM messages WHERE id = ?", (msg.id,))
                if cur.rowcount:
                    self.used -= msg.size
                    self._count(f"{outcome}.{msg.category}")
                self._finish(msg.key, outcome)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._keep_bound()
        if msg.file is not None:
            msg.file.unlink(missing_ok=True)
        if outcome != "sent":
            log.warning("outbox: %s %s (%s): %s", outcome, msg.key, msg.channel, redact(detail))

    def failed(self, msg: Message, error: str) -> None:
        """Record a failed attempt (the message stays first in its channel). Only a diagnostic:
        not fsynced, so that a long outage's retries do not each cost a disk flush."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute(
                    "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (redact(error)[:500], msg.id),
                )
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._keep_bound()

    def outcome(self, key: str) -> str | None:
        """``pending``, ``sent``, ``dropped``, ``rejected``, ``expired`` or ``None`` (unknown key)."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM messages WHERE key = ?", (key,)).fetchone():
                return "pending"
            r = self._db.execute("SELECT outcome FROM finished WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    def stats(self) -> dict:
        """``backlog`` (messages), ``backlog_by_category``, ``bytes`` (rows, files and the
        write-ahead log: what the bound counts), ``wal_bytes``, ``max_bytes``, ``oldest_age_s`` and
        the persisted counters (``dropped.<category>``, ``sent.<category>``, ...)."""
        with self._lock:
            if self._closed is not None:
                return dict(self._closed)
            by_cat = dict(self._db.execute("SELECT category, COUNT(*) FROM messages GROUP BY category"))
            oldest = self._db.execute("SELECT MIN(created) FROM messages").fetchone()[0]
            counters = dict(self._db.execute("SELECT name, value FROM counters"))
        wal = self.wal_bytes()
        return {
            "backlog": sum(by_cat.values()),
            "backlog_by_category": by_cat,
            "bytes": self.used + wal,
            "wal_bytes": wal,
            "max_bytes": self.max_bytes,
            "oldest_age_s": (time.time() - oldest) if oldest else 0.0,
            **counters,
        }
