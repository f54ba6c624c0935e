"""The bench's arithmetic on hand-made snapshots and batches: every expected figure is worked out
by hand below, not recomputed with the code's formula."""

from __future__ import annotations

import dataclasses

import pytest
from rich.text import Text

from trakr.bench.machine import CpuShare, MachineInfo, MachineLoad, OtherProcess
from trakr.bench.measure import BatchRecord, LatencySample, Recording, RunSetup, summarise
from trakr.bench.options import parse_cameras
from trakr.bench.report import comparison_rows, figures_markdown, tables
from trakr.bench.results import BenchResult, Latency, NaiveLatency, NaiveResult, PeerResult, RawResult, RunResult
from trakr.bench.targets import evaluate_targets, ratios
from trakr.types import CameraSnapshot, PipelineSnapshot


def cam(cid: int, read: int, published: int, dropped: int, reasons: dict[str, int], analysed: int, reconnects=0):
    seen = sum(reasons.values())
    return CameraSnapshot(
        camera_id=cid,
        name=f"bench-{cid}",
        state="up",
        reason="frames arriving",
        capture_fps=10.0,
        frames_read=read,
        frames_published=published,
        frames_dropped=dropped,
        gate_seen=seen,
        gate_passed=seen - reasons.get("skipped", 0),
        gate_reasons=reasons,
        frames_analysed=analysed,
        reconnects=reconnects,
        failures=0,
        last_frame_at=None,
        last_error="",
    )


def snap(at: float, cams: list[CameraSnapshot], alerts=0, errors=0, precision="bf16") -> PipelineSnapshot:
    return PipelineSnapshot(
        at=at,
        cameras={c.camera_id: c for c in cams},
        batches=0,
        frames_analysed=sum(c.frames_analysed for c in cams),
        detector_errors=errors,
        alerts=alerts,
        output_skipped=0,
        inflight=0,
        batch_size=4,
        detector="openvino",
        detector_health="up",
        detector_precision=precision,
        alerts_pending_disk=0,
        alerts_suppressed=0,
        thread_restarts={},
        threads_alive=True,
    )


SETUP = RunSetup(cameras=2, duration_s=12.0, batch_size=4, deadline_ms=50.0, imgsz=416, gate=True, backend="onnx")

# Window 100.0 -> 110.0 s. Camera 0 is gated; camera 1 runs ungated; camera 2 appears mid-window.
START = snap(
    100.0,
    [
        cam(0, read=100, published=50, dropped=2, reasons={"motion": 40, "keyframe": 10, "skipped": 50}, analysed=48),
        cam(1, read=10, published=10, dropped=0, reasons={"ungated": 10}, analysed=10),
    ],
)
END = snap(
    110.0,
    [
        cam(0, 200, 100, 7, {"motion": 85, "keyframe": 15, "skipped": 100}, analysed=93, reconnects=1),
        cam(1, 110, 110, 0, {"ungated": 110}, analysed=110),
        cam(2, 30, 30, 0, {"ungated": 30}, analysed=30),
    ],
)
FINAL = snap(112.0, END.cameras.values(), alerts=3, errors=1)


def recording() -> Recording:
    rec = Recording()
    rec.batches = [
        BatchRecord(99.9, 4, 4, 1.0),  # before the window
        BatchRecord(100.5, 2, 4, 0.02),
        BatchRecord(105.0, 4, 4, 0.04),
        BatchRecord(109.9, 3, 4, 0.03),
        BatchRecord(110.0, 4, 4, 1.0),  # at the end: after the window
    ]
    rec.latencies = [
        LatencySample(99.9, 5.0, 0),  # before the window
        *(LatencySample(105.0, s, 0) for s in (0.010, 0.020, 0.030)),
        *(LatencySample(109.9, 0.040, 1) for _ in range(6)),
        LatencySample(110.0, 9.0, 1),  # after the window
    ]
    return rec


