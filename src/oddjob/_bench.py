"""``python -m oddjob bench``: oddjob beside its peers, all measured in the same run.

    python -m oddjob bench [--pool-size 5] [--jobs N] [--repeat R] [--quick]
                           [--json PATH] [--plot PATH] [--peers LIST] [--workloads LIST]
                           [--executor | --no-executor] [--ray]

What is measured
  Workloads: no-op jobs (the pool's own cost per job); ~10 µs of pure-Python CPU work
  (an empty loop calibrated at start-up; it holds the GIL); ~1 ms of I/O (time.sleep,
  which releases the GIL as a socket read does). Within a workload every peer runs the
  same number of jobs; slower workloads run fewer: N no-op jobs, N/5 CPU jobs, N/100
  sleeping jobs (N = --jobs).

  Modes: ``perform`` (fire and forget, one call per job); ``perform_many`` (the whole
  batch in one call); ``async_perform_many`` + ``await_many`` (a handle per job, then
  every result); round trip (submit one job and await it, one at a time: p50 and p99);
  bytes per queued job (tracemalloc while fire-and-forget jobs without arguments queue
  behind workers that are all blocked: what the pool holds per job, its queue's
  amortised growth included; measured once, the job being irrelevant); and a line of
  its own: 100,000 async jobs (fewer if --jobs is under 10,000), created one
  ``async_perform`` call each, run and collected with ``await_many``, on a pool of as
  many workers as there are CPUs.

  Peers: oddjob; ``oddjob.Executor`` when this oddjob has it, measured exactly as
  ``ThreadPoolExecutor`` is (submit / map / submit + result); multiprocessing's
  ``ThreadPool`` (apply_async / map / apply_async + get); asyncio, below; pebble's
  ``ThreadPool`` when pebble is installed (schedule / map / schedule + result); and
  the floor, a single-thread loop calling the same jobs one after the other. Each
  figure is also shown over ThreadPoolExecutor's ("vs TPE").

  asyncio is measured as a careful user limits work to N background jobs:
  ``async with semaphore: await asyncio.to_thread(job, item)`` under an
  ``asyncio.Semaphore(N)``, keeping every task (a TaskGroup for fire and forget, gather
  to collect results). The loop's default executor, which to_thread uses, gets N
  threads, so that the Semaphore, not the stock executor's size, bounds concurrency.

  Scaling (by default when the GIL is disabled, or with --scaling): CPU-bound jobs of
  ~10 µs and ~100 µs with 1, 2 and 4 workers, as a speed-up over the single-thread
  loop (oddjob's perform_many and async_perform_many + await_many, ThreadPoolExecutor's
  map), and no-op perform into a pool of 2 from 1 and from 2 submitting threads.

  Backpressure (on by default; --no-backpressure skips it): one producer into a pool
  with max_queue=1000 against the same pool unbounded, jobs of ~100 µs sleep; how soon a
  producer blocked on a full queue resumes once room appears (p50, p99); no-op perform
  with copy_context on against off, and the bytes per queued job of each; the round
  trip of ``await aio.run`` against ``await loop.run_in_executor(ThreadPoolExecutor)``.

  Observability (on by default; --no-observability skips it): no-op perform, and
  async_perform_many + await_many, with no telemetry handler against one no-op handler
  on job.stop (target: at least 0.50x); how long stats() takes on a pool with 200,000
  jobs queued behind blocked workers (median call; target: at most 20 µs), and
  pool(name).jobs on the same queue for contrast.

  External services (on by default; --no-external skips it): 2,000 no-op jobs (400 with
  --quick) at rate_limit=(200, 1.0): the most starts in any 1 s window (at most 200), the
  wall time against the ideal 9 s (target: within 3%) and the process's CPU time meanwhile
  (target: at most 5% of one core); and jobs that always fail under
  Retry(attempts=4, backoff=0.05, jitter=False): how late each retry runs against its
  schedule (p50, p99; target: within 5 ms). One run each.

  Process workers (on by default; --no-processes skips it): backend="processes" with 2
  worker processes beside ProcessPoolExecutor, loky and pebble's ProcessPool (each when
  installed), pools started and warmed before the clock: 5,000 no-op jobs (1,000 with
  --quick) submitted one call each, then every result (target: oddjob at least 3x the
  best peer); 100,000 no-op items (20,000) in one async_perform_many + await_many against
  ProcessPoolExecutor.map at its best chunksize of 10, 100, 200, 1000 and 5000 (target: at
  least 1x); 200 jobs of ~1 ms of pure-Python arithmetic against the bare loop (target:
  at least 1.8x); from a worker's SIGKILL to its replacement taking a job, forkserver
  (target: at most 200 ms); how late job_timeout=0.2 fails a 10 s job (target: at most
  50 ms). Median of 3 runs each; 5 crashes and 5 timeouts.

  Ray (off by default, Ray being an optional extra; --ray measures it): backend="ray"
  with pool_size=4 beside plain Ray tasks with the same options in a placement group of
  4 bundles, on a local 2-CPU cluster started for it (or the program's own): 500 no-op
  jobs (100 with --quick) one at a time, in µs per job (target: oddjob at most 1.3x plain
  Ray's time); 2,000 no-op jobs (500) sent, then every result, in jobs per second:
  async_perform_many and async_perform each, + await_many, over plain Ray with every
  task sent at once and with at most 4 in flight. Best of 3 runs after 1 warm-up.

How it is timed
  - time.perf_counter, around the library calls alone; a fresh pool for every run,
    all of whose threads have run a job (pool-size jobs that wait for one another)
    before the clock starts.
  - "Done" means every job has run. Fire-and-forget runs end with each library's own
    draining stop, for every peer alike (oddjob.stop, shutdown(wait=True), close() and
    join(), leaving the TaskGroup) rather than with a counter bumped by each job, which
    would add work to the job. Runs that return results end at the last result.
  - gc.collect() before each timed run and the collector off during it, for every peer
    alike: collection pauses depend on the rest of the heap, not on the pool. The heap
    as it is at start-up is frozen (gc.freeze) and left out of those collections.
  - One warm-up run per peer, discarded; then the peers take turns, repetition after
    repetition, so that a slow drift of the machine touches all alike. A figure is the
    median of the repetitions; ± is half their range, as a fraction of the median.
  - Batch calls run with each library's defaults: multiprocessing's map cuts the batch
    into chunks, pebble's map does not. pebble's close() + join() polls every 0.1 s, so
    its perform figures include up to that much waiting per run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import oddjob

from . import _backend
from ._bench_backpressure import BackpressureResult, backpressure_lines, measure_backpressure
from ._bench_backpressure import wanted as backpressure_wanted
from ._bench_external import ExternalResult, external_lines, measure_external
from ._bench_external import wanted as external_wanted
from ._bench_observability import ObservabilityResult, measure_observability, observability_lines
from ._bench_observability import wanted as observability_wanted
from ._bench_peers import (
    GC_OFF_WHILE_TIMING,
    SLEEP_JOB_SECONDS,
    AsyncioPeer,
    ExecutorPeer,
    Job,
    LoopPeer,
    OddjobExecutorPeer,
    OddjobPeer,
    PebblePeer,
    Peer,
    ThreadPoolPeer,
    frozen_heap,
    make_spin,
    noop,
    sleep_job,
)
from ._bench_processes import ProcessesResult, measure_processes, processes_lines
from ._bench_processes import wanted as processes_wanted
from ._bench_ray import MISSING as RAY_MISSING
from ._bench_ray import RayResult, measure_ray, ray_lines
from ._bench_ray import available as ray_available
from ._bench_ray import wanted as ray_wanted
from ._bench_report import (
    FOOTNOTE,
    Failure,
    Result,
    Stat,
    headline_lines,
    plot,
    section_lines,
    table_heading,
    to_json,
)
from ._bench_scaling import ScalingResult, gil_is_enabled, measure_scaling, scaling_lines, wanted

__all__ = [
    "PEER_KEYS",
    "WORKLOAD_KEYS",
    "Workload",
    "calibrated_spin",
    "main",
    "make_workloads",
    "percentile",
]

# No-op jobs per run; the other workloads run a fixed fraction of it. More jobs steady
# the fast peers' figures, but the slow peers (asyncio, pebble) pay for every one.
DEFAULT_JOBS: Final = 50_000
QUICK_JOBS: Final = 10_000
# Timed runs per figure: more narrow the spread, at a linear cost in time.
DEFAULT_REPEAT: Final = 5
QUICK_REPEAT: Final = 3
# Runs per peer thrown away first: they warm caches, allocator arenas and code paths.
WARMUP_RUNS: Final = 1
DEFAULT_POOL_SIZE: Final = 5
# The async-jobs line's job count, unless --jobs is under a tenth of it.
ASYNC_JOBS: Final = 100_000
# Jobs queued for the memory figure: enough that a pool's fixed costs vanish in the mean.
MEMORY_JOBS: Final = 5_000
# Floors for tiny --jobs values, so that every run still has something to measure.
MIN_JOBS: Final = 20
MIN_ROUND_TRIPS: Final = 20
# Each workload's jobs per run and round trips per run, as fractions of --jobs: slower
# jobs get fewer, so that every workload takes about as long as the others.
WORKLOAD_SCALES: Final = {
    "noop": (1.0, 1 / 25),
    "cpu": (1 / 5, 1 / 25),
    "sleep": (1 / 100, 1 / 200),
}
WORKLOAD_KEYS: Final = tuple(WORKLOAD_SCALES)
# The CPU workload's time per job, met by calibrating its loop at start-up.
CPU_JOB_SECONDS: Final = 10e-6
# Calibration: the first guess at the loop's length, how many times to correct it (each
# pass also warms the CPU up a little more), and how many timings each takes the best of.
CALIBRATION_ITERATIONS: Final = 1_000
CALIBRATION_PASSES: Final = 3
CALIBRATION_ROUNDS: Final = 7

PEER_KEYS: Final = ("oddjob", "executor", "tpe", "threadpool", "asyncio", "pebble", "loop")
# Why a peer may be missing here, noted under the table's title.
UNAVAILABLE: Final = {
    "executor": "oddjob.Executor: not in this version of oddjob, left out",
    "pebble": "pebble: not installed, left out (python -m pip install pebble)",
}
THROUGHPUT_MODES: Final = ("perform", "perform_many", "async_many")


# -- workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    job: Job
    jobs: int  # per run, the same for every peer
    round_trips: int  # per run of the round-trip mode
    detail: str  # what the job does, for the reader


def _seconds_per_call(job: Job, calls: int = 100, rounds: int = CALIBRATION_ROUNDS) -> float:
    """The best of ``rounds`` timings of ``calls`` calls of ``job``, per call."""
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(calls):
            job(i)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def calibrated_spin(target: float = CPU_JOB_SECONDS) -> tuple[Job, int, float]:
    """A pure-Python CPU job taking about ``target`` seconds on this machine.

    Returns:
        The job, its loop's length, and its measured seconds per call.
    """
    iterations = CALIBRATION_ITERATIONS
    for _ in range(CALIBRATION_PASSES):
        seconds = _seconds_per_call(make_spin(iterations))
        iterations = max(1, round(iterations * target / seconds))
    job = make_spin(iterations)
    return job, iterations, _seconds_per_call(job)


def make_workloads(keys: Sequence[str], jobs: int) -> list[Workload]:
    """The workloads named by ``keys`` (WORKLOAD_KEYS), sized for ``jobs`` no-op jobs."""
    workloads = []
    for key in keys:
        job: Job
        if key == "noop":
            job, title, detail = noop, "no-op", "pass"
        elif key == "cpu":
            job, iterations, seconds = calibrated_spin()
            title = "~10 µs CPU"
            detail = f"an empty loop of {iterations:,} iterations, {seconds * 1e6:.1f} µs a call"
        elif key == "sleep":
            seconds = _seconds_per_call(sleep_job, calls=10, rounds=3)
            job, title = sleep_job, "~1 ms I/O"
            detail = f"time.sleep({SLEEP_JOB_SECONDS}), {seconds * 1e3:.2f} ms a call"
        else:
            raise ValueError(f"unknown workload {key!r}")
        jobs_share, round_trips_share = WORKLOAD_SCALES[key]
        per_run = max(MIN_JOBS, round(jobs * jobs_share))
        round_trips = max(MIN_ROUND_TRIPS, round(jobs * round_trips_share))
        workloads.append(Workload(key, title, job, per_run, round_trips, detail))
    return workloads


# -- peers -------------------------------------------------------------------------------


def available_peers() -> dict[str, Callable[[], Peer]]:
    """A factory for each peer that can run here, by key, in table order."""
    factories: dict[str, Callable[[], Peer]] = {"oddjob": OddjobPeer}
    if OddjobExecutorPeer.available():
        factories["executor"] = OddjobExecutorPeer
    factories |= {"tpe": ExecutorPeer, "threadpool": ThreadPoolPeer, "asyncio": AsyncioPeer}
    if importlib.util.find_spec("pebble") is not None:
        factories["pebble"] = lambda: PebblePeer(importlib.import_module("pebble"))
    factories["loop"] = LoopPeer
    return factories


def make_peers(keys: Sequence[str] | None, executor: bool | None) -> tuple[list[Peer], list[str]]:
    """The peers to measure, in table order, and notes on those left out.

    Args:
        keys: the peers asked for (None: every peer that can run here).
        executor: take oddjob.Executor in (True, even if ``keys`` leaves it out), leave
            it out (False), or take it in when this oddjob has it and ``keys`` allows
            (None).

    Raises:
        ValueError: a peer asked for cannot run here.
    """
    factories = available_peers()
    if executor and "executor" not in factories:
        raise ValueError("--executor: this oddjob has no oddjob.Executor")
    wanted = set(PEER_KEYS if keys is None else keys)
    if executor:
        wanted.add("executor")
    elif executor is False:
        wanted.discard("executor")
    unavailable = [key for key in PEER_KEYS if key in wanted and key not in factories]
    if keys is not None and unavailable:
        raise ValueError(f"--peers: not available here: {', '.join(unavailable)}")
    notes = [UNAVAILABLE[key] for key in unavailable]
    return [factory() for key, factory in factories.items() if key in wanted], notes


# -- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One part of the table: a workload and a mode, for every peer, at a pool size."""

    workload: Workload
    mode: str  # a THROUGHPUT_MODES member, "round_trip", "queued_bytes" or "async_each"
    peers: tuple[Peer, ...]
    size: int
    jobs: int  # per run (round trips, for the round-trip mode)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample at or above ``fraction`` of them."""
    ordered = sorted(samples)
    # The tolerance keeps float noise (0.07 * 100 = 7.000000000000001) from a rank too far.
    rank = max(1, math.ceil(len(ordered) * fraction - 1e-9))
    return ordered[rank - 1]


