"""Alert policy as a table: pause per camera, stationary objects, moved objects, switches."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from trakr.rules.policy import AlertPolicy
from trakr.types import Violation

VAN = [100.0, 100.0, 300.0, 250.0]
VAN_NUDGED = [104.0, 102.0, 304.0, 252.0]  # IoU ~0.95 with VAN: the same parked van
VAN_MOVED = [400.0, 100.0, 600.0, 250.0]  # IoU 0 with VAN
PERSON = [10.0, 10.0, 40.0, 90.0]


def v(*boxes, cam=1, roi=None, what="car") -> Violation:
    return Violation(cam, roi, what, sv.Detections(xyxy=np.array(boxes, dtype=float).reshape(-1, 4)))


@pytest.mark.parametrize(
    "events, expected",
    [
        # (time, violation) -> allowed?
        ([(0, v(VAN)), (5, v(VAN)), (11, v(VAN))], [True, False, False]),  # pause, then stationary
        ([(0, v(VAN)), (11, v(VAN_NUDGED))], [True, False]),  # a nudged box is still the same object
        ([(0, v(VAN)), (11, v(VAN_MOVED))], [True, True]),  # it moved: a new alert after the pause
        ([(0, v(VAN)), (11, v(VAN, PERSON))], [True, True]),  # something new joined it
        ([(0, v(VAN)), (601, v(VAN))], [True, True]),  # stationary re-alert after stationary_realert_s
        ([(0, v(VAN)), (1, v(VAN, roi="dock"))], [True, True]),  # another ROI is another key
        ([(0, v(VAN)), (1, v(VAN, cam=2))], [True, True]),  # another camera too
        ([(0, v(VAN)), (1, v(VAN, what="truck"))], [True, True]),  # and another violation
        ([(5, v(VAN)), (1, v(VAN_MOVED))], [True, False]),  # capture time going back is within the pause
    ],
)
def test_policy_table(events, expected):
    pol = AlertPolicy(pause_s={1: 10.0, 2: 10.0}, stationary_realert_s=600.0)
    assert [pol.allow(viol, t) for t, viol in events] == expected


def test_disabled_camera_never_alerts_and_suppressions_are_counted():
    pol = AlertPolicy(pause_s={1: 10.0}, enabled={1: False, 2: True})
    assert not pol.allow(v(VAN), 0.0)
    assert pol.allow(v(VAN, cam=2), 0.0) and not pol.allow(v(VAN, cam=2), 1.0)
    assert pol.suppressed == 1


def test_forget_a_camera_starts_it_over():
    pol = AlertPolicy(pause_s={1: 10.0})
    assert pol.allow(v(VAN), 0.0) and not pol.allow(v(VAN), 1.0)
    pol.forget(1)
    assert pol.allow(v(VAN), 2.0)