def test_summarise_counts_only_the_window():
    r = summarise(SETUP, START, END, FINAL, recording())
    assert r.window_s == 10.0
    c0, c1 = r.per_camera  # camera 2 was not there when the window opened
    assert (c0.capture_fps, c0.published_fps, c0.analysed_fps) == (10.0, 5.0, 4.5)
    assert (c0.gate_pass_rate, c0.dropped, c0.drop_rate, c0.reconnects) == (0.5, 5, 0.1, 1)
    assert c0.gate_reasons == {"keyframe": 5, "motion": 45, "skipped": 50}
    assert (c1.capture_fps, c1.analysed_fps, c1.gate_pass_rate, c1.drop_rate) == (10.0, 10.0, 1.0, 0.0)
    assert c1.gate_reasons == {"ungated": 100}
    assert (c0.latency_ms.p50, c1.latency_ms.p50) == (20.0, 40.0)

    assert (r.capture_fps, r.published_fps, r.analysed_fps, r.gate_pass_rate) == (20.0, 15.0, 14.5, 0.75)
    assert r.gate_reasons == {"keyframe": 5, "motion": 45, "skipped": 50, "ungated": 100}
    assert (r.dropped, r.drop_rate, r.saturated) == (5, 0.033, False)
    assert (r.batches, r.batch_fill, r.model_ms_per_frame, r.model_ms_per_batch) == (3, 0.75, 10.0, 30.0)
    assert r.detector_busy == 0.009
    assert (r.latency_ms.p50, r.latency_ms.max, r.latency_ms.mean) == (40.0, 40.0, 33.3)
    assert (r.alerts, r.detector_errors, r.detector, r.detector_precision) == (3, 1, "openvino", "bf16")


def test_a_pipeline_dropping_many_frames_is_saturated():
    end = dataclasses.replace(END, cameras={**END.cameras, 1: cam(1, 110, 110, 10, {"ungated": 110}, 100)})
    r = summarise(SETUP, START, end, FINAL, recording())
    assert (r.dropped, r.drop_rate, r.saturated) == (15, 0.1, True)


def raw_result() -> RawResult:
    return RawResult(
        batch_fps={1: 50.0, 4: 40.0}, best_batch=1, fps=50.0, ms_per_frame=20.0, batch_ms={1: 20.0, 4: 100.0}
    )


@pytest.mark.parametrize(
    ("analysed", "saturated", "met"),
    [(45.0, True, True), (44.0, True, False), (44.0, False, None)],
)
def test_throughput_target_is_judged_only_when_saturated(analysed, saturated, met):
    t = dataclasses.replace(
        summarise(SETUP, START, END, FINAL, recording()), analysed_fps=analysed, saturated=saturated
    )
    assert evaluate_targets(t, raw_result()).throughput.met is met


def test_latency_bound_uses_the_raw_batch_time_of_the_runs_batch_size():
    t = summarise(SETUP, START, END, FINAL, recording())  # batch 4, deadline 50 ms, p99 40 ms
    lat = evaluate_targets(t, raw_result()).latency
    assert (lat.bound_ms, lat.met) == (300.0, True)  # 2 x (50 + 100)
    lat = evaluate_targets(
        dataclasses.replace(t, latency_ms=dataclasses.replace(t.latency_ms, p99=310.0)), None
    ).latency
    assert (lat.bound_ms, lat.met) == (160.0, False)  # no raw model: the run's own 30 ms per batch


def naive_result(fps: float, load: MachineLoad) -> NaiveResult:
    cpu = CpuShare(100.0, 0.0, 100.0, 0.0, 2)
    return NaiveResult(2, 3.0, fps, NaiveLatency(1.0, 2.0, 3.0), None, cpu, load)


def test_ratios():
    t = dataclasses.replace(summarise(SETUP, START, END, FINAL, recording()), analysed_fps=45.0)
    r = ratios(t, raw_result(), naive_result(15.0, quiet_load()))
    assert (r.trakr_over_raw, r.trakr_over_raw_same_batch, r.trakr_over_naive) == (0.9, 1.125, 3.0)
    assert ratios(t, None, None).to_json() == {}


def quiet_load() -> MachineLoad:
    return MachineLoad.of(CpuShare(150.0, 5.0, 160.0, 5.0, 2, others_cpu_percent=4.0), 0.3, 1.1)


