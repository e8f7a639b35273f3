"""`python -m oddjob bench`, run in-process with tiny job counts: every row of the table is
there, --json writes what it promises, and every pool the harness started is gone after."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import multiprocessing
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import oddjob
from oddjob import (
    _bench,
    _bench_backpressure,
    _bench_external,
    _bench_observability,
    _bench_peers,
    _bench_processes,
    _bench_ray,
    _bench_scaling,
    telemetry,
)
from oddjob._bench_report import MODE_TITLES

# Tiny runs: every workload, mode and peer is measured, each a couple of times.
# The backpressure, observability, external and process-workers sections have tests of
# their own: the others leave them out.
TINY = [
    "bench",
    "--quick",
    "--jobs",
    "200",
    "--repeat",
    "1",
    "--no-backpressure",
    "--no-observability",
    "--no-external",
    "--no-processes",
]
# pebble's close() + join() polls every 0.1 s: left out of the quick tests.
QUICK_PEERS = ["oddjob", "tpe", "threadpool", "asyncio", "loop"]
PEER_NAMES = {
    "oddjob": "oddjob",
    "executor": "oddjob.Executor",
    "tpe": "ThreadPoolExecutor",
    "threadpool": "multiprocessing ThreadPool",
    "asyncio": "asyncio + Semaphore",
    "pebble": "pebble ThreadPool",
    "loop": "single-thread loop",
}
WORKLOAD_TITLES = ["no-op", "~10 µs CPU", "~1 ms I/O"]
# How long the threads of the harness's last pools get to be gone.
THREAD_EXIT_WAIT = 5.0


def run_bench(*extra: str, status: int = 0) -> str:
    """The table that `python -m oddjob bench ...` prints, with all its threads gone."""
    before = set(threading.enumerate())
    out = io.StringIO()
    assert _bench.main([*TINY, *extra], out=out) == status
    deadline = time.monotonic() + THREAD_EXIT_WAIT
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in set(threading.enumerate()) - before]
    assert not left, f"threads the harness started are still alive: {left}"
    return out.getvalue()


def rows(table: str, peer: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith(f"    {peer} ")]


def test_table_has_every_row_and_json_has_every_key(tmp_path: Path, core: ModuleType) -> None:
    path = tmp_path / "bench.json"
    table = run_bench(
        "--peers", ",".join(QUICK_PEERS), "--no-executor", "--no-scaling", "--json", str(path)
    )
    assert "Scaling with cores" not in table

    assert f"on the {core.IMPLEMENTATION} core" in table
    for title in WORKLOAD_TITLES:
        assert f"\n{title} · " in table
    for mode in ("perform", "perform_many", "async_many", "round_trip"):
        assert table.count(MODE_TITLES[mode]) == len(WORKLOAD_TITLES)
    assert table.count(MODE_TITLES["queued_bytes"]) == 1
    for key in QUICK_PEERS:
        # Per workload: 3 throughput modes and the round trip; memory once (not the loop).
        expected = 4 * len(WORKLOAD_TITLES) + (key != "loop")
        assert len(rows(table, PEER_NAMES[key])) == expected, table
    assert "2,000 async jobs created, run and collected (pool = CPU count" in table
    assert "not measured" not in table

    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {
        "schema",
        "environment",
        "settings",
        "workloads",
        "results",
        "headline",
        "failures",
    }
    assert data["failures"] == []
    environment = data["environment"]
    assert {"python", "core", "cpu_count", "platform", "oddjob"} <= set(environment)
    assert environment["core"] == core.IMPLEMENTATION
    assert data["settings"]["pool_size"] == 5
    assert [w["key"] for w in data["workloads"]] == ["noop", "cpu", "sleep"]
    headline = data["headline"]
    assert None not in headline.values(), headline
    assert headline["async_jobs_seconds"] > 0
    assert headline["perform_noop_vs_tpe_submit"] > 0
    result = data["results"][0]
    assert {"workload", "mode", "peer", "call", "unit", "median", "samples"} <= set(result)
    assert {r["peer"] for r in data["results"]} == {PEER_NAMES[k] for k in QUICK_PEERS}
    assert all(r["samples"] and r["median"] > 0 for r in data["results"])
    reference = [r for r in data["results"] if r["peer"] == "ThreadPoolExecutor"]
    assert all(r["ratio_to_tpe"] == pytest.approx(1.0) for r in reference)


def test_scaling_section_has_every_row_and_json_key(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = run_bench(
        "--workloads", "noop", "--peers", "oddjob,loop", "--scaling", "--json", str(path)
    )

    gil = "GIL enabled" if _bench_scaling.gil_is_enabled() else "GIL disabled"
    assert f"Scaling with cores ({gil}" in table
    for row in (
        "oddjob perform_many",
        "oddjob async_perform_many+await_many",
        "ThreadPoolExecutor.map",
    ):
        line = next(line for line in table.splitlines() if line.startswith(row + " "))
        # 1, 2 and 4 workers, for 10 µs and 100 µs jobs
        assert len(re.findall(r"\d+\.\d\dx", line)) == 6, line
    submitters = next(line for line in table.splitlines() if line.startswith("no-op perform"))
    assert re.search(r"1 submitter [\d.]+M jobs/s, 2 submitters [\d.]+M jobs/s", submitters)

    scaling = json.loads(path.read_text(encoding="utf-8"))["scaling"]
    assert scaling["gil_enabled"] == _bench_scaling.gil_is_enabled()
    assert scaling["workers"] == [1, 2, 4]
    assert set(scaling["jobs"]) == {"10 µs", "100 µs"}
    speedups = scaling["speedup_over_loop"]
    assert len(speedups) == 3 * 3 * 2
    assert all(s["speedup"] > 0 for s in speedups)
    assert set(scaling["submitters"]["jobs_per_second"]) == {"1", "2"}
    assert all(v > 0 for v in scaling["submitters"]["jobs_per_second"].values())


def test_backpressure_section_has_every_row_and_json_key(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = run_bench(
        "--workloads", "noop", "--peers", "oddjob", "--backpressure", "--json", str(path)
    )

    assert "Backpressure, context and asyncio (v2; pool size 5, median of 1)" in table
    for pattern in (
        r"bounded queue: .* max_queue=1000 [\d,]+ jobs/s, unbounded [\d,]+ jobs/s \([\d.]+x\)",
        r"blocked producer resumes after room appears: p50 [\d.]+ µs, p99 [\d.]+ µs",
        r"copy_context=True [\d,]+/s, False [\d,]+/s \([\d.]+x\); bytes per queued "
        r"fire-and-forget job \d+ B with context, \d+ B without",
        r"await aio.run [\d.]+ µs \(p99 [\d.]+\), run_in_executor\(ThreadPoolExecutor\) "
        r"[\d.]+ µs \(p99 [\d.]+\); aio.run/run_in_executor [\d.]+x",
    ):
        assert re.search(pattern, table), (pattern, table)

    data = json.loads(path.read_text(encoding="utf-8"))["backpressure"]
    pair = data["bounded_pair"]
    assert pair["max_queue"] == _bench_backpressure.MAX_QUEUE
    assert set(pair["jobs_per_second"]) == {"bounded", "unbounded"}
    assert pair["bounded_over_unbounded"] > 0
    assert data["resume_us"]["samples"] >= 1
    assert 0 < data["resume_us"]["p50"] <= data["resume_us"]["p99"]
    context = data["copy_context"]
    assert set(context["jobs_per_second"]) == {"True", "False"}
    # A queued job holds its Context only when the pool copies it.
    assert context["queued_bytes"]["True"] > context["queued_bytes"]["False"] > 0
    assert set(data["aio_round_trip_us"]) == {"aio.run", "run_in_executor"}


def test_backpressure_runs_by_default() -> None:
    assert _bench_backpressure.wanted(None) is True
    assert _bench_backpressure.wanted(False) is False


def test_observability_section_has_every_row_and_json_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    def handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        events.append(event)

    monkeypatch.setattr(_bench_observability, "_noop_handler", handler)
    path = tmp_path / "bench.json"
    table = run_bench(
        "--workloads", "noop", "--peers", "oddjob", "--observability", "--json", str(path)
    )

    assert "Observability (v2; pool size 5, median of 1)" in table
    for pattern in (
        r"no-op perform, 200 jobs: no telemetry handler [\d,]+/s, a no-op handler on "
        r"job.stop [\d,]+/s \([\d.]+x; target >= 0.50x(, MISSED)?\)",
        r"no-op async_perform_many\+await_many, 200 jobs: no telemetry handler [\d,]+/s, "
        r"a no-op handler on job.stop [\d,]+/s \([\d.]+x; target >= 0.50x(, MISSED)?\)",
        r"stats\(\) with 4,000 jobs queued: [\d.]+ µs a call \(p99 [\d.]+ µs; with none "
        r"queued [\d.]+ µs; median of 2,000 calls, each timed alone; target <= 20 µs"
        r"(, MISSED)?\)",
        r"pool\(name\).jobs, the same queue, for contrast: [\d.,]+ ms a snapshot",
    ):
        assert re.search(pattern, table), (pattern, table)
    # The handler ran on every job of the runs with it (a warm-up and one timed run of
    # each mode, 200 jobs each, besides the jobs that start the pools), and was detached.
    assert len(events) >= 4 * 200
    assert set(events) == {"job.stop"}
    assert _bench_observability.HANDLER_ID not in [h.id for h in telemetry.handlers()]

    data = json.loads(path.read_text(encoding="utf-8"))["observability"]
    assert (data["repeat"], data["pool_size"]) == (1, 5)
    measured = data["telemetry"]
    assert measured["handler_event"] == "job.stop"
    assert measured["target_handler_over_none"] == 0.5
    for mode in ("perform", "async_many"):
        assert set(measured[mode]["jobs_per_second"]) == {"none", "handler"}
        assert all(v > 0 for v in measured[mode]["jobs_per_second"].values())
        assert measured[mode]["handler_over_none"] > 0
    stats = data["stats_us"]
    assert (stats["queued_jobs"], stats["calls_per_run"], stats["target"]) == (4000, 2000, 20.0)
    assert 0 < stats["median"] <= stats["p99"]
    assert stats["median_none_queued"] > 0
    snapshot = data["jobs_snapshot_ms"]
    assert snapshot["queued_jobs"] == 4000
    assert snapshot["median"] > 0


def test_observability_runs_by_default_on_a_queue_of_200000() -> None:
    assert _bench_observability.wanted(None) is True
    assert _bench_observability.wanted(False) is False
    assert _bench_observability.queued_jobs(10_000) == 200_000  # --quick
    assert _bench_observability.queued_jobs(50_000) == 200_000
    assert _bench_observability.queued_jobs(200) == 4_000
    assert _bench_observability.queued_jobs(1) == 1_000


def test_external_section_has_every_row_and_json_key(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = run_bench("--workloads", "noop", "--peers", "oddjob", "--external", "--json", str(path))

    assert "Calling external services (v2; pool size 5, one run each)" in table
    for pattern in (
        r"rate_limit=\(200, 1\), 400 no-op jobs at once: at most \d+ starts in any 1 s "
        r"window, \d+ in any 999 ms one \(limit 200(, BROKEN)?; a start and the 200th "
        r"after it at least [\d.]+ ms apart\); [\d.]+ s against the ideal 1 s \([\d.]+x; "
        r"target <= 1.03x(, MISSED)?\); process CPU [\d.]+% of one core \(target <= 5%"
        r"(, MISSED)?\)",
        r"retry=Retry\(attempts=4, backoff=0.05, jitter=False\), 60 jobs that always fail, "
        r"one every 11 ms: 180 retries \(delays 50, 100, 200 ms\), late by p50 -?[\d.]+ ms, "
        r"p99 -?[\d.]+ ms, max -?[\d.]+ ms, min -?[\d.]+ ms \(target: within 5 ms"
        r"(, MISSED)?\)",
    ):
        assert re.search(pattern, table), (pattern, table)

    data = json.loads(path.read_text(encoding="utf-8"))["external"]
    rate = data["rate"]
    assert (rate["rate_limit"], rate["pool_size"], rate["jobs"]) == ([200, 1.0], 5, 400)
    assert rate["ideal_seconds"] == 1.0
    # The first 200 start at once, the other 200 a second later: never sooner.
    assert 200 <= rate["max_starts_in_any_window"] <= 400
    assert rate["max_starts_in_any_window_less_tolerance"] <= rate["max_starts_in_any_window"]
    assert rate["clock_tolerance_seconds"] == 0.001
    assert rate["shortest_span_of_count_starts_seconds"] > 0
    assert rate["seconds"] >= 1.0 - 0.01
    assert rate["over_ideal"] == pytest.approx(rate["seconds"], rel=1e-3)
    assert rate["cpu_percent_of_one_core"] >= 0
    assert (rate["target_over_ideal"], rate["target_cpu_percent"]) == (1.03, 5.0)
    retry = data["retry"]
    assert (retry["attempts"], retry["backoff"], retry["jitter"]) == (4, 0.05, False)
    assert (retry["jobs"], retry["retries"], retry["target_ms"]) == (60, 180, 5.0)
    late = retry["lateness_ms"]
    assert late["min"] <= late["p50"] <= late["p99"] <= late["max"]


def test_external_runs_by_default() -> None:
    assert _bench_external.wanted(None) is True
    assert _bench_external.wanted(False) is False


def test_external_figures() -> None:
    # 2,000 starts at 200 per second: 200 at once, then 200 a second, the last at 9 s.
    assert _bench_external.ideal_seconds(2_000) == 9.0
    assert _bench_external.ideal_seconds(400) == 1.0
    assert _bench_external.ideal_seconds(201, count=200, per=0.5) == 0.5
    # Windows are half-open: starts exactly `per` apart are never in one window.
    assert _bench_external.busiest_window([0.0, 1.0, 2.0, 3.0], per=1.0) == 1
    assert _bench_external.busiest_window([0.0, 0.5, 0.999, 1.0, 1.2], per=1.0) == 4
    assert _bench_external.busiest_window([3.0, 0.0, 0.1], per=1.0) == 2  # any order
    assert _bench_external.busiest_window([], per=1.0) == 0
    assert _bench_external.shortest_span([0.0, 0.4, 1.0, 1.3, 2.5], count=2) == pytest.approx(0.9)
    assert _bench_external.shortest_span([0.0, 0.4], count=2) == math.inf
    delays = {1: 0.05, 2: 0.1, 3: 0.2}
    late = _bench_external.retry_lateness([10.0, 10.051, 10.152, 10.352], delays.__getitem__)
    assert late == pytest.approx([0.001, 0.001, 0.0])
    assert _bench_external.retry_lateness([1.0], delays.__getitem__) == []


# The process-workers section, shrunk for the tests: the rows and keys are the same.
TINY_PROCESSES = {
    "QUICK_EACH_JOBS": 200,
    "QUICK_BATCH_ITEMS": 2_000,
    "CPU_JOBS": 20,
    "RECOVERY_RUNS": 2,
    "TIMEOUT_RUNS": 2,
    "REPEAT": 1,
}
PROCESS_PEER_ROWS = {
    "oddjob": "oddjob async_perform + Job.result",
    "process_pool_executor": "ProcessPoolExecutor submit + result",
    "loky": "loky ProcessPoolExecutor submit + result",
    "pebble": "pebble ProcessPool schedule + result",
}
RATE = r"\s+[\d,]+ jobs/s"


@pytest.fixture
def tiny_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TINY_PROCESSES.items():
        monkeypatch.setattr(_bench_processes, name, value)


def run_processes_bench(*extra: str, status: int = 0) -> str:
    """run_bench with the process-workers section, which leaves no worker process."""
    before = set(multiprocessing.active_children())
    table = run_bench("--workloads", "noop", "--peers", "oddjob", "--processes", *extra)
    left = set(multiprocessing.active_children()) - before
    assert not left, f"processes the section started are still alive: {left}"
    return table


def missing(*modules: str, present: tuple[str, ...] = ()) -> Any:
    """importlib.util.find_spec as it answers where ``modules`` are not installed (and,
    for a test whose runs are stand-ins, where ``present`` are, installed or not)."""
    find_spec = importlib.util.find_spec

    def answer(name: str, *args: Any) -> Any:
        if name in modules:
            return None
        if name in present:
            return find_spec("json")  # any spec: the stand-in runs never import it
        return find_spec(name, *args)

    return answer


# The optional process peers installed here (the README's test command installs neither).
INSTALLED_PEERS = {key for key in ("loky", "pebble") if importlib.util.find_spec(key) is not None}
OPTIONAL_PEERS = {"loky", "pebble"}


@pytest.mark.usefixtures("tiny_processes")
def test_processes_section_has_every_row_and_json_key(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = run_processes_bench("--json", str(path))

    start = _bench_processes.START_METHOD
    assert (
        f"Process workers (v2; backend='processes', 2 worker processes, start_method='{start}', "
        f"{os.cpu_count()} CPUs; median of 1 run on a warmed pool)"
    ) in table
    running = {
        k: row
        for k, row in PROCESS_PEER_ROWS.items()
        if k not in OPTIONAL_PEERS or k in INSTALLED_PEERS
    }
    patterns = [
        r"one call per job: 200 no-op jobs submitted, then every result",
        *(f"    {re.escape(row)}{RATE}" for row in running.values()),
        *(
            f"    {re.escape(PROCESS_PEER_ROWS[k])}" + r"\s+not installed, left out"
            for k in OPTIONAL_PEERS - INSTALLED_PEERS
        ),
        r"oddjob over the best peer \((ProcessPoolExecutor|loky ProcessPoolExecutor|pebble "
        r"ProcessPool)\): [\d.]+x \(target >= 3x: (met|MISSED)\)",
        r"batches: 2,000 no-op items in one call",
        f"    oddjob async_perform_many \\+ await_many{RATE}",
        *(f"    ProcessPoolExecutor.map chunksize={c}{RATE}" for c in (10, 100, 200, 1000, 5000)),
        r"oddjob over the best map \(chunksize=\d+\): [\d.]+x \(target >= 1x: (met|MISSED)\)",
        r"CPU-bound: 20 jobs of [\d.]+ ms of pure-Python arithmetic \([\d,]+ iterations\): "
        r"the single-thread loop [\d.]+ ms, oddjob's 2 processes [\d.]+ ms: [\d.]+x "
        r"\(target >= 1.8x: (met|MISSED); \d+ CPUs here\)",
        f"crash recovery \\({start}, pool of 1\\): SIGKILL of the worker to its replacement "
        r"starting the next job: median [\d.]+ ms, max [\d.]+ ms over 2 \(target <= 200 ms: "
        r"(met|MISSED)\)",
        r"job_timeout=0.2 on a 10 s job \(pool of 1\): JobTimeoutError late by median "
        r"-?[\d.]+ ms, max -?[\d.]+ ms over 2 \(target <= 50 ms: (met|MISSED)\)",
    ]
    for pattern in patterns:
        assert re.search(pattern, table), (pattern, table)
    assert table.count("not installed") == len(OPTIONAL_PEERS - INSTALLED_PEERS)
    assert "failed" not in table

    data = json.loads(path.read_text(encoding="utf-8"))["processes"]
    assert (data["pool_size"], data["start_method"], data["repeat"]) == (2, start, 1)
    assert data["cpu_count"] == os.cpu_count()
    each = data["one_call_per_job"]
    assert each["jobs"] == 200
    assert set(each["jobs_per_second"]) == set(PROCESS_PEER_ROWS)
    assert all(each["jobs_per_second"][k] > 0 for k in running)
    assert set(each["left_out"]) == OPTIONAL_PEERS - INSTALLED_PEERS
    assert each["failed"] == {}
    assert each["best_peer"] in {"process_pool_executor", *INSTALLED_PEERS}
    best = each["jobs_per_second"][each["best_peer"]]
    rates = each["jobs_per_second"]
    assert best == max(rate for k, rate in rates.items() if k in running and k != "oddjob")
    assert each["oddjob_over_best_peer"] == pytest.approx(
        each["jobs_per_second"]["oddjob"] / best, rel=1e-2
    )
    assert (each["target"], each["meets_target"]) == (3.0, each["oddjob_over_best_peer"] >= 3)
    batches = data["batches"]
    assert batches["items"] == 2_000
    assert batches["oddjob_jobs_per_second"] > 0
    assert list(batches["map_jobs_per_second"]) == ["10", "100", "200", "1000", "5000"]
    assert batches["best_chunksize"] in (10, 100, 200, 1000, 5000)
    assert batches["oddjob_over_best_map"] > 0
    assert batches["target"] == 1.0
    cpu = data["cpu_bound"]
    assert (cpu["jobs"], cpu["target"]) == (20, 1.8)
    assert cpu["iterations"] > 0 and cpu["job_ms"] > 0
    assert cpu["loop_seconds"] > 0 and cpu["oddjob_seconds"] > 0
    assert cpu["speedup_over_loop"] == pytest.approx(
        cpu["loop_seconds"] / cpu["oddjob_seconds"], rel=1e-2
    )
    crash = data["crash_recovery"]
    assert (crash["start_method"], crash["pool_size"], crash["runs"]) == (start, 1, 2)
    assert 0 < crash["ms"]["median"] <= crash["ms"]["max"]
    assert len(crash["ms"]["samples"]) == 2
    assert crash["target_max_ms"] == 200.0
    timeout = data["job_timeout"]
    assert (timeout["job_timeout"], timeout["job_seconds"], timeout["runs"]) == (0.2, 10.0, 2)
    assert timeout["lateness_ms"]["median"] <= timeout["lateness_ms"]["max"]
    assert timeout["target_max_ms"] == 50.0
    for part in ("one_call_per_job", "batches", "cpu_bound", "crash_recovery", "job_timeout"):
        assert isinstance(data[part]["meets_target"], bool)


def test_processes_runs_by_default(tmp_path: Path) -> None:
    assert _bench_processes.wanted(None) is True
    assert _bench_processes.wanted(False) is False
    assert _bench.parser().parse_args(["bench"]).processes is None
    # --no-processes (in TINY): neither the section nor its JSON key.
    path = tmp_path / "bench.json"
    table = run_bench("--workloads", "noop", "--peers", "oddjob", "--json", str(path))
    assert "Process workers" not in table
    assert "processes" not in json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.usefixtures("tiny_processes")
def test_missing_process_peers_are_noted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", missing("loky", "pebble"))
    peers, left_out = _bench_processes.available_peers()
    assert [peer.key for peer in peers] == ["oddjob", "process_pool_executor"]
    assert left_out == {
        "loky": "not installed, left out (python -m pip install loky)",
        "pebble": "not installed, left out (python -m pip install pebble)",
    }

    path = tmp_path / "bench.json"
    table = run_processes_bench("--json", str(path))
    for key in ("loky", "pebble"):
        row = re.escape(PROCESS_PEER_ROWS[key]) + r"\s+" + re.escape(left_out[key])
        assert re.search(f"^    {row}$", table, re.MULTILINE), (row, table)
    assert "oddjob over the best peer (ProcessPoolExecutor): " in table
    each = json.loads(path.read_text(encoding="utf-8"))["processes"]["one_call_per_job"]
    assert (each["jobs_per_second"]["loky"], each["jobs_per_second"]["pebble"]) == (None, None)
    assert each["left_out"] == left_out
    assert each["best_peer"] == "process_pool_executor"


def test_a_failing_process_peer_is_noted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Figures made up (each run's seconds): how they turn into the rows and ratios."""

    def each_run(key: str, n: int, size: int, repeat: int) -> list[float]:
        if key == "pebble":
            raise RuntimeError("broken pool")
        return [1.0] if key == "oddjob" else [2.0]

    monkeypatch.setattr(_bench_processes, "each_run", each_run)
    monkeypatch.setattr(importlib.util, "find_spec", missing("loky", present=("pebble",)))
    stand_ins: dict[str, Any] = {
        "batch_runs": ([0.5], {10: [1.0], 100: [0.25]}),
        "cpu_runs": ([0.2], [0.1]),
        "recovery_runs": [0.05, 0.1],
        "timeout_runs": [0.001, 0.003],
    }
    for name, value in stand_ins.items():
        monkeypatch.setattr(_bench_processes, name, lambda *args, value=value: value)
    result = _bench_processes.measure_processes(quick=True)
    assert "RuntimeError: broken pool" in capsys.readouterr().err  # the traceback
    assert result.failed == {"pebble": "RuntimeError: broken pool"}
    assert result.left_out == {"loky": "not installed, left out (python -m pip install loky)"}
    lines = _bench_processes.processes_lines(result)
    row = re.escape(PROCESS_PEER_ROWS["pebble"]) + r"\s+failed: RuntimeError: broken pool"
    assert any(re.fullmatch(f"    {row}", line) for line in lines), lines
    # oddjob 1,000 jobs in 1 s, ProcessPoolExecutor in 2 s: 2x the best peer.
    assert "    oddjob over the best peer (ProcessPoolExecutor): 2.00x (target >= 3x: MISSED)" in (
        lines
    )
    assert "    oddjob over the best map (chunksize=100): 0.50x (target >= 1x: MISSED)" in lines
    data = result.to_json()
    assert data["one_call_per_job"]["failed"] == {"pebble": "RuntimeError: broken pool"}
    assert data["one_call_per_job"]["jobs_per_second"]["pebble"] is None
    assert data["cpu_bound"]["speedup_over_loop"] == 2.0
    assert data["cpu_bound"]["meets_target"] is True
    assert data["crash_recovery"]["ms"] == {"median": 75.0, "max": 100.0, "samples": [50.0, 100.0]}
    assert data["job_timeout"]["lateness_ms"]["median"] == 2.0
    assert data["job_timeout"]["meets_target"] is True


