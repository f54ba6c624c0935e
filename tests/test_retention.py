"""The output directory stays within its disk bound and retention, cheapest files first."""

import os
import time

from helpers import wait_until

from trakr.evidence import bytes_written, write_atomic
from trakr.retention import RetentionJanitor, prune


def _file(root, rel, size, age_days=0.0):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\0" * size)
    t = time.time() - age_days * 86400
    os.utime(p, (t, t))
    return p


def test_over_the_bound_inputs_go_before_detections_training_and_alerts(tmp_path):
    alert = _file(tmp_path, "alerts/2026-11-01/a.jpg", 300_000, age_days=20)  # the oldest file of all
    alert_rec = _file(tmp_path, "alerts/2026-11-01/a.json", 1_000, age_days=20)
    train = _file(tmp_path, "training/2026-11-02/t.jpg", 300_000, age_days=5)
    classes = _file(tmp_path, "training/classes.txt", 100, age_days=30)
    det = _file(tmp_path, "detections/cam1/d.jpg", 300_000, age_days=1)
    inp_old = _file(tmp_path, "inputs/cam1/old.jpg", 300_000, age_days=2)
    inp_new = _file(tmp_path, "inputs/cam1/new.jpg", 300_000, age_days=0)
    r = prune(tmp_path, max_disk_mb=0.85, retention_days=90)
    # 1.5 MB -> under 0.85 MB: both inputs go (oldest first), then the detection; training and alerts stay
    assert not inp_old.exists() and not inp_new.exists() and not det.exists()
    assert alert.exists() and alert_rec.exists() and train.exists() and classes.exists()
    assert r.deleted == 3 and r.kept_bytes <= 0.85e6
    assert not (tmp_path / "inputs" / "cam1").exists()  # empty folders removed


def test_files_past_retention_are_deleted_even_under_the_bound(tmp_path):
    old = _file(tmp_path, "alerts/2026-01-01/a.json", 100, age_days=100)
    new = _file(tmp_path, "alerts/2026-11-20/b.json", 100, age_days=3)
    prune(tmp_path, max_disk_mb=1000, retention_days=90)
    assert not old.exists() and new.exists()


def _size(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_burst_of_images_is_pruned_long_before_the_periodic_pass(tmp_path):
    janitor = RetentionJanitor(
        tmp_path, max_disk_mb=3.0, retention_days=30, interval_s=3600, written=bytes_written, poll_s=0.05
    )
    janitor.start()
    try:
        for i in range(60):  # 60 x 200 kB = 12 MB written against a 3 MB bound
            write_atomic(tmp_path / "inputs" / "cam1" / f"{i:03d}.jpg", b"\xff" * 200_000)
            if i % 10 == 9:
                assert wait_until(lambda: _size(tmp_path) <= 3.5e6, 10), _size(tmp_path)
        assert wait_until(lambda: _size(tmp_path) <= 3e6, 10)
        kept = sorted(p.name for p in (tmp_path / "inputs" / "cam1").iterdir())
        assert kept[-1] == "059.jpg" and len(kept) <= 15  # the newest are kept, the oldest went first
    finally:
        janitor.stop()