def noisy_load() -> MachineLoad:
    others = [OtherProcess("stress", 4242, 60.0)]
    return MachineLoad.of(
        CpuShare(150.0, 5.0, 200.0, 45.0, 2, others_cpu_percent=60.0, busiest_others=others), 2.0, 2.5
    )


@pytest.mark.parametrize(
    ("others", "residual", "cores", "share", "quiet"),
    [
        (10.0, 5.0, 2, 0.05, True),
        (20.0, 0.0, 2, 0.10, True),
        (0.0, 21.0, 2, 0.105, False),
        (50.0, 0.0, 4, 0.125, False),
    ],
)
def test_quiet_means_other_processes_used_at_most_a_tenth_of_the_machine(others, residual, cores, share, quiet):
    load = MachineLoad.of(CpuShare(100.0, 0.0, 100.0, residual, cores, others_cpu_percent=others), 0.5, 0.7)
    assert (load.others_share, load.quiet) == (share, quiet)


def bench(trakr_load: MachineLoad, naive_load: MachineLoad) -> BenchResult:
    t = dataclasses.replace(summarise(SETUP, START, END, FINAL, recording()), load=trakr_load)
    naive = naive_result(15.0, naive_load)
    run = RunResult(cameras=2, trakr=t, naive=naive, ratios=ratios(t, None, naive), targets=evaluate_targets(t, None))
    info = MachineInfo("cpu", 2, 4.0, "3.11", "4", "1", [0.1, 0.1, 0.1])
    return BenchResult(command="trakr bench", started="now", machine=info, options={}, warmup_s=2.0, runs=[run])


def warnings(result: BenchResult) -> list[str]:
    return [str(x) for x in tables(result) if isinstance(x, Text)]


def test_a_noisy_run_is_marked_and_warned_about():
    quiet = bench(quiet_load(), quiet_load())
    assert warnings(quiet) == [] and quiet.to_json()["quiet"] is True
    assert quiet.to_json()["runs"][0]["quiet"] is True

    noisy = bench(quiet_load(), noisy_load())  # the naive loop ran while something else was busy
    js = noisy.to_json()
    assert js["quiet"] is False and js["runs"][0]["quiet"] is False
    assert js["runs"][0]["naive"]["load"]["busiest_others"] == [{"name": "stress", "pid": 4242, "cpu_percent": 60.0}]
    (line, advice) = warnings(noisy)
    assert "2 camera(s), naive loop: not quiet" in line and "30%" in line and "stress (pid 4242)" in line
    assert "not figures" in advice


def test_parse_cameras():
    assert parse_cameras("1,2, 4") == [1, 2, 4]
    for bad in ("0", "a", "", "65"):
        with pytest.raises(ValueError, match="--cameras"):
            parse_cameras(bad)


def test_trakr_and_the_peer_side_by_side_and_a_failed_peer_said_plainly():
    result = bench(quiet_load(), quiet_load())
    ok = PeerResult(2, 57.0, Latency(120.0, 200.0, 260.0), 190.0, 1700.0, {"inference_version": "1.8.3"}, quiet_load())
    result.runs[0].peer = ok
    second = dataclasses.replace(result.runs[0], cameras=16, peer=PeerResult.failed(16, "the peer exited with 1: boom"))
    result.runs.append(second)
    rows = comparison_rows(result)
    assert [(r["cameras"], r["system"].split(" (")[0].split(",")[0]) for r in rows] == [
        (2, "trakr"),
        (2, "peer: Roboflow inference 1.8.3 InferencePipeline"),
        (16, "trakr"),
        (16, "peer"),
    ]
    assert (rows[1]["fps"], rows[1]["p50"], rows[1]["p99"], rows[1]["cpu"], rows[1]["rss"]) == (
        57.0,
        120.0,
        260.0,
        190.0,
        1700.0,
    )
    assert result.to_json()["runs"][0]["peer"]["latency_ms"]["p99"] == 260.0
    assert "| 16 | peer | failed: the peer exited with 1: boom |" in figures_markdown(result)
    printed = [str(x) for x in tables(result) if isinstance(x, Text)]
    assert "peer failed on 16 camera(s): the peer exited with 1: boom" in printed
