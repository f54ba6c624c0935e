"""The machine a bench runs on: what it is, and how busy other work kept it during a measurement.

:class:`CpuMeter` measures, between its creation and :meth:`CpuMeter.read`, the CPU of this
process, of its helpers (its child processes: RTSP server, redis-server, trakr workers, plus any
pids named), of the whole machine, and of every *other* process (a scan of all processes at both
ends). A measurement is only a figure when the others stayed *quiet*: at most
:data:`QUIET_SHARE` of the whole machine (:class:`MachineLoad`).

Example:
    >>> meter = CpuMeter()
    >>> sum(i * i for i in range(200_000)) > 0
    True
    >>> cpu = meter.read()
    >>> cpu.cores >= 1 and cpu.process_cpu_percent >= 0 and cpu.others_cpu_percent >= 0
    True
    >>> load_1m() >= 0
    True
    >>> busy = CpuShare(process_cpu_percent=150.0, helper_cpu_percent=5.0, machine_cpu_percent=190.0,
    ...                 other_cpu_percent=35.0, cores=2, others_cpu_percent=30.0)
    >>> load = MachineLoad.of(busy, before=0.5, after=1.2)
    >>> load.others_share, load.quiet
    (0.175, False)
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from trakr.bench.figures import json_without_none

QUIET_SHARE = 0.10
"""Other processes may use this share of the whole machine before a measurement is marked noisy."""


@dataclass
class OtherProcess:
    """A process that is neither trakr nor one of its helpers, and its CPU during a measurement."""

    name: str
    pid: int
    cpu_percent: float
    """Percent of one core."""


@dataclass
class CpuShare:
    """CPU during one measurement, in percent of one core (``cores`` x 100 is the whole machine)."""

    process_cpu_percent: float
    """This process (the trakr pipeline, or the naive loop, or the raw model)."""
    helper_cpu_percent: float
    """Its helpers: RTSP server, redis-server, trakr workers (its child processes)."""
    machine_cpu_percent: float
    """The whole machine (system CPU counters)."""
    other_cpu_percent: float
    """The machine minus this process and its helpers (system CPU counters)."""
    cores: int
    others_cpu_percent: float = 0.0
    """Sum of every other process's CPU time (a scan of all processes at the start and the end)."""
    busiest_others: list[OtherProcess] = field(default_factory=list)
    seconds: float = 0.0
    """How long the measurement lasted."""

    def to_json(self) -> dict[str, Any]:
        """The flat keys a measurement's JSON carries (the rest goes to :class:`MachineLoad`)."""
        return {
            "process_cpu_percent": self.process_cpu_percent,
            "helper_cpu_percent": self.helper_cpu_percent,
            "machine_cpu_percent": self.machine_cpu_percent,
            "other_cpu_percent": self.other_cpu_percent,
            "cores": self.cores,
        }