def result_modes(mode: str) -> list[tuple[str, str]]:
    """(mode, unit) of each figure a run in ``mode`` gives."""
    if mode == "round_trip":
        return [("round_trip_p50", "s"), ("round_trip_p99", "s")]
    if mode == "queued_bytes":
        return [(mode, "B")]
    if mode == "async_each":
        return [(mode, "s")]
    return [(mode, "jobs/s")]


def run_once(cell: Cell, peer: Peer) -> tuple[float, ...]:
    """One run of ``peer`` in ``cell``: its figures, in the order of ``result_modes``."""
    job, size, n = cell.workload.job, cell.size, cell.jobs
    if cell.mode in THROUGHPUT_MODES:
        return (n / peer.throughput(cell.mode, job, n, size),)
    if cell.mode == "async_each":
        return (peer.throughput(cell.mode, job, n, size),)
    if cell.mode == "round_trip":
        samples = peer.round_trips(job, n, size)
        return percentile(samples, 0.50), percentile(samples, 0.99)
    if cell.mode == "queued_bytes":
        return (peer.queued_bytes(n, size),)
    raise ValueError(f"unknown mode {cell.mode!r}")


class Progress:
    """What is running, on stderr: one line rewritten in place on a terminal; elsewhere
    (a CI log) a line per part of the table rather than one per run."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._start = time.monotonic()
        self._shown = False

    def cell(self, cell: Cell) -> None:
        if not self._tty:
            print(
                f"bench: {cell.workload.title} / {cell.mode}: {len(cell.peers)} peers",
                file=self._stream,
                flush=True,
            )

    def run(self, cell: Cell, peer: Peer, repetition: int, repeat: int) -> None:
        self.done += 1
        if not self._tty:
            return
        what = "warm-up" if repetition < 0 else f"run {repetition + 1}/{repeat}"
        minutes, seconds = divmod(int(time.monotonic() - self._start), 60)
        text = (
            f"[{self.done}/{self.total} runs, {minutes}:{seconds:02}] "
            f"{cell.workload.title} / {cell.mode} / {peer.name}: {what}"
        )
        width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be erased
        self._stream.write(f"\r\033[K{text[:width]}")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown = False


def measure(cell: Cell, repeat: int, progress: Progress) -> tuple[list[Result], list[Failure]]:
    """Every peer's figures for ``cell``: a warm-up run each, then the peers in turn.

    A peer whose run raises is left out of the rest of the cell, its traceback printed
    on stderr: one library's bug must not cost the figures of a run minutes long.
    """
    progress.cell(cell)
    runs: dict[str, list[tuple[float, ...]]] = {peer.key: [] for peer in cell.peers}
    failures: list[Failure] = []
    for repetition in range(-WARMUP_RUNS, repeat):
        for peer in cell.peers:
            if peer.key not in runs:
                continue
            progress.run(cell, peer, repetition, repeat)
            try:
                figures = run_once(cell, peer)
            except Exception as exc:
                progress.clear()
                traceback.print_exc()
                del runs[peer.key]
                call = peer.calls[cell.mode]
                error = f"{type(exc).__name__}: {exc}"
                failures.append(
                    Failure(cell.workload.key, cell.mode, peer.name, peer.key, call, error)
                )
                continue
            if repetition >= 0:
                runs[peer.key].append(figures)
    results = [
        Result(
            cell.workload.key,
            mode,
            peer.name,
            peer.key,
            peer.calls[cell.mode],
            unit,
            Stat(tuple(run[index] for run in runs[peer.key])),
        )
        for peer in cell.peers
        if peer.key in runs
        for index, (mode, unit) in enumerate(result_modes(cell.mode))
    ]
    return results, failures


# -- the command -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The command line, with the defaults filled in."""

    pool_size: int
    jobs: int
    repeat: int
    quick: bool
    json: str | None
    plot: str | None

    @property
    def memory_jobs(self) -> int:
        return min(self.jobs, MEMORY_JOBS)

    @property
    def async_jobs(self) -> int:
        return min(ASYNC_JOBS, 10 * self.jobs)