def test_processes_jobs_run_in_this_process_too() -> None:
    iterations, seconds = _bench_processes.calibrated_arithmetic(target=0.0002)
    assert iterations >= 1 and seconds > 0
    assert _bench_processes.arithmetic(10) == sum(i * i % 7 for i in range(10))
    _bench_processes.noop()
    assert _bench_processes.warm(0) == os.getpid()


def test_scaling_runs_by_default_only_without_the_gil() -> None:
    gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert _bench_scaling.wanted(None) is (not gil_enabled)
    assert _bench_scaling.wanted(True) is True
    assert _bench_scaling.wanted(False) is False


class StandInExecutor(ThreadPoolExecutor):
    """What the harness needs of oddjob.Executor: a drop-in ThreadPoolExecutor."""


def test_executor_is_a_peer_when_oddjob_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oddjob, "Executor", StandInExecutor, raising=False)
    noop_only = ["--workloads", "noop"]

    # Three throughput modes, the round trip and the memory figure.
    assert len(rows(run_bench(*noop_only, "--peers", "oddjob,executor"), "oddjob.Executor")) == 5
    assert len(rows(run_bench(*noop_only, "--peers", "tpe", "--executor"), "oddjob.Executor")) == 5
    table = run_bench(*noop_only, "--peers", "executor,tpe", "--no-executor")
    assert rows(table, "oddjob.Executor") == []


