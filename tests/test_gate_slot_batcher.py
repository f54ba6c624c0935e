"""Latest-frame slot, change gate (also on the real clip) and the cross-camera batcher."""

import threading
import time

import cv2
import numpy as np

from trakr.capture.batcher import Batcher
from trakr.capture.gate import ChangeGate
from trakr.capture.slot import LatestFrameSlot
from trakr.types import Frame


def _frame(cam, seq, t=None, img=None):
    return Frame(cam, np.zeros((48, 64, 3), np.uint8) if img is None else img, time.time() if t is None else t, seq)


def test_slot_newest_wins_and_counts_drops():
    slot = LatestFrameSlot(1)
    for i in range(5):
        slot.put(_frame(1, i))
    assert slot.take().seq == 4
    assert slot.dropped == 4 and slot.take() is None
    slot.put(_frame(1, 5))
    assert slot.take().seq == 5 and slot.dropped == 4


def test_gate_static_scene_passes_only_keyframes():
    gate = ChangeGate(keyframe_s=2.0)
    img = np.full((120, 160, 3), 100, np.uint8)
    passed = [gate.check(_frame(0, i, t=i * 0.1, img=img)) for i in range(50)]  # 5 s at 10 fps
    assert passed[0] and sum(passed) == 3  # first frame, then t=2.0 and t=4.0
    assert gate.stats[0].keyframes == 2


def test_gate_passes_a_person_sized_change_and_keeps_cameras_apart():
    gate = ChangeGate()
    bg = np.full((576, 768, 3), 90, np.uint8)
    person = bg.copy()
    cv2.rectangle(person, (300, 180), (380, 380), (20, 20, 20), -1)  # a near person, ~3.6 % of the frame
    assert gate.check(_frame(0, 0, 0.0, bg)) and gate.check(_frame(1, 0, 0.0, bg))
    assert not gate.check(_frame(0, 1, 0.1, bg.copy()))
    assert gate.check(_frame(0, 2, 0.2, person))
    assert not gate.check(_frame(1, 1, 0.2, bg.copy()))  # camera 1 still unchanged


def test_gate_on_real_clip_skips_a_frozen_camera_but_not_a_live_one(sample_clip):
    cap = cv2.VideoCapture(str(sample_clip))
    frames = [cap.read()[1] for _ in range(100)]
    live, frozen = ChangeGate(), ChangeGate()
    live_pass = sum(live.check(_frame(0, i, i / 10, f)) for i, f in enumerate(frames))
    frozen_pass = sum(frozen.check(_frame(0, i, i / 10, frames[0].copy())) for i in range(100))
    assert frozen_pass == 2  # first frame + one keyframe in 10 s at the 5 s default
    assert live_pass > 30  # people walking: most frames analysed


def test_batcher_full_batch_is_fair_across_cameras():
    b = Batcher(batch_size=2, deadline_s=1.0, gate=ChangeGate(enabled=False))
    slots = [b.add_camera(i) for i in range(5)]
    seen = []
    for rnd in range(5):
        for i, s in enumerate(slots):
            s.put(_frame(i, rnd))
        got = b.next_batch(timeout=1)
        assert len(got) == 2
        seen += [f.camera_id for f in got]
    assert sorted(set(seen)) == [0, 1, 2, 3, 4]  # every camera served, none starved
    assert max(seen.count(c) for c in range(5)) - min(seen.count(c) for c in range(5)) <= 1


def test_batcher_sends_partial_batch_on_deadline_and_times_out_empty():
    b = Batcher(batch_size=8, deadline_s=0.05, gate=ChangeGate(enabled=False))
    s = b.add_camera(0)
    s.put(_frame(0, 0))
    t0 = time.monotonic()
    got = b.next_batch(timeout=2)
    assert [f.seq for f in got] == [0] and time.monotonic() - t0 < 1.0
    assert b.next_batch(timeout=0.1) is None


def test_batcher_wakes_on_put_and_drops_gated_frames():
    gate = ChangeGate(keyframe_s=100)
    b = Batcher(batch_size=1, deadline_s=0.0, gate=gate)
    s = b.add_camera(0)
    img = np.full((48, 64, 3), 50, np.uint8)
    s.put(_frame(0, 0, 0.0, img))
    assert b.next_batch(timeout=1)[0].seq == 0
    s.put(_frame(0, 1, 0.1, img.copy()))  # unchanged: gated out
    assert b.next_batch(timeout=0.2) is None
    threading.Timer(0.1, lambda: s.put(_frame(0, 2, 0.2, 255 - img))).start()
    assert b.next_batch(timeout=2)[0].seq == 2
    assert gate.stats[0].seen == 3 and gate.stats[0].passed == 2


def test_batcher_close_releases_waiters():
    b = Batcher(batch_size=4, deadline_s=1.0, gate=ChangeGate(enabled=False))
    b.add_camera(0)
    threading.Timer(0.1, b.close).start()
    assert b.next_batch() is None