def plan(workloads: Sequence[Workload], peers: Sequence[Peer], settings: Settings) -> list[Cell]:
    """Every part of the table, in order, each with the peers that take part in it."""
    size = settings.pool_size
    cells = []
    for workload in workloads:
        for mode in THROUGHPUT_MODES:
            cells.append(Cell(workload, mode, tuple(peers), size, workload.jobs))
        cells.append(Cell(workload, "round_trip", tuple(peers), size, workload.round_trips))
    noop_workload = next((w for w in workloads if w.key == "noop"), None)
    if noop_workload is not None:
        queued = tuple(p for p in peers if p.supports("queued_bytes"))
        cells.append(Cell(noop_workload, "queued_bytes", queued, size, settings.memory_jobs))
        with_async = tuple(p for p in peers if p.supports("async_each"))
        cpus = os.cpu_count() or 1
        cells.append(Cell(noop_workload, "async_each", with_async, cpus, settings.async_jobs))
    return [cell for cell in cells if cell.peers]


def _section_heading(cells: Sequence[Cell], index: int) -> list[str]:
    """The lines that open a new part of the table before ``cells[index]``, if any."""
    cell = cells[index]
    if cell.mode == "queued_bytes":
        return ["", f"memory · {cell.jobs:,} jobs queued per run", table_heading()]
    workload = cell.workload
    if index > 0 and cells[index - 1].workload is workload:
        return []
    return [
        "",
        f"{workload.title} · {workload.jobs:,} jobs per run, {workload.round_trips:,} round "
        f"trips · {workload.detail}",
        table_heading(),
    ]


