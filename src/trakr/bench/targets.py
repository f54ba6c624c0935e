"""Where one trakr run stands: ratios to the references, and the performance targets.

Targets (from the issues):

* throughput: analysed fps >= 0.9 x the raw model's fps, judged only when the run was saturated
  (else the cameras, not trakr, set the rate);
* latency: p99 capture→result < 2 x (batch deadline + one batch of the model);
* memory: RSS slope < 1 MB/min after warm-up (meaningful on runs of several minutes).

Example:
    >>> lat = latency_target(p99_ms=150.0, deadline_ms=50.0, batch_ms=20.0, p50_slope=None)
    >>> lat.bound_ms, lat.met, rss_target(0.2).met, rss_target(None).met
    (140.0, False, True, None)
"""

from __future__ import annotations

from trakr.bench.figures import ratio
from trakr.bench.results import (
    LatencyTarget,
    NaiveResult,
    Ratios,
    RawResult,
    RssTarget,
    Targets,
    ThroughputTarget,
    TrakrResult,
)

THROUGHPUT_SHARE = 0.9
RSS_SLOPE_MB_PER_MIN = 1.0


def latency_target(p99_ms: float, deadline_ms: float, batch_ms: float, p50_slope: float | None) -> LatencyTarget:
    bound = 2 * (deadline_ms + batch_ms)
    return LatencyTarget(
        p99_ms=p99_ms,
        bound_ms=round(bound, 1),
        target="p99 < 2 x (deadline + one batch inference)",
        met=p99_ms < bound,
        p50_slope_ms_per_min=p50_slope,
    )


def rss_target(slope: float | None) -> RssTarget:
    return RssTarget(
        slope_mb_per_min=slope,
        target=f"< {RSS_SLOPE_MB_PER_MIN:g} MB/min after warm-up",
        met=None if slope is None else abs(slope) < RSS_SLOPE_MB_PER_MIN,
        note="meaningful on runs of several minutes (--duration 600)",
    )


def evaluate_targets(t: TrakrResult, raw: RawResult | None) -> Targets:
    """The targets for one trakr run; ``raw`` gives the model's own batch time when measured."""
    out = Targets(rss=rss_target(t.rss_slope_mb_per_min))
    batch_ms = t.model_ms_per_batch
    if raw is not None:
        r = ratio(t.analysed_fps, raw.fps)
        out.throughput = ThroughputTarget(
            analysed_fps=t.analysed_fps,
            raw_fps=raw.fps,
            ratio=r,
            saturated=t.saturated,
            target=f">= {THROUGHPUT_SHARE:.2f} of raw when saturated",
            met=(r >= THROUGHPUT_SHARE) if (t.saturated and r is not None) else None,
        )
        batch_ms = raw.batch_ms.get(t.batch_size, batch_ms)
    p99 = t.latency_ms.p99
    if batch_ms is not None and p99 is not None:
        out.latency = latency_target(p99, t.deadline_ms, batch_ms, t.latency_p50_slope_ms_per_min)
    return out


def ratios(t: TrakrResult, raw: RawResult | None, naive: NaiveResult | None) -> Ratios:
    """trakr's analysed fps over the raw model's (best batch, and trakr's own batch size) and over
    the naive loop's."""
    out = Ratios()
    if raw is not None:
        out.trakr_over_raw = ratio(t.analysed_fps, raw.fps)
        out.trakr_over_raw_same_batch = ratio(t.analysed_fps, raw.batch_fps.get(t.batch_size))
    if naive is not None:
        out.trakr_over_naive = ratio(t.analysed_fps, naive.analysed_fps)
    return out
