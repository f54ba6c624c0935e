"""Latest-frame slot, change gate (also on the real clip's luma planes) and the cross-camera batcher."""

import threading
import time

import av
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
    luma = np.full((120, 160), 100, np.uint8)
    reasons = [gate.decide(0, luma, i * 0.1) for i in range(50)]  # 5 s at 10 fps
    assert [i for i, r in enumerate(reasons) if r != "skipped"] == [0, 20, 40]  # first frame, t=2.0, t=4.0
    st = gate.stats[0]
    assert st.reasons == {"keyframe": 3, "skipped": 47} and st.keyframes == 3
    assert (st.seen, st.passed) == (50, 3)


def test_gate_passes_a_person_sized_change_and_keeps_cameras_apart():
    gate = ChangeGate()
    bg = np.full((576, 768), 90, np.uint8)
    person = bg.copy()
    cv2.rectangle(person, (300, 180), (380, 380), 20, -1)  # a near person, ~3.6 % of the frame
    assert gate.decide(0, bg, 0.0) == "keyframe" and gate.decide(1, bg, 0.0) == "keyframe"
    assert gate.decide(0, bg.copy(), 0.1) == "skipped"
    assert gate.decide(0, person, 0.2) == "motion"
    assert gate.decide(1, bg.copy(), 0.2) == "skipped"  # camera 1 still unchanged
    assert gate.stats[0].reasons == {"keyframe": 1, "skipped": 1, "motion": 1}


def test_gate_works_on_strided_luma_planes():
    # decoders pad rows (line size > width): the gate must read the view, not the padding
    padded = np.zeros((576, 800), np.uint8)
    padded[:, 768:] = 255  # padding garbage that changes between frames
    view = padded[:, :768]
    gate = ChangeGate()
    assert gate.decide(0, view, 0.0) == "keyframe"
    padded[:, 768:] = 0
    assert gate.decide(0, view, 0.1) == "skipped"


def test_gate_tracked_hook_keeps_a_minimum_rate_then_lets_go():
    gate = ChangeGate(keyframe_s=100, min_rate=5.0)
    still = np.full((90, 160), 60, np.uint8)
    gate.decide(3, still, 0.0)
    gate.force_until(3, until=2.0)  # e.g. a tracked person inside a zone with a rule
    reasons = [gate.decide(3, still, 0.1 * i) for i in range(1, 41)]  # 4 s at 10 fps
    passed_at = [round(0.1 * (i + 1), 1) for i, r in enumerate(reasons) if r != "skipped"]
    assert passed_at == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]  # 5 fps while forced, none after 2.0
    assert gate.stats[3].reasons["tracked"] == 9
    gate.min_rate = 1.0
    gate.force_until(3, until=10.0)
    assert [gate.decide(3, still, t) for t in (4.5, 5.0, 5.6)] == ["tracked", "skipped", "tracked"]


def test_gate_off_passes_everything_and_says_so():
    gate = ChangeGate(enabled=False)
    luma = np.zeros((10, 10), np.uint8)
    assert {gate.decide(0, luma, t) for t in range(5)} == {"ungated"}
    assert gate.stats[0].passed == 5