def run(cells: Sequence[Cell], repeat: int, out: TextIO) -> tuple[list[Result], list[Failure]]:
    """Measure every cell, printing each part of the table as soon as it is known."""
    progress = Progress(sum(len(c.peers) * (repeat + WARMUP_RUNS) for c in cells), sys.stderr)
    results: list[Result] = []
    failures: list[Failure] = []
    try:
        with frozen_heap():
            for index, cell in enumerate(cells):
                measured, failed = measure(cell, repeat, progress)
                results += measured
                failures += failed
                progress.clear()
                if cell.mode != "async_each":  # that one gets a line of its own, at the end
                    lines = _section_heading(cells, index)
                    lines += section_lines(results, cell.workload.key, cell.mode, failures)
                    print("\n".join(lines), file=out, flush=True)
    finally:
        progress.clear()
    return results, failures


def environment() -> dict[str, Any]:
    """What the figures depend on besides the code: for the JSON file and the title."""

    def version(distribution: str) -> str | None:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "oddjob": oddjob.__version__,
        "core": _backend.core.IMPLEMENTATION,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_build": sys.version,
        "gil_enabled": gil_is_enabled(),
        "switch_interval": sys.getswitchinterval(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pebble": version("pebble"),
        "loky": version("loky"),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(
    path: str,
    results: Sequence[Result],
    failures: Sequence[Failure],
    env: dict[str, Any],
    settings: Settings,
    cells: Sequence[Cell],
    seconds: float,
    scaling: ScalingResult | None = None,
    backpressure: BackpressureResult | None = None,
    observability: ObservabilityResult | None = None,
    external: ExternalResult | None = None,
    processes: ProcessesResult | None = None,
    ray: RayResult | None = None,
) -> None:
    async_cell = next((c for c in cells if c.mode == "async_each"), None)
    described = {
        "pool_size": settings.pool_size,
        "jobs": settings.jobs,
        "repeat": settings.repeat,
        "warmup_runs": WARMUP_RUNS,
        "quick": settings.quick,
        "gc_disabled_while_timing": GC_OFF_WHILE_TIMING,
        "peers": list(dict.fromkeys(peer.name for cell in cells for peer in cell.peers)),
        "memory_jobs": settings.memory_jobs,
        "async_jobs": None if async_cell is None else async_cell.jobs,
        "async_jobs_pool_size": None if async_cell is None else async_cell.size,
        "seconds": round(seconds, 1),
    }
    workloads = [
        {
            "key": w.key,
            "title": w.title,
            "jobs": w.jobs,
            "round_trips": w.round_trips,
            "detail": w.detail,
        }
        for w in dict.fromkeys(cell.workload for cell in cells)
    ]
    data = to_json(results, env, described, workloads, failures)
    if scaling is not None:
        data["scaling"] = scaling.to_json()
    if backpressure is not None:
        data["backpressure"] = backpressure.to_json()
    if observability is not None:
        data["observability"] = observability.to_json()
    if external is not None:
        data["external"] = external.to_json()
    if processes is not None:
        data["processes"] = processes.to_json()
    if ray is not None:
        data["ray"] = ray.to_json()
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")


def _keys(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of some of ``choices``."""

    def parse(text: str) -> list[str]:
        keys = [key.strip().lower() for key in text.split(",") if key.strip()]
        if not keys or any(key not in choices for key in keys):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; got {text!r}"
            )
        return keys

    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oddjob",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="oddjob beside ThreadPoolExecutor and other peers, measured in one run",
        description="Benchmark oddjob beside its peers (python -m oddjob -h says how).",
    )
    bench.add_argument(
        "--pool-size",
        type=_positive,
        default=DEFAULT_POOL_SIZE,
        metavar="N",
        help=f"workers per pool ({DEFAULT_POOL_SIZE})",
    )
    bench.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help=f"no-op jobs per run ({DEFAULT_JOBS:,}; {QUICK_JOBS:,} with --quick); "
        "CPU jobs are a fifth of it, sleeping jobs a hundredth",
    )
    bench.add_argument(
        "--repeat",
        type=_positive,
        metavar="N",
        help=f"timed runs per figure ({DEFAULT_REPEAT}; {QUICK_REPEAT} with --quick)",
    )
    bench.add_argument("--quick", action="store_true", help="fewer jobs and runs")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="also draw a PNG chart (needs matplotlib)")
    bench.add_argument(
        "--peers",
        type=_keys(PEER_KEYS),
        metavar="LIST",
        help=f"measure only these: {','.join(PEER_KEYS)} (default: all that can run here)",
    )
    bench.add_argument(
        "--workloads",
        type=_keys(WORKLOAD_KEYS),
        metavar="LIST",
        help=f"run only these: {','.join(WORKLOAD_KEYS)} (default: all)",
    )
    bench.add_argument(
        "--executor",
        action=argparse.BooleanOptionalAction,
        help="measure oddjob.Executor too, or not (default: when this oddjob has it)",
    )
    bench.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        help="measure the speed-up of CPU-bound jobs over the bare loop with 1, 2 and 4 "
        "workers, and 1 against 2 submitters (default: when the GIL is disabled)",
    )
    bench.add_argument(
        "--backpressure",
        action=argparse.BooleanOptionalAction,
        help="measure a bounded queue against an unbounded one, how soon a blocked "
        "producer resumes, copy_context's cost and aio.run's round trip (default: on)",
    )
    bench.add_argument(
        "--observability",
        action=argparse.BooleanOptionalAction,
        help="measure what a telemetry handler costs no-op jobs, and stats() beside "
        "pool(name).jobs on a pool with 200,000 jobs queued (default: on)",
    )
    bench.add_argument(
        "--external",
        action=argparse.BooleanOptionalAction,
        help="measure how exact rate_limit is (2,000 jobs at 200 per second, about 9 s; "
        "400 with --quick) and how late retries run against their backoff (default: on)",
    )
    bench.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        help="measure backend='processes' beside ProcessPoolExecutor, loky and pebble: "
        "no-op jobs one call each and in batches, CPU-bound jobs against the bare loop, "
        "crash recovery and job_timeout's accuracy (default: on)",
    )
    bench.add_argument(
        "--ray",
        action=argparse.BooleanOptionalAction,
        help="measure backend='ray' beside plain Ray tasks: no-op jobs one at a time and "
        "2,000 at once on a local Ray cluster it starts (needs oddjob[ray]; default: off)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run ``python -m oddjob`` with ``argv`` (the arguments after the program name).

    Prints the table to ``out`` (stdout) and the progress line to stderr. Every pool,
    executor and event loop it starts is stopped again.

    Returns:
        The exit status: 0, or 1 if a peer failed somewhere (its tracebacks are on stderr).
    """
    stdout: TextIO = sys.stdout  # typeshed: TextIO | Any
    out = out or stdout
    cli = parser()
    args = cli.parse_args(argv)
    settings = Settings(
        pool_size=args.pool_size,
        jobs=args.jobs or (QUICK_JOBS if args.quick else DEFAULT_JOBS),
        repeat=args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT),
        quick=args.quick,
        json=args.json,
        plot=args.plot,
    )
    if settings.plot and importlib.util.find_spec("matplotlib") is None:
        cli.error(
            "--plot needs matplotlib, which is not installed here: "
            "python -m pip install matplotlib (or oddjob[plot])"
        )
    try:
        peers, notes = make_peers(args.peers, args.executor)
    except ValueError as exc:
        cli.error(str(exc))

    started = time.monotonic()
    env = environment()
    runs = "run" if settings.repeat == 1 else "runs"
    print(
        f"oddjob {env['oddjob']} on the {env['core']} core; {env['python_implementation']} "
        f"{env['python']} on {env['platform']}, {env['cpu_count']} CPUs\n"
        f"pool size {settings.pool_size}; median of {settings.repeat} {runs} after "
        f"{WARMUP_RUNS} warm-up; a fresh pool per run, its threads started before the "
        f"clock; gc {'off' if GC_OFF_WHILE_TIMING else 'on'} while timing",
        file=out,
    )
    for note in notes:
        print(f"({note})", file=out)
    workloads = make_workloads(args.workloads or WORKLOAD_KEYS, settings.jobs)
    cells = plan(workloads, peers, settings)
    results, failures = run(cells, settings.repeat, out)

    async_cell = next((c for c in cells if c.mode == "async_each"), None)
    lines = headline_lines(
        results,
        env["core"],
        settings.pool_size,
        0 if async_cell is None else async_cell.jobs,
        0 if async_cell is None else async_cell.size,
    )
    scaling: ScalingResult | None = None
    if wanted(args.scaling):
        scaling = measure_scaling(
            settings.jobs,
            settings.repeat,
            calibrated_spin,
            gil_enabled=gil_is_enabled(),
            progress=sys.stderr,
        )
        lines += ["", *scaling_lines(scaling)]
    backpressure: BackpressureResult | None = None
    if backpressure_wanted(args.backpressure):
        backpressure = measure_backpressure(
            settings.jobs, settings.repeat, settings.pool_size, progress=sys.stderr
        )
        lines += ["", *backpressure_lines(backpressure)]
    observability: ObservabilityResult | None = None
    if observability_wanted(args.observability):
        observability = measure_observability(
            settings.jobs, settings.repeat, settings.pool_size, progress=sys.stderr
        )
        lines += ["", *observability_lines(observability)]
    external: ExternalResult | None = None
    if external_wanted(args.external):
        external = measure_external(settings.pool_size, quick=settings.quick, progress=sys.stderr)
        lines += ["", *external_lines(external)]
    processes: ProcessesResult | None = None
    if processes_wanted(args.processes):
        processes = measure_processes(quick=settings.quick, progress=sys.stderr)
        lines += ["", *processes_lines(processes)]
    ray: RayResult | None = None
    if ray_wanted(args.ray):
        if ray_available():
            ray = measure_ray(quick=settings.quick, progress=sys.stderr)
            lines += ["", *ray_lines(ray)]
        else:
            lines += ["", RAY_MISSING]
    seconds = time.monotonic() - started
    print("", FOOTNOTE, "", *lines, f"({seconds:.0f} s in all)", sep="\n", file=out)
    if failures:
        print(f"{len(failures)} figures failed: see the tracebacks on stderr", file=out)
    if processes is not None and processes.failed:
        failed = ", ".join(processes.failed)
        print(f"process workers: {failed} failed: see the tracebacks on stderr", file=out)

    if settings.json:
        write_json(
            settings.json,
            results,
            failures,
            env,
            settings,
            cells,
            seconds,
            scaling,
            backpressure,
            observability,
            external,
            processes,
            ray,
        )
        print(f"results written to {settings.json}", file=out)
    if settings.plot:
        title = (
            f"oddjob {env['oddjob']} ({env['core']} core) beside its peers: pool size "
            f"{settings.pool_size}, {env['python_implementation']} {env['python']}, "
            f"{env['cpu_count']} CPUs"
        )
        plot(settings.plot, results, [(w.key, w.title) for w in workloads], title)
        print(f"chart written to {settings.plot}", file=out)
    return 1 if failures or (processes is not None and processes.failed) else 0