def test_a_failing_peer_costs_only_its_own_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: object, job: object, n: int, size: int) -> float:
        raise RuntimeError("broken map")

    monkeypatch.setattr(_bench_peers.ThreadPoolPeer, "perform_many", broken)
    path = tmp_path / "bench.json"
    args = ["--workloads", "noop", "--peers", "oddjob,threadpool", "--json", str(path)]

    table = run_bench(*args, status=1)
    threadpool = rows(table, "multiprocessing ThreadPool")
    assert len(threadpool) == 5  # four figures and the failure
    [failed] = [line for line in threadpool if "failed:" in line]
    assert failed.split()[2:] == ["map", "failed:", "RuntimeError:", "broken", "map"]
    assert len(rows(table, "oddjob")) == 5
    assert "RuntimeError: broken map" in capsys.readouterr().err  # the traceback
    failures = json.loads(path.read_text(encoding="utf-8"))["failures"]
    assert [(f["mode"], f["peer_key"], f["error"]) for f in failures] == [
        ("perform_many", "threadpool", "RuntimeError: broken map")
    ]


def test_executor_asked_for_but_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(oddjob, "Executor", raising=False)
    with pytest.raises(SystemExit) as stop:
        _bench.main([*TINY, "--executor"])
    assert stop.value.code == 2
    assert "no oddjob.Executor" in capsys.readouterr().err


