"""The process-workers section of ``python -m oddjob bench``: ``backend="processes"``
beside ``concurrent.futures.ProcessPoolExecutor``, loky and pebble, all in the same run on
the same machine, with ``POOL_SIZE`` worker processes each.

- One call per job: ``EACH_JOBS`` no-op jobs (``QUICK_EACH_JOBS`` with --quick), all
  submitted, then every result awaited: oddjob's ``async_perform`` + ``Job.result``,
  ``ProcessPoolExecutor.submit`` + ``result``, ``loky.ProcessPoolExecutor.submit`` +
  ``result`` and pebble's ``ProcessPool.schedule`` + ``result``, in jobs per second.
  What this measures is each library's cost per job across a process boundary (pickling,
  the pipe, the round trip back): the target is oddjob at ``EACH_TARGET`` times the best
  peer, which it can only reach by batching its pipe traffic while jobs are queued.
- Batches: ``BATCH_ITEMS`` no-op items (``QUICK_BATCH_ITEMS``) in one call:
  ``async_perform_many`` + ``oddjob.await_many``, against ``ProcessPoolExecutor.map``
  with each of ``CHUNKSIZES`` (1 is too slow to be the best: left out). The target is
  oddjob at least ``BATCH_TARGET`` times the best chunksize, without the caller choosing
  one.
- CPU-bound: ``CPU_JOBS`` jobs of pure-Python arithmetic, its length calibrated once at
  the start to take ``CPU_JOB_SECONDS`` here, on the pool against the bare loop calling
  the same function as often in this process: the speed-up (target ``CPU_TARGET``; with
  ``POOL_SIZE`` processes the ceiling is ``POOL_SIZE``, fewer if the machine has fewer
  cores, the parent's own threads needing some of them).
- Crash recovery (``start_method="forkserver"`` where the platform has it): a pool of 1;
  a job that records ``time.monotonic()`` in a file and SIGKILLs its own process, and
  right behind it a job that returns ``time.monotonic()`` as it starts in the replacement
  process. CLOCK_MONOTONIC is one clock for every process of the machine, so the
  difference is the time from the kill to the replacement taking a job: the death noticed,
  the job failed with ``WorkerCrashedError``, a process started and its first job sent.
  ``RECOVERY_RUNS`` runs, median and max (target: max at most ``RECOVERY_TARGET_MS``).
- job_timeout: a pool of 1 with ``job_timeout=JOB_TIMEOUT``; a job that would sleep
  ``SLEEP_SECONDS`` submitted to its idle worker; the time from the submit to
  ``JobTimeoutError`` in the caller, less ``JOB_TIMEOUT``, is how late the timeout is
  enforced (``TIMEOUT_RUNS`` runs, median and max; target: max at most
  ``TIMEOUT_TARGET_MS``). Each run waits for the replacement worker to run a job before
  the next one starts.

Every pool and executor is started and warmed before its clock starts (every worker
process has run a job: start-up is not timed) and stopped again after, whatever happens;
its throughput is the median of ``REPEAT`` timed runs on it, with the garbage collector
quiet. The jobs live in this module, so that worker processes started by any method can
import them. A peer that is not installed is noted and left out; one that fails is noted
with its error (and the traceback on stderr), and the command exits 1.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import oddjob

from ._bench_peers import PRESTART_TIMEOUT, exhaust, quiet_gc
from ._bench_scaling import show_progress

__all__ = [
    "PEERS",
    "ProcessesResult",
    "available_peers",
    "calibrated_arithmetic",
    "measure_processes",
    "processes_lines",
    "wanted",
]

POOL_SIZE: Final = 2
# The start method of every pool here (loky uses its own): "forkserver" starts workers
# fast and never forks this threaded process; "spawn" where the platform has no other.
START_METHOD: Final = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)
REPEAT: Final = 3  # timed runs per figure, on one warmed pool; the figure is their median
EACH_JOBS: Final = 5_000
QUICK_EACH_JOBS: Final = 1_000
EACH_TARGET: Final = 3.0
BATCH_ITEMS: Final = 100_000
QUICK_BATCH_ITEMS: Final = 20_000
CHUNKSIZES: Final = (10, 100, 200, 1000, 5000)
BATCH_TARGET: Final = 1.0
CPU_JOBS: Final = 200
CPU_JOB_SECONDS: Final = 0.001
CPU_TARGET: Final = 1.8
# Calibration: the first guess at the loop's length, the corrections, the best of rounds.
CALIBRATION_ITERATIONS: Final = 10_000
CALIBRATION_PASSES: Final = 3
CALIBRATION_ROUNDS: Final = 5
RECOVERY_RUNS: Final = 5
RECOVERY_TARGET_MS: Final = 200.0
JOB_TIMEOUT: Final = 0.2
SLEEP_SECONDS: Final = 10.0
TIMEOUT_RUNS: Final = 5
TIMEOUT_TARGET_MS: Final = 50.0
# The crash and timeout pools replace a worker each run: more than the default restart
# intensity (3 in 5 s) allows, which is not what is measured here.
MAX_RESTARTS: Final = 100
# How long any one wait may take before the section gives up on it (a broken peer fails,
# never hangs), and the warm-up: rounds of POOL_SIZE jobs of WARM_SLEEP seconds each, until
# every worker process has run one.
WAIT: Final = 60.0
WARM_ROUNDS: Final = 10
WARM_SLEEP: Final = 0.02
JOIN_TIMEOUT: Final = 30.0

_names = itertools.count()


# -- the jobs (module-level, so that worker processes import them) -----------------------


def noop(_item: object = None) -> None:
    """The no-op job: what is measured is the pool's own cost per job."""


