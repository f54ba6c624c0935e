"""Small numeric helpers every bench module uses: percentiles, slopes, rounding.

Example:
    >>> p = percentiles(list(range(101)))
    >>> p["p50"], p["p99"]
    (50.0, 99.0)
    >>> round(slope_per_min([0, 1, 2, 3], [0, 1, 2, 3]), 6), slope_per_min([0, 1], [0, 1])
    (60.0, None)
    >>> to_ms(0.01234), rnd(2 / 3, 3), rnd(None)
    (12.3, 0.667, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np


def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values``; ``None`` each when there are none."""
    if not len(values):
        return {f"p{q}": None for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def slope_per_min(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per minute; ``None`` with < 3 points."""
    t, y = np.asarray(ts, float), np.asarray(ys, float)
    ok = np.isfinite(y)
    if ok.sum() < 3 or np.ptp(t[ok]) <= 0:
        return None
    return float(np.polyfit(t[ok], y[ok], 1)[0] * 60.0)


def to_ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to 0.1."""
    return None if seconds is None else round(seconds * 1000.0, 1)


def rnd(x: float | None, nd: int = 2) -> float | None:
    """``round(x, nd)``, passing ``None`` through."""
    return None if x is None else round(float(x), nd)


def ratio(num: float | None, den: float | None, nd: int = 3) -> float | None:
    """``num / den`` rounded, ``None`` when either is missing or ``den`` is 0.

    >>> ratio(1, 4), ratio(1, 0), ratio(None, 2)
    (0.25, None, None)
    """
    if num is None or not den:
        return None
    return round(num / den, nd)


def json_without_none(obj: Any, optional: Sequence[str] = ()) -> dict[str, Any]:
    """``asdict(obj)`` (a dataclass) without the ``optional`` keys whose value is ``None``."""
    d = asdict(obj)
    for k in optional:
        if d.get(k) is None:
            d.pop(k, None)
    return d