def test_plot_without_matplotlib_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "matplotlib" else find_spec(name, *args),
    )
    with pytest.raises(SystemExit) as stop:
        _bench.main([*TINY, "--plot", "chart.png"])
    assert stop.value.code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


@pytest.mark.slow  # needs the plot extra (matplotlib): CI installs it for the slow run
def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    run_bench("--workloads", "noop", "--peers", "oddjob,tpe,loop", "--plot", str(path))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_peer_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _bench.main([*TINY, "--peers", "oddjob,celery"])
    assert "expected a comma-separated list" in capsys.readouterr().err


def test_missing_pebble_is_noted_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pebble" else find_spec(name, *args),
    )
    peers, notes = _bench.make_peers(None, executor=None)
    assert "pebble" not in [peer.key for peer in peers]
    assert any(note.startswith("pebble: not installed") for note in notes)
    with pytest.raises(ValueError, match="not available here: pebble"):
        _bench.make_peers(["oddjob", "pebble"], executor=None)


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert _bench.percentile(samples, 0.50) == 50.0
    assert _bench.percentile(samples, 0.99) == 99.0
    assert _bench.percentile([3.0], 0.99) == 3.0


@pytest.mark.slow
def test_every_available_peer_runs() -> None:
    """pebble too, when installed (slow: its pool's drain polls every 0.1 s)."""
    table = run_bench("--workloads", "noop")
    names = ["oddjob", "tpe", "threadpool", "asyncio", "loop"]
    if importlib.util.find_spec("pebble") is not None:
        names.append("pebble")
    for key in names:
        assert rows(table, PEER_NAMES[key]), f"no row for {key}:\n{table}"


def test_the_ray_section_is_opt_in_and_says_when_ray_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "Ray backend" not in run_bench("--peers", "oddjob", "--workloads", "noop")
    monkeypatch.setattr(_bench, "ray_available", lambda: False)  # as if not installed
    table = run_bench("--peers", "oddjob", "--workloads", "noop", "--ray")
    assert _bench_ray.MISSING in table
