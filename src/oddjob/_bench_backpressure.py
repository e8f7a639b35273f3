"""The backpressure section of ``python -m oddjob bench``: what the v2 features cost.

- Bounded queue: a producer much faster than its consumers (jobs that wait ~100 µs, as a
  call to a database or an API does) into a pool with ``max_queue=1000`` and into the same
  pool unbounded; jobs per second of the pair, from the first submit until every job has
  run. Backpressure is worth having only if it costs the pair little.
- Resume: how soon a producer blocked on a full queue runs again once room appears, from
  the last instruction of the job whose end frees the slot to the return of the blocked
  ``perform`` (p50 and p99).
- Context: no-op ``perform`` with ``copy_context=True`` (the default) against ``False``,
  and the bytes each queued fire-and-forget job holds with the context on and off.
- asyncio: the round trip of ``await aio.run(pool, job)`` against
  ``await loop.run_in_executor(ThreadPoolExecutor, job)``, one at a time (p50, p99).

Every figure is the median of the repetitions, peers taking turns within a repetition,
as in the main table.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import oddjob

from ._bench_peers import PRESTART_TIMEOUT, OddjobPeer, noop, quiet_gc
from ._bench_scaling import show_progress

__all__ = ["BackpressureResult", "backpressure_lines", "measure_backpressure"]

MAX_QUEUE: Final = 1000
CONSUMER_SLEEP: Final = 100e-6  # each consumer job waits this long, as an API call would
# Producer-consumer jobs per run, as a share of --jobs (the jobs are slow).
PAIR_JOBS_SHARE: Final = 1 / 2
MIN_PAIR_JOBS: Final = 2 * MAX_QUEUE
RESUME_SAMPLES: Final = 200
ROUND_TRIPS: Final = 400
CONTEXT_MEMORY_JOBS: Final = 20_000


@dataclass
class BackpressureResult:
    """What the section measured, one value per repetition."""

    repeat: int
    pool_size: int
    pair_jobs: int = 0
    pair: dict[str, list[float]] = field(default_factory=dict)  # "bounded"/"unbounded" -> jobs/s
    resume: list[float] = field(default_factory=list)  # seconds, every sample of every run
    perform: dict[bool, list[float]] = field(default_factory=dict)  # copy_context -> jobs/s
    perform_jobs: int = 0
    queued_bytes: dict[bool, float] = field(default_factory=dict)  # copy_context -> bytes/job
    round_trips: dict[str, list[float]] = field(default_factory=dict)  # peer -> seconds each

    def ratio(self, table: dict[Any, list[float]], top: Any, bottom: Any) -> float:
        return statistics.median(table[top]) / statistics.median(table[bottom])

    def to_json(self) -> dict[str, Any]:
        return {
            "repeat": self.repeat,
            "pool_size": self.pool_size,
            "bounded_pair": {
                "max_queue": MAX_QUEUE,
                "consumer_sleep_seconds": CONSUMER_SLEEP,
                "jobs": self.pair_jobs,
                "jobs_per_second": {k: round(statistics.median(v)) for k, v in self.pair.items()},
                "bounded_over_unbounded": round(self.ratio(self.pair, "bounded", "unbounded"), 3),
            },
            "resume_us": {
                "samples": len(self.resume),
                "p50": round(percentile(self.resume, 50) * 1e6, 1),
                "p99": round(percentile(self.resume, 99) * 1e6, 1),
            },
            "copy_context": {
                "jobs": self.perform_jobs,
                "jobs_per_second": {
                    str(k): round(statistics.median(v)) for k, v in self.perform.items()
                },
                "on_over_off": round(self.ratio(self.perform, True, False), 3),
                "queued_bytes": {str(k): round(v, 1) for k, v in self.queued_bytes.items()},
            },
            "aio_round_trip_us": {
                peer: {
                    "p50": round(percentile(samples, 50) * 1e6, 1),
                    "p99": round(percentile(samples, 99) * 1e6, 1),
                }
                for peer, samples in self.round_trips.items()
            },
        }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


# -- the runs ---------------------------------------------------------------------------


def _consume(_item: int = 0) -> None:
    time.sleep(CONSUMER_SLEEP)


def pair_run(n: int, size: int, max_queue: int | None) -> float:
    """Jobs per second of one producer putting ``n`` slow jobs into a fresh pool."""
    peer = OddjobPeer(max_queue=max_queue)
    with peer._pool(size) as name, quiet_gc():
        perform = oddjob.perform
        began = time.perf_counter()
        for i in range(n):
            perform(name, _consume, i)
        oddjob.stop(name)
        return n / (time.perf_counter() - began)


def resume_run(samples: int) -> list[float]:
    """Seconds from the end of a job that frees a slot in a full queue (max_queue=1,
    one worker) to the return of the producer's blocked perform, ``samples`` times."""
    freed: list[float] = []
    clock = time.perf_counter
    peer = OddjobPeer(max_queue=1)
    with peer._pool(1) as name:
        pool = oddjob.whereis(name)
        assert pool is not None
        queue = pool.queue
        out: list[float] = []
        for _ in range(samples):
            gate = threading.Event()
            running = threading.Event()

            def hold(gate: threading.Event = gate, running: threading.Event = running) -> None:
                running.set()
                gate.wait(PRESTART_TIMEOUT)
                freed.append(clock())  # the last instruction before the slot frees

            oddjob.perform(name, hold)
            if not running.wait(PRESTART_TIMEOUT):
                raise RuntimeError("the worker did not start the holding job")
            oddjob.perform(name, noop)  # the queue is full now

            def opener(gate: threading.Event = gate) -> None:
                deadline = time.monotonic() + PRESTART_TIMEOUT
                while queue.waiting() == 0 and time.monotonic() < deadline:
                    time.sleep(1e-4)  # until the producer is in line
                gate.set()

            helper = threading.Thread(target=opener)
            helper.start()
            oddjob.perform(name, noop)  # blocks until hold() ends and noop is taken
            out.append(clock() - freed[-1])
            helper.join(PRESTART_TIMEOUT)
    return out