@dataclass
class MachineLoad:
    """How busy the machine was with other work during one measurement."""

    loadavg_1m_before: float
    loadavg_1m_after: float
    others_cpu_percent: float
    """CPU of other processes, percent of one core: the larger of the process scan and the system
    counters' remainder (which also sees processes that came and went during the run)."""
    others_share: float
    """``others_cpu_percent`` as a share of the whole machine (0..1)."""
    busiest_others: list[OtherProcess]
    quiet: bool
    """``others_share <= QUIET_SHARE``: figures taken now are figures."""

    @classmethod
    def of(cls, cpu: CpuShare, before: float, after: float) -> MachineLoad:
        others = max(cpu.others_cpu_percent, cpu.other_cpu_percent)
        share = others / (100.0 * max(1, cpu.cores))
        return cls(
            loadavg_1m_before=round(before, 2),
            loadavg_1m_after=round(after, 2),
            others_cpu_percent=round(others, 1),
            others_share=round(share, 3),
            busiest_others=list(cpu.busiest_others),
            quiet=share <= QUIET_SHARE,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a warning: how much, and who."""
        who = ", ".join(f"{p.name} (pid {p.pid}) {p.cpu_percent:.0f}%" for p in self.busiest_others[:3])
        return (
            f"other processes used {self.others_share:.0%} of the machine "
            f"(load average {self.loadavg_1m_before:.2f} -> {self.loadavg_1m_after:.2f})" + (f": {who}" if who else "")
        )


@dataclass
class MachineInfo:
    cpu: str
    cores: int
    memory_gb: float
    python: str
    opencv: str
    onnxruntime: str
    loadavg_start: list[float]
    loadavg_end: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        return json_without_none(self, ("loadavg_end",))


def load_1m() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _reaped_s(p: psutil.Process) -> float:
    """CPU of ``p``'s children that ended and were waited for (a finished peer or worker)."""
    t = p.cpu_times()
    return t.children_user + t.children_system


def _busy_s(s) -> float:  # noqa: ANN001 - psutil's scputimes
    return s.user + s.nice + s.system + getattr(s, "irq", 0.0) + getattr(s, "softirq", 0.0)


def _all_processes() -> dict[int, tuple[float, str, float]]:
    """``{pid: (create_time, name, cpu seconds)}`` of every process we can read."""
    out: dict[int, tuple[float, str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times", "create_time"]):
        info = p.info
        t = info.get("cpu_times")
        if t is None:
            continue
        out[p.pid] = (info.get("create_time") or 0.0, info.get("name") or "?", t.user + t.system)
    return out


class CpuMeter:
    """CPU of this process, its helpers, the machine and everything else, from now until :meth:`read`."""

    def __init__(self, helper_pids: Iterable[int] = ()):
        self.proc = psutil.Process()
        self.helpers: dict[int, psutil.Process] = {}
        for pid in {*helper_pids, *(c.pid for c in self._children())}:
            with contextlib.suppress(psutil.Error):
                self.helpers[pid] = psutil.Process(pid)
        self.t0 = time.monotonic()
        self.procs0 = _all_processes()
        self.own0 = _cpu_s(self.proc)
        self.reaped0 = _reaped_s(self.proc)
        self.helpers0 = self._helpers_s()
        self.machine0 = psutil.cpu_times()

    def _children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return self.proc.children(recursive=True)
        return []

    def _helpers_s(self) -> dict[int, float]:
        out = {}
        for pid, p in self.helpers.items():
            with contextlib.suppress(psutil.Error):
                out[pid] = _cpu_s(p)
        return out

    def read(self) -> CpuShare:
        """CPU since the meter was made, in percent of one core."""
        dt = max(1e-6, time.monotonic() - self.t0)
        machine = (_busy_s(psutil.cpu_times()) - _busy_s(self.machine0)) / dt
        own = (_cpu_s(self.proc) - self.own0) / dt
        helpers1 = self._helpers_s()
        extra_s = sum(helpers1[pid] - self.helpers0.get(pid, helpers1[pid]) for pid in helpers1)
        for child in self._children():  # started during the measurement: all of its CPU
            if child.pid not in self.helpers:
                with contextlib.suppress(psutil.Error):
                    extra_s += _cpu_s(child)
        extra_s += _reaped_s(self.proc) - self.reaped0  # children that ended (and were waited for) meanwhile
        extra = extra_s / dt
        ours = {self.proc.pid, *self.helpers, *(c.pid for c in self._children())}
        others: list[OtherProcess] = []
        for pid, (created, name, cpu1) in _all_processes().items():
            if pid in ours:
                continue
            before = self.procs0.get(pid)
            cpu0 = before[2] if before is not None and before[0] == created else 0.0  # new: all of it
            used = (cpu1 - cpu0) / dt
            if used > 0:
                others.append(OtherProcess(name, pid, round(used * 100, 1)))
        others.sort(key=lambda p: p.cpu_percent, reverse=True)
        return CpuShare(
            process_cpu_percent=round(own * 100, 1),
            helper_cpu_percent=round(extra * 100, 1),
            machine_cpu_percent=round(machine * 100, 1),
            other_cpu_percent=round(max(0.0, machine - own - extra) * 100, 1),
            cores=psutil.cpu_count() or 1,
            others_cpu_percent=round(sum(p.cpu_percent for p in others), 1),
            busiest_others=[p for p in others[:5] if p.cpu_percent >= 1.0],
            seconds=round(dt, 3),
        )


def machine_info() -> MachineInfo:
    """CPU model, cores, memory, library versions and the load average now."""
    import cv2
    import onnxruntime

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return MachineInfo(
        cpu=cpu,
        cores=psutil.cpu_count() or 1,
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        python=platform.python_version(),
        opencv=cv2.__version__,
        onnxruntime=onnxruntime.__version__,
        loadavg_start=[round(x, 2) for x in os.getloadavg()],
    )