def warm(seconds: float = WARM_SLEEP) -> int:
    """A warm-up job: long enough that idle workers take the others; the worker's pid."""
    time.sleep(seconds)
    return os.getpid()


def arithmetic(iterations: int) -> int:
    """Pure-Python CPU work (it holds the GIL): a fixed amount of integer arithmetic."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def clock() -> float:
    """time.monotonic() where the job runs: one clock for every process of the machine."""
    return time.monotonic()


def kill_self(path: str) -> None:
    """Write time.monotonic() to ``path``, then SIGKILL the process running the job."""
    Path(path).write_text(repr(time.monotonic()), encoding="utf-8")
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def sleep(seconds: float) -> None:
    """A job that runs past the pool's job_timeout."""
    time.sleep(seconds)


# -- the peers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    """A library measured in the one-call-per-job part."""

    key: str  # in the JSON
    name: str  # the row label
    call: str  # what is timed
    module: str | None  # what it needs installed (None: the standard library)


PEERS: Final = (
    PeerInfo("oddjob", "oddjob", "async_perform + Job.result", None),
    PeerInfo("process_pool_executor", "ProcessPoolExecutor", "submit + result", None),
    PeerInfo("loky", "loky ProcessPoolExecutor", "submit + result", "loky"),
    PeerInfo("pebble", "pebble ProcessPool", "schedule + result", "pebble"),
)
_BY_KEY: Final = {peer.key: peer for peer in PEERS}


def _missing_note(module: str) -> str:
    return f"not installed, left out (python -m pip install {module})"


def available_peers() -> tuple[list[PeerInfo], dict[str, str]]:
    """The peers that can run here, in table order, and why each other one cannot."""
    peers, left_out = [], {}
    for peer in PEERS:
        if peer.module is not None and importlib.util.find_spec(peer.module) is None:
            left_out[peer.key] = _missing_note(peer.module)
        else:
            peers.append(peer)
    return peers, left_out


def _context() -> Any:
    return multiprocessing.get_context(START_METHOD)