def perform_run(n: int, size: int, copy_context: bool) -> float:
    """Jobs per second of ``n`` no-op performs into a fresh pool, until it has drained."""
    peer = OddjobPeer(copy_context=copy_context)
    return n / peer.perform(noop, n, size)


def aio_round_trips(n: int, size: int) -> dict[str, list[float]]:
    """Seconds of each of ``n`` awaited round trips from one event loop, for aio.run and
    for run_in_executor on a ThreadPoolExecutor of the same size, taking turns."""
    peer = OddjobPeer()

    async def measure(name: str, executor: ThreadPoolExecutor) -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        samples: dict[str, list[float]] = {"aio.run": [], "run_in_executor": []}
        run = oddjob.aio.run
        for _ in range(n):
            start = clock()
            await run(name, noop)
            middle = clock()
            await loop.run_in_executor(executor, noop)
            samples["aio.run"].append(middle - start)
            samples["run_in_executor"].append(clock() - middle)
        return samples

    with peer._pool(size) as name, ThreadPoolExecutor(size) as executor, quiet_gc():
        for _ in range(size):  # start the executor's threads before the clock
            executor.submit(noop).result(PRESTART_TIMEOUT)
        return asyncio.run(measure(name, executor))


def measure_backpressure(
    jobs: int, repeat: int, size: int, *, progress: TextIO | None = None
) -> BackpressureResult:
    """Run the section: ``jobs`` is --jobs, ``size`` the pool size."""
    result = BackpressureResult(repeat=repeat, pool_size=size)
    result.pair_jobs = max(MIN_PAIR_JOBS, round(jobs * PAIR_JOBS_SHARE))
    result.perform_jobs = jobs
    runs: list[tuple[str, Callable[[], None]]] = [
        (
            "unbounded",
            lambda: _add(result.pair, "unbounded", pair_run(result.pair_jobs, size, None)),
        ),
        (
            "bounded",
            lambda: _add(result.pair, "bounded", pair_run(result.pair_jobs, size, MAX_QUEUE)),
        ),
        ("resume", lambda: result.resume.extend(resume_run(RESUME_SAMPLES // repeat or 1))),
        ("context off", lambda: _add(result.perform, False, perform_run(jobs, size, False))),
        ("context on", lambda: _add(result.perform, True, perform_run(jobs, size, True))),
    ]
    for _, run in runs:  # warm-up, discarded
        run()
    result.pair.clear()
    result.resume.clear()
    result.perform.clear()
    for repetition in range(repeat):
        show_progress(progress, f"backpressure: run {repetition + 1} of {repeat}")
        for _, run in runs:
            run()
    show_progress(progress, "backpressure: bytes per queued job, asyncio round trips")
    for copy_context in (False, True):
        result.queued_bytes[copy_context] = OddjobPeer(copy_context=copy_context).queued_bytes(
            CONTEXT_MEMORY_JOBS, size
        )
    result.round_trips = aio_round_trips(ROUND_TRIPS, size)
    show_progress(progress, None)
    return result


def _add(table: dict[Any, list[float]], key: Any, value: float) -> None:
    table.setdefault(key, []).append(value)


# -- the report -------------------------------------------------------------------------


def backpressure_lines(result: BackpressureResult) -> list[str]:
    """The section as text."""
    pair = {k: statistics.median(v) for k, v in result.pair.items()}
    perform = {k: statistics.median(v) for k, v in result.perform.items()}
    trips = result.round_trips
    aio_p50 = percentile(trips["aio.run"], 50)
    tpe_p50 = percentile(trips["run_in_executor"], 50)
    return [
        f"Backpressure, context and asyncio (v2; pool size {result.pool_size}, "
        f"median of {result.repeat})",
        f"  bounded queue: one producer, jobs of {CONSUMER_SLEEP * 1e6:.0f} µs sleep, "
        f"{result.pair_jobs:,} per run: max_queue={MAX_QUEUE} {pair['bounded']:,.0f} jobs/s, "
        f"unbounded {pair['unbounded']:,.0f} jobs/s "
        f"({result.ratio(result.pair, 'bounded', 'unbounded'):.2f}x)",
        f"  blocked producer resumes after room appears: p50 "
        f"{percentile(result.resume, 50) * 1e6:.1f} µs, p99 "
        f"{percentile(result.resume, 99) * 1e6:.1f} µs ({len(result.resume)} samples)",
        f"  no-op perform, {result.perform_jobs:,} jobs: copy_context=True "
        f"{perform[True]:,.0f}/s, False {perform[False]:,.0f}/s "
        f"({result.ratio(result.perform, True, False):.2f}x); bytes per queued "
        f"fire-and-forget job {result.queued_bytes[True]:.0f} B with context, "
        f"{result.queued_bytes[False]:.0f} B without",
        f"  round trip from an event loop, {len(trips['aio.run'])} one at a time: "
        f"await aio.run {aio_p50 * 1e6:.1f} µs "
        f"(p99 {percentile(trips['aio.run'], 99) * 1e6:.1f}), "
        f"run_in_executor(ThreadPoolExecutor) {tpe_p50 * 1e6:.1f} µs "
        f"(p99 {percentile(trips['run_in_executor'], 99) * 1e6:.1f}); "
        f"aio.run/run_in_executor {aio_p50 / tpe_p50:.2f}x",
    ]


def wanted(flag: bool | None) -> bool:
    """--backpressure / --no-backpressure, else: on."""
    return True if flag is None else flag


if __name__ == "__main__":  # pragma: no cover - a quick look without the main table
    res = measure_backpressure(10_000, 3, 5, progress=sys.stderr)
    print("\n".join(backpressure_lines(res)))