def test_gate_counters_are_exact_under_concurrent_readers():
    gate = ChangeGate(keyframe_s=0.5)
    luma = np.zeros((24, 32), np.uint8)

    def reader(cam):
        for i in range(400):
            gate.decide(cam % 2, luma, i * 0.01)

    threads = [threading.Thread(target=reader, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = gate.stats
    assert stats[0].seen == stats[1].seen == 800
    assert all(sum(s.reasons.values()) == s.seen for s in stats.values())


def _clip(path, n):
    """The first ``n`` frames of a file as a reader sees them: Y plane (video range) and BGR."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            y = f.planes[0]
            luma = np.frombuffer(y, np.uint8).reshape(-1, y.line_size)[: y.height, : y.width]
            out.append((luma.copy(), f.to_ndarray(format="bgr24")))
            if len(out) == n:
                break
    return out


def test_gate_on_real_clip_skips_a_frozen_camera_but_not_a_live_one(sample_clip):
    frames = _clip(sample_clip, 100)
    live, frozen = ChangeGate(), ChangeGate()
    live_pass = sum(live.decide(0, y, i / 10, limited_range=True) != "skipped" for i, (y, _) in enumerate(frames))
    frozen_pass = sum(frozen.decide(0, frames[0][0], i / 10, limited_range=True) != "skipped" for i in range(100))
    assert frozen_pass == 2  # first frame + one keyframe in 10 s at the 5 s default
    assert live_pass > 30  # people walking: most frames analysed
    assert live.stats[0].reasons["motion"] == live_pass - live.stats[0].keyframes


def test_gate_on_luma_decides_like_the_measured_gate_on_bgr(sample_clip):
    # docs/gate.md measured the defaults on grey from BGR; the reader gates the raw (video-range) Y
    # plane instead, with the threshold scaled to its range: same decisions on the real clip
    frames = _clip(sample_clip, 300)
    gate = ChangeGate()
    on_y = [gate.small(y) for y, _ in frames]
    on_bgr = [gate.small(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)) for _, bgr in frames]
    ty, tb = gate.threshold_for(limited_range=True), gate.threshold_for(limited_range=False)
    moved_y = [gate.changed_fraction(a, b, ty) >= gate.area_threshold for a, b in zip(on_y, on_y[1:])]
    moved_bgr = [gate.changed_fraction(a, b, tb) >= gate.area_threshold for a, b in zip(on_bgr, on_bgr[1:])]
    assert sum(a == b for a, b in zip(moved_y, moved_bgr)) >= 0.95 * len(moved_y)
    # and the stateful gate passes about as many frames either way
    gy, gb = ChangeGate(), ChangeGate()
    y_pass = sum(gy.decide(0, y, i / 10, limited_range=True) != "skipped" for i, (y, _) in enumerate(frames))
    bgr_pass = sum(gb.check(Frame(0, bgr, i / 10, i)) for i, (_, bgr) in enumerate(frames))
    assert abs(y_pass - bgr_pass) <= 0.1 * bgr_pass


def test_batcher_full_batch_is_fair_across_cameras():
    b = Batcher(batch_size=2, deadline_s=1.0)
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


def test_batcher_sends_as_soon_as_no_other_camera_can_add_to_it():
    b = Batcher(batch_size=8, deadline_s=60.0)  # a deadline it must never wait out
    slots = [b.add_camera(i) for i in range(4)]
    slots[1].put(_frame(1, 0))
    slots[3].put(_frame(3, 0))
    t0 = time.monotonic()
    got = b.next_batch(timeout=120)
    assert sorted(f.camera_id for f in got) == [1, 3]  # cameras 0 and 2 have nothing: no waiting for them
    assert time.monotonic() - t0 < 30  # hang guard only: waiting out the 60 s deadline would fail it
    assert b.next_batch(timeout=0.1) is None


def test_batcher_wakes_on_put_and_times_out_empty():
    b = Batcher(batch_size=1, deadline_s=0.0)
    s = b.add_camera(0)
    assert b.next_batch(timeout=0.1) is None
    threading.Timer(0.1, lambda: s.put(_frame(0, 2))).start()
    assert b.next_batch(timeout=5)[0].seq == 2


def test_batcher_forgets_a_removed_camera():
    b = Batcher(batch_size=4, deadline_s=0.0)
    s = b.add_camera(0)
    b.add_camera(1).put(_frame(1, 0))
    b.remove_camera(1)
    s.put(_frame(0, 0))
    assert [f.camera_id for f in b.next_batch(timeout=1)] == [0] and list(b.slots) == [0]


def test_batcher_close_releases_waiters():
    b = Batcher(batch_size=4, deadline_s=1.0)
    b.add_camera(0)
    threading.Timer(0.1, b.close).start()
    assert b.next_batch() is None