def _warm(run_round: Callable[[], Iterable[int]], size: int) -> None:
    """Rounds of warm-up jobs until ``size`` distinct worker processes have run one."""
    pids: set[int] = set()
    for _ in range(WARM_ROUNDS):
        pids.update(run_round())
        if len(pids) >= size:
            return
    raise RuntimeError(f"only {len(pids)} of {size} worker processes ran a warm-up job")


@contextmanager
def _oddjob_pool(size: int, **options: Any) -> Iterator[str]:
    """A fresh, warmed process pool's name while the block runs."""
    name = f"bench-processes-{next(_names)}"
    while oddjob.whereis(name) is not None:  # never take over a pool of the caller's
        name = f"bench-processes-{next(_names)}"
    options.setdefault("start_method", START_METHOD)
    pool = oddjob.Pool(name, backend="processes", pool_size=size, **options).start()
    try:
        _warm(
            lambda: oddjob.await_many(
                [oddjob.async_perform(name, warm) for _ in range(size)], timeout=PRESTART_TIMEOUT
            ),
            size,
        )
        yield name
    finally:
        if pool.running:
            pool.stop(cancel_pending=True)


@contextmanager
def _executor(make: Callable[[], Any], size: int) -> Iterator[Any]:
    """A fresh, warmed concurrent.futures-style executor while the block runs."""
    executor = make()
    try:
        _warm(
            lambda: [
                f.result(PRESTART_TIMEOUT) for f in [executor.submit(warm) for _ in range(size)]
            ],
            size,
        )
        yield executor
    finally:
        executor.shutdown(wait=True)


@contextmanager
def _pebble_pool(size: int) -> Iterator[Any]:
    pebble: Any = importlib.import_module("pebble")  # an optional peer
    pool = pebble.ProcessPool(max_workers=size, context=_context())
    try:
        _warm(
            lambda: [
                f.result(PRESTART_TIMEOUT) for f in [pool.schedule(warm) for _ in range(size)]
            ],
            size,
        )
        yield pool
    finally:
        pool.close()
        pool.join(JOIN_TIMEOUT)
        if pool.active:  # pragma: no cover - a pool that would not drain
            pool.stop()
            pool.join(JOIN_TIMEOUT)


def _time_oddjob_each(name: str, n: int) -> float:
    async_perform = oddjob.async_perform
    with quiet_gc():
        began = time.perf_counter()
        jobs = [async_perform(name, noop) for _ in range(n)]
        for job in jobs:
            job.result(WAIT)
        return time.perf_counter() - began


def _time_submit_each(submit: Callable[..., Any], n: int) -> float:
    """``submit`` is an executor's own bound method: the loop a user of it writes."""
    with quiet_gc():
        began = time.perf_counter()
        futures = [submit(noop) for _ in range(n)]
        for future in futures:
            future.result(WAIT)
        return time.perf_counter() - began


def each_run(key: str, n: int, size: int, repeat: int) -> list[float]:
    """``repeat`` timed runs of ``n`` no-op jobs, one call each, on one warmed pool of
    ``key`` (a PEERS key): the seconds of each run."""
    if key == "oddjob":
        with _oddjob_pool(size) as name:
            return [_time_oddjob_each(name, n) for _ in range(repeat)]
    if key == "process_pool_executor":
        with _executor(lambda: ProcessPoolExecutor(size, mp_context=_context()), size) as ex:
            return [_time_submit_each(ex.submit, n) for _ in range(repeat)]
    if key == "loky":
        loky: Any = importlib.import_module("loky")  # an optional peer
        with _executor(lambda: loky.ProcessPoolExecutor(max_workers=size), size) as ex:
            return [_time_submit_each(ex.submit, n) for _ in range(repeat)]
    if key == "pebble":
        with _pebble_pool(size) as pool:
            return [_time_submit_each(pool.schedule, n) for _ in range(repeat)]
    raise ValueError(f"unknown peer {key!r}")


