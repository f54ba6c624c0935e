"""``trakr bench --plot``: latency (p50, p99), RSS and CPU over time, one line per camera count.

Example:
    >>> nan_for_none([1.0, None, 3.0])
    [1.0, nan, 3.0]
"""

from __future__ import annotations

from pathlib import Path

from trakr.bench.results import BenchResult


def nan_for_none(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def plot(result: BenchResult, path: Path) -> None:
    """Write the PNG (matplotlib, Agg backend) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for run in result.runs:
        s = run.trakr.series
        t = [x.t for x in s]
        label = f"{run.cameras} cam"
        (line,) = axes[0].plot(t, nan_for_none([x.p99_ms for x in s]), label=f"{label} p99")
        axes[0].plot(t, nan_for_none([x.p50_ms for x in s]), "--", color=line.get_color(), label=f"{label} p50")
        axes[1].plot(t, [x.rss_mb for x in s], color=line.get_color(), label=label)
        axes[2].plot(t, [x.cpu_percent for x in s], color=line.get_color(), label=label)
    axes[0].set_ylabel("capture→result latency (ms)")
    axes[1].set_ylabel("RSS (MB)")
    axes[2].set_ylabel("CPU % (of one core)")
    axes[2].set_xlabel("seconds since start")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
        if result.warmup_s:
            ax.axvline(result.warmup_s, color="grey", lw=0.8, ls=":")
    fig.suptitle("trakr bench" + ("" if result.quiet else " (NOT a quiet machine: see the JSON's load)"))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
