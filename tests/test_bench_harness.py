"""`python -m oddjob bench`, run in-process with tiny job counts: every row of the table is
there, --json writes what it promises, and every pool the harness started is gone after."""

from __future__ import annotations

import importlib.util
import io
import json
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
    _bench_observability,
    _bench_peers,
    _bench_scaling,
    telemetry,
)
from oddjob._bench_report import MODE_TITLES

# Tiny runs: every workload, mode and peer is measured, each a couple of times.
# The backpressure and observability sections have tests of their own: the others leave
# them out.
TINY = [
    "bench",
    "--quick",
    "--jobs",
    "200",
    "--repeat",
    "1",
    "--no-backpressure",
    "--no-observability",
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
