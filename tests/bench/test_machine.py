"""The CPU meter tells trakr's own work (and its helpers') from other work on the machine.

Real processes burn a fixed amount of CPU (1 CPU-second, by their own clock); the meter must put
those seconds in the right place. No wall-clock thresholds: the checks are on CPU seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import wait_until

from trakr.bench.machine import CpuMeter

BURN = """
import pathlib, sys, time
while time.process_time() < 1.0:
    pass
pathlib.Path(sys.argv[1]).write_text("done")
time.sleep(120)
"""


def cpu_seconds(percent: float, seconds: float) -> float:
    return percent * seconds / 100.0


def test_a_child_process_counts_as_a_helper_not_as_other_work(tmp_path):
    flag = tmp_path / "done"
    meter = CpuMeter()
    proc = subprocess.Popen([sys.executable, "-c", BURN, str(flag)])
    try:
        assert wait_until(flag.exists, timeout=120)
        cpu = meter.read()
    finally:
        proc.kill()
        proc.wait()
    assert cpu_seconds(cpu.helper_cpu_percent, cpu.seconds) >= 0.95
    assert proc.pid not in [p.pid for p in cpu.busiest_others]


def test_another_process_counts_as_other_work_and_is_named(tmp_path):
    flag = tmp_path / "done"
    meter = CpuMeter()
    # started through a shell that exits at once: the burner is not a child of this process
    sh = subprocess.run(
        ["/bin/sh", "-c", '"$0" -c "$1" "$2" >/dev/null 2>&1 & echo $!', sys.executable, BURN, str(flag)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(sh.stdout.strip())
    try:
        assert wait_until(flag.exists, timeout=120)
        cpu = meter.read()
    finally:
        os.kill(pid, signal.SIGKILL)
    (burner,) = [p for p in cpu.busiest_others if p.pid == pid]
    assert burner.name.startswith("python")
    assert cpu_seconds(burner.cpu_percent, cpu.seconds) >= 0.95
    assert cpu.others_cpu_percent >= burner.cpu_percent
    assert cpu_seconds(cpu.helper_cpu_percent, cpu.seconds) < 0.5


def test_a_child_that_ended_during_the_measurement_still_counts_as_a_helper():
    """Like the peer: a child process that burns CPU and exits before the meter reads."""
    meter = CpuMeter()
    burn_then_exit = "import time\nwhile time.process_time() < 1.0:\n    pass\n"
    subprocess.run([sys.executable, "-c", burn_then_exit], check=True, timeout=120)
    cpu = meter.read()
    assert cpu_seconds(cpu.helper_cpu_percent, cpu.seconds) >= 0.95  # so the machine's remainder leaves it out