def batch_runs(items: int, size: int, repeat: int) -> tuple[list[float], dict[int, list[float]]]:
    """Seconds of each run of ``items`` no-op items: oddjob's, and map's by chunksize."""
    with _oddjob_pool(size) as name:
        ours = []
        for _ in range(repeat):
            with quiet_gc():
                began = time.perf_counter()
                oddjob.await_many(oddjob.async_perform_many(name, range(items), noop), WAIT)
                ours.append(time.perf_counter() - began)
    maps: dict[int, list[float]] = {}
    with _executor(lambda: ProcessPoolExecutor(size, mp_context=_context()), size) as ex:
        for chunksize in CHUNKSIZES:
            maps[chunksize] = []
            for _ in range(repeat):
                with quiet_gc():
                    began = time.perf_counter()
                    exhaust(ex.map(noop, range(items), timeout=WAIT, chunksize=chunksize))
                    maps[chunksize].append(time.perf_counter() - began)
    return ours, maps


def _seconds_per_call(iterations: int, rounds: int = CALIBRATION_ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        arithmetic(iterations)
        best = min(best, time.perf_counter() - began)
    return best


def calibrated_arithmetic(target: float = CPU_JOB_SECONDS) -> tuple[int, float]:
    """The length of ``arithmetic`` that takes about ``target`` seconds here, and its
    measured seconds per call."""
    iterations = CALIBRATION_ITERATIONS
    for _ in range(CALIBRATION_PASSES):
        iterations = max(1, round(iterations * target / _seconds_per_call(iterations)))
    return iterations, _seconds_per_call(iterations)


def cpu_runs(jobs: int, iterations: int, size: int, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds of each run of ``jobs`` arithmetic jobs: in a bare loop here, and on a pool
    of ``size`` processes (submitted one call each, then awaited together), in turns."""
    loop, pooled = [], []
    with _oddjob_pool(size) as name:
        for _ in range(repeat):
            with quiet_gc():
                began = time.perf_counter()
                for _ in range(jobs):
                    arithmetic(iterations)
                loop.append(time.perf_counter() - began)
            with quiet_gc():
                began = time.perf_counter()
                handles = [oddjob.async_perform(name, arithmetic, iterations) for _ in range(jobs)]
                oddjob.await_many(handles, WAIT)
                pooled.append(time.perf_counter() - began)
    return loop, pooled


class _ReplacementNoise(logging.Filter):
    """Drops the warning the pool logs as it replaces a worker process that died or was
    killed for its timeout: the crash and timeout runs do that on purpose, every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).endswith("replacing the worker")


@contextmanager
def _quiet_replacements() -> Iterator[None]:
    logger, noise = logging.getLogger("oddjob"), _ReplacementNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def recovery_runs(runs: int) -> list[float]:
    """Seconds from a worker's SIGKILL to its replacement starting the next job, each run."""
    samples = []
    with (
        tempfile.TemporaryDirectory(prefix="oddjob-bench-") as directory,
        _oddjob_pool(1, max_restarts=MAX_RESTARTS) as name,
        _quiet_replacements(),
    ):
        path = os.path.join(directory, "killed")
        for _ in range(runs):
            killed = oddjob.async_perform(name, kill_self, path)
            started = oddjob.async_perform(name, clock)
            error = killed.exception(WAIT)
            if not isinstance(error, oddjob.WorkerCrashedError):
                raise RuntimeError(f"the killed job ended with {error!r}, not WorkerCrashedError")
            started_at = started.result(WAIT)
            samples.append(started_at - float(Path(path).read_text(encoding="utf-8")))
    return samples


def timeout_runs(runs: int) -> list[float]:
    """Seconds by which JobTimeoutError reached the caller after the job_timeout, each run."""
    samples = []
    with (
        _oddjob_pool(1, job_timeout=JOB_TIMEOUT, max_restarts=MAX_RESTARTS) as name,
        _quiet_replacements(),
    ):
        for _ in range(runs):
            began = time.perf_counter()
            job = oddjob.async_perform(name, sleep, SLEEP_SECONDS)
            error = job.exception(SLEEP_SECONDS + WAIT)
            seconds = time.perf_counter() - began
            if not isinstance(error, oddjob.JobTimeoutError):
                raise RuntimeError(f"the overdue job ended with {error!r}, not JobTimeoutError")
            samples.append(seconds - JOB_TIMEOUT)
            oddjob.async_perform(name, noop).result(WAIT)  # the replacement is up and idle
    return samples


# -- the result --------------------------------------------------------------------------


def _median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def _ms(samples: Sequence[float]) -> dict[str, Any]:
    return {
        "median": round(_median(samples) * 1e3, 3),
        "max": round(max(samples) * 1e3, 3),
        "samples": [round(s * 1e3, 3) for s in samples],
    }


@dataclass
class ProcessesResult:
    """What the section measured."""

    pool_size: int
    start_method: str
    repeat: int
    cpu_count: int | None
    each_jobs: int = 0
    each_seconds: dict[str, list[float]] = field(default_factory=dict)  # by PEERS key
    left_out: dict[str, str] = field(default_factory=dict)  # by PEERS key: why
    failed: dict[str, str] = field(default_factory=dict)  # by PEERS key: the error
    batch_items: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    map_seconds: dict[int, list[float]] = field(default_factory=dict)  # by chunksize
    cpu_jobs: int = 0
    cpu_iterations: int = 0
    cpu_job_seconds: float = 0.0  # one call, measured here
    loop_seconds: list[float] = field(default_factory=list)
    pooled_seconds: list[float] = field(default_factory=list)
    recovery: list[float] = field(default_factory=list)  # seconds, one per run
    lateness: list[float] = field(default_factory=list)  # seconds, one per run

    def each_rate(self, key: str) -> float | None:
        """Jobs per second of a peer in the one-call-per-job part (None: not measured)."""
        seconds = self.each_seconds.get(key)
        return None if not seconds else self.each_jobs / _median(seconds)

    @property
    def best_peer(self) -> str | None:
        rates = {k: self.each_rate(k) for k in self.each_seconds if k != "oddjob"}
        measured = {k: rate for k, rate in rates.items() if rate is not None}
        return max(measured, key=measured.__getitem__, default=None)

    @property
    def each_ratio(self) -> float | None:
        best, ours = self.best_peer, self.each_rate("oddjob")
        if best is None or ours is None:
            return None
        return ours / (self.each_rate(best) or 1.0)

    @property
    def each_met(self) -> bool:
        return self.each_ratio is not None and self.each_ratio >= EACH_TARGET

    @property
    def batch_rate(self) -> float:
        return self.batch_items / _median(self.batch_seconds)

    def map_rate(self, chunksize: int) -> float:
        return self.batch_items / _median(self.map_seconds[chunksize])

    @property
    def best_chunksize(self) -> int:
        return max(self.map_seconds, key=self.map_rate)

    @property
    def batch_ratio(self) -> float:
        return self.batch_rate / self.map_rate(self.best_chunksize)

    @property
    def batch_met(self) -> bool:
        return self.batch_ratio >= BATCH_TARGET

    @property
    def cpu_speedup(self) -> float:
        return _median(self.loop_seconds) / _median(self.pooled_seconds)

    @property
    def cpu_met(self) -> bool:
        return self.cpu_speedup >= CPU_TARGET

    @property
    def recovery_met(self) -> bool:
        return max(self.recovery) * 1e3 <= RECOVERY_TARGET_MS

    @property
    def timeout_met(self) -> bool:
        return max(self.lateness) * 1e3 <= TIMEOUT_TARGET_MS

    def to_json(self) -> dict[str, Any]:
        def rate(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        ratio = self.each_ratio
        return {
            "pool_size": self.pool_size,
            "start_method": self.start_method,
            "repeat": self.repeat,
            "cpu_count": self.cpu_count,
            "one_call_per_job": {
                "jobs": self.each_jobs,
                "calls": {peer.key: peer.call for peer in PEERS},
                "jobs_per_second": {peer.key: rate(self.each_rate(peer.key)) for peer in PEERS},
                "left_out": dict(self.left_out),
                "failed": dict(self.failed),
                "best_peer": self.best_peer,
                "oddjob_over_best_peer": None if ratio is None else round(ratio, 3),
                "target": EACH_TARGET,
                "meets_target": self.each_met,
            },
            "batches": {
                "items": self.batch_items,
                "oddjob_call": "async_perform_many + await_many",
                "oddjob_jobs_per_second": round(self.batch_rate, 1),
                "map_jobs_per_second": {
                    str(c): round(self.map_rate(c), 1) for c in self.map_seconds
                },
                "best_chunksize": self.best_chunksize,
                "oddjob_over_best_map": round(self.batch_ratio, 3),
                "target": BATCH_TARGET,
                "meets_target": self.batch_met,
            },
            "cpu_bound": {
                "jobs": self.cpu_jobs,
                "iterations": self.cpu_iterations,
                "job_ms": round(self.cpu_job_seconds * 1e3, 3),
                "loop_seconds": round(_median(self.loop_seconds), 4),
                "oddjob_seconds": round(_median(self.pooled_seconds), 4),
                "speedup_over_loop": round(self.cpu_speedup, 3),
                "target": CPU_TARGET,
                "meets_target": self.cpu_met,
            },
            "crash_recovery": {
                "start_method": self.start_method,
                "pool_size": 1,
                "runs": len(self.recovery),
                "ms": _ms(self.recovery),
                "target_max_ms": RECOVERY_TARGET_MS,
                "meets_target": self.recovery_met,
            },
            "job_timeout": {
                "job_timeout": JOB_TIMEOUT,
                "job_seconds": SLEEP_SECONDS,
                "pool_size": 1,
                "runs": len(self.lateness),
                "lateness_ms": _ms(self.lateness),
                "target_max_ms": TIMEOUT_TARGET_MS,
                "meets_target": self.timeout_met,
            },
        }


def measure_processes(*, quick: bool = False, progress: TextIO | None = None) -> ProcessesResult:
    """Run the section; ``quick``: fewer jobs in the throughput parts."""
    size = POOL_SIZE
    result = ProcessesResult(
        pool_size=size, start_method=START_METHOD, repeat=REPEAT, cpu_count=os.cpu_count()
    )
    result.each_jobs = QUICK_EACH_JOBS if quick else EACH_JOBS
    result.batch_items = QUICK_BATCH_ITEMS if quick else BATCH_ITEMS
    peers, result.left_out = available_peers()
    for peer in peers:
        show_progress(progress, f"processes: {result.each_jobs:,} no-op jobs, {peer.name}")
        try:
            result.each_seconds[peer.key] = each_run(peer.key, result.each_jobs, size, REPEAT)
        except Exception as exc:
            if peer.key == "oddjob":
                raise
            traceback.print_exc()
            result.failed[peer.key] = f"{type(exc).__name__}: {exc}"
    show_progress(progress, f"processes: batches of {result.batch_items:,} no-op items")
    result.batch_seconds, result.map_seconds = batch_runs(result.batch_items, size, REPEAT)
    show_progress(progress, f"processes: {CPU_JOBS} CPU-bound jobs of ~1 ms")
    result.cpu_jobs = CPU_JOBS
    result.cpu_iterations, result.cpu_job_seconds = calibrated_arithmetic()
    result.loop_seconds, result.pooled_seconds = cpu_runs(
        CPU_JOBS, result.cpu_iterations, size, REPEAT
    )
    show_progress(progress, f"processes: {RECOVERY_RUNS} workers killed ({START_METHOD})")
    result.recovery = recovery_runs(RECOVERY_RUNS)
    show_progress(progress, f"processes: {TIMEOUT_RUNS} jobs past job_timeout={JOB_TIMEOUT:g}")
    result.lateness = timeout_runs(TIMEOUT_RUNS)
    show_progress(progress, None)
    return result


# -- the report --------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def processes_lines(result: ProcessesResult) -> list[str]:
    """The section as text."""
    width = max(len(f"{peer.name} {peer.call}") for peer in PEERS)
    runs = "run" if result.repeat == 1 else "runs"
    lines = [
        f"Process workers (v2; backend='processes', {result.pool_size} worker processes, "
        f"start_method={result.start_method!r}, {result.cpu_count} CPUs; median of "
        f"{result.repeat} {runs} on a warmed pool)",
        f"  one call per job: {result.each_jobs:,} no-op jobs submitted, then every result",
    ]
    for peer in PEERS:
        label = f"{peer.name} {peer.call}"
        rate = result.each_rate(peer.key)
        if rate is not None:
            text = f"{rate:>10,.0f} jobs/s"
        elif peer.key in result.failed:
            text = f"failed: {result.failed[peer.key]}"
        else:
            text = result.left_out.get(peer.key, "not measured")
        lines.append(f"    {label:<{width}}  {text}")
    ratio, best = result.each_ratio, result.best_peer
    if ratio is None or best is None:
        lines.append("    oddjob over the best peer: not measured (no peer ran)")
    else:
        lines.append(
            f"    oddjob over the best peer ({_BY_KEY[best].name}): {ratio:.2f}x "
            f"(target >= {EACH_TARGET:g}x: {_verdict(result.each_met)})"
        )
    label = "oddjob async_perform_many + await_many"
    lines += [
        f"  batches: {result.batch_items:,} no-op items in one call",
        f"    {label:<{width}}  {result.batch_rate:>10,.0f} jobs/s",
    ]
    for chunksize in result.map_seconds:
        label = f"ProcessPoolExecutor.map chunksize={chunksize}"
        lines.append(f"    {label:<{width}}  {result.map_rate(chunksize):>10,.0f} jobs/s")
    lines += [
        f"    oddjob over the best map (chunksize={result.best_chunksize}): "
        f"{result.batch_ratio:.2f}x (target >= {BATCH_TARGET:g}x: {_verdict(result.batch_met)})",
        f"  CPU-bound: {result.cpu_jobs} jobs of {result.cpu_job_seconds * 1e3:.2f} ms of "
        f"pure-Python arithmetic ({result.cpu_iterations:,} iterations): the single-thread "
        f"loop {_median(result.loop_seconds) * 1e3:.1f} ms, oddjob's {result.pool_size} "
        f"processes {_median(result.pooled_seconds) * 1e3:.1f} ms: {result.cpu_speedup:.2f}x "
        f"(target >= {CPU_TARGET:g}x: {_verdict(result.cpu_met)}; "
        f"{result.cpu_count} CPUs here)",
        f"  crash recovery ({result.start_method}, pool of 1): SIGKILL of the worker to its "
        f"replacement starting the next job: median "
        f"{_median(result.recovery) * 1e3:.1f} ms, max {max(result.recovery) * 1e3:.1f} ms "
        f"over {len(result.recovery)} (target <= {RECOVERY_TARGET_MS:g} ms: "
        f"{_verdict(result.recovery_met)})",
        f"  job_timeout={JOB_TIMEOUT:g} on a {SLEEP_SECONDS:g} s job (pool of 1): "
        f"JobTimeoutError late by median {_median(result.lateness) * 1e3:.1f} ms, max "
        f"{max(result.lateness) * 1e3:.1f} ms over {len(result.lateness)} "
        f"(target <= {TIMEOUT_TARGET_MS:g} ms: {_verdict(result.timeout_met)})",
    ]
    return lines


def wanted(flag: bool | None) -> bool:
    """--processes / --no-processes, else: on."""
    return True if flag is None else flag


if __name__ == "__main__":  # pragma: no cover - a quick look without the main table
    quick = "--quick" in sys.argv[1:]
    print("\n".join(processes_lines(measure_processes(quick=quick, progress=sys.stderr))))
