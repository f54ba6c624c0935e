"""The durable outbox: order, idempotency, disk bound policy (write-ahead log included), crash
leftovers, dead rows."""

from __future__ import annotations

from trakr.delivery.outbox import Outbox


def _alert(box: Outbox, i: int, pad: int = 0) -> bool:
    return box.put(f"alert:{i}", "tb:alert", "alert", {"ts": i, "values": {"n": i, "pad": "x" * pad}})


def test_put_is_idempotent_and_ordered(tmp_path):
    box = Outbox(tmp_path)
    for i in range(5):
        assert _alert(box, i)
    assert _alert(box, 3)  # same key: no second row
    assert [m.key for m in box.pending("tb:alert")] == [f"alert:{i}" for i in range(5)]
    head = box.head("tb:alert")
    box.done(head, "sent")
    assert _alert(box, 0)  # delivered key: still a no-op
    assert box.outcome("alert:0") == "sent" and box.outcome("alert:1") == "pending"
    assert box.stats()["backlog"] == 4 and box.stats()["sent.alert"] == 1
    box.close()
    assert box.stats()["backlog"] == 4  # still answers after close (last values)
    reopened = Outbox(tmp_path)  # survives a reopen, including the finished keys
    assert [m.key for m in reopened.pending()][0] == "alert:1"
    assert _alert(reopened, 0) and reopened.stats()["backlog"] == 4


def test_file_is_written_before_row_and_orphans_are_swept(tmp_path):
    box = Outbox(tmp_path / "ob")
    src = tmp_path / "img.jpg"
    src.write_bytes(b"\xff\xd8jpeg")
    assert box.put("alert-image:1", "up:alert", "alert_image", {"filename": "img.jpg"}, file=src)
    m = box.head("up:alert")
    assert m.read_file() == b"\xff\xd8jpeg" and m.size > 6
    (box.files / "deadbeef_orphan.jpg").write_bytes(b"left by a crash")  # file without a row
    (box.files / ".x.tmp").write_bytes(b"half written")
    box.close()
    box = Outbox(tmp_path / "ob")
    assert sorted(p.name for p in box.files.iterdir()) == [m.file.name]
    box.done(box.head("up:alert"), "sent")
    assert list(box.files.iterdir()) == [] and src.exists()  # the alert store's own file stays


def test_disk_bound_drops_training_first_then_oldest_alerts(tmp_path):
    box = Outbox(tmp_path, max_bytes=20_000)
    blob = b"t" * 3000
    for i in range(4):  # 4 x ~3.5 kB of training images
        assert box.put(f"train:{i}", "up:train", "training", {"i": i}, data=blob, filename=f"{i}.jpg")
    for i in range(8):  # 8 x ~1.5 kB of alerts: training must go first
        assert _alert(box, i, pad=1000)
    st = box.stats()
    assert st["bytes"] <= 20_000
    assert st.get("dropped.training", 0) >= 1 and "dropped.alert" not in st
    dropped = [f"train:{i}" for i in range(4) if box.outcome(f"train:{i}") == "dropped"]
    assert dropped == [f"train:{i}" for i in range(len(dropped))]  # oldest first
    # a new training message that does not fit while only alerts remain is itself dropped
    for i in range(8, 14):
        _alert(box, i, pad=1000)
    assert box.stats()["backlog_by_category"].get("training", 0) == 0
    assert not box.put("train:new", "up:train", "training", {}, data=b"t" * 5000, filename="n.jpg")
    assert box.outcome("train:new") == "dropped"
    # alerts keep arriving: the oldest alerts make room, newest are kept, every drop counted
    for i in range(14, 40):
        assert _alert(box, i, pad=1000)
    st = box.stats()
    assert st["bytes"] <= 20_000 and st["dropped.alert"] > 0
    assert box.outcome("alert:39") == "pending" and box.outcome("alert:0") == "dropped"
    assert st["dropped.training"] == 5
    assert list(box.files.iterdir()) == []  # files of dropped messages are gone
    assert not box.put("huge", "tb:alert", "alert", {"x": "y" * 30_000})  # larger than the bound


def test_disk_bound_counts_the_write_ahead_log(tmp_path):
    """Issue 'Months unattended' item 5b: SQLite's -wal file grew to megabytes beside a bound of
    kilobytes, uncounted. Now it is counted, and emptied before any message is dropped for it."""
    bound = 100_000
    box = Outbox(tmp_path, max_bytes=bound)
    wal = tmp_path / "outbox.db-wal"
    largest = 0
    for i in range(150):  # a day of traffic through a small outbox: queued, then sent
        assert _alert(box, i, pad=500)
        box.done(box.head("tb:alert"), "sent")
        largest = max(largest, wal.stat().st_size)
        st = box.stats()
        assert st["wal_bytes"] == wal.stat().st_size and st["bytes"] >= st["wal_bytes"]
        assert st["bytes"] <= bound, (i, st)
    assert largest <= bound
    assert not any(k.startswith("dropped.") for k in box.stats())  # room came from the log, not from alerts
    for i in range(150, 250):  # a backlog beyond the bound: the log still fits beside it
        _alert(box, i, pad=1000)
    st = box.stats()
    assert wal.stat().st_size + sum(m.size for m in box.pending()) <= bound
    assert st["dropped.alert"] > 0 and box.outcome("alert:249") == "pending"


def test_an_unreadable_row_is_rejected_instead_of_blocking_its_channel(tmp_path):
    box = Outbox(tmp_path)
    for i in range(3):
        _alert(box, i)
    with box._lock:  # a damaged database: one payload is no longer JSON
        box._db.execute("UPDATE messages SET payload = '{broken' WHERE key = 'alert:0'")
    assert box.head("tb:alert").key == "alert:1"
    assert box.outcome("alert:0") == "rejected" and box.stats()["rejected.alert"] == 1
