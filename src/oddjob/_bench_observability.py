"""The observability section of ``python -m oddjob bench``: what stats and telemetry cost.

- Telemetry: no-op ``perform`` with no telemetry handler attached against the same with
  one no-op handler attached to ``job.stop`` (which also makes the core time every job),
  in jobs per second; the same for ``async_perform_many`` + ``await_many``. The target
  is a ratio (with a handler over without) of at least ``TELEMETRY_TARGET``.
- ``stats()``: how long ``oddjob.stats(pool)`` takes on a pool holding ``QUEUED_JOBS``
  queued jobs, its workers blocked on an Event so that the queue stays as it is: each
  call timed alone, the median of ``STATS_CALLS`` calls; and the same before the jobs are
  queued. It is O(1) (it never walks the queue); the target is at most ``STATS_TARGET_US``
  µs.
- For contrast, ``oddjob.pool(name).jobs`` on the same queue: that snapshot copies every
  queued job, so it grows with the queue.

Every figure is the median of the repetitions, a fresh pool per run, the GC off while
timing, the two sides of each pair taking turns within a repetition, as in the main table.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import oddjob
from oddjob import telemetry

from ._bench_peers import Blocker, OddjobPeer, noop, quiet_gc
from ._bench_scaling import show_progress

__all__ = ["ObservabilityResult", "measure_observability", "observability_lines", "wanted"]

HANDLER_ID: Final = "oddjob-bench-observability"
HANDLER_EVENT: Final = "job.stop"
# With a handler attached, no-op jobs/s should stay at least this share of those without.
TELEMETRY_TARGET: Final = 0.50
# Queued jobs behind the blocked workers for the stats() and snapshot figures, unless
# --jobs is under a twentieth of it (the harness's tests run tiny queues).
QUEUED_JOBS: Final = 200_000
QUEUED_JOBS_SCALE: Final = 20
MIN_QUEUED_JOBS: Final = 1_000
STATS_CALLS: Final = 2_000  # timed one by one, per run
STATS_TARGET_US: Final = 20.0
SNAPSHOT_CALLS: Final = 3  # per run: each copies the whole queue
TELEMETRY_SIDES: Final = ("none", "handler")
TELEMETRY_MODES: Final = ("perform", "async_many")


@dataclass
class ObservabilityResult:
    """What the section measured, one value per repetition."""

    repeat: int
    pool_size: int
    jobs: int = 0  # per throughput run
    queued_jobs: int = 0
    # mode ("perform" / "async_many") -> side ("none" / "handler") -> jobs/s per run
    throughput: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    stats: list[float] = field(default_factory=list)  # seconds: the median call of each run
    stats_p99: list[float] = field(default_factory=list)  # seconds: the p99 call of each run
    stats_empty: list[float] = field(default_factory=list)  # seconds: the same, none queued
    snapshot: list[float] = field(default_factory=list)  # seconds: the median call of each run

    def rate(self, mode: str, side: str) -> float:
        return statistics.median(self.throughput[mode][side])

    def ratio(self, mode: str) -> float:
        return self.rate(mode, "handler") / self.rate(mode, "none")

    def to_json(self) -> dict[str, Any]:
        stats_us = statistics.median(self.stats) * 1e6
        return {
            "repeat": self.repeat,
            "pool_size": self.pool_size,
            "telemetry": {
                "handler_event": HANDLER_EVENT,
                "jobs": self.jobs,
                "target_handler_over_none": TELEMETRY_TARGET,
                **{
                    mode: {
                        "jobs_per_second": {
                            side: round(self.rate(mode, side)) for side in TELEMETRY_SIDES
                        },
                        "handler_over_none": round(self.ratio(mode), 3),
                        "meets_target": self.ratio(mode) >= TELEMETRY_TARGET,
                    }
                    for mode in TELEMETRY_MODES
                },
            },
            "stats_us": {
                "queued_jobs": self.queued_jobs,
                "calls_per_run": STATS_CALLS,
                "median": round(stats_us, 2),
                "p99": round(statistics.median(self.stats_p99) * 1e6, 2),
                "median_none_queued": round(statistics.median(self.stats_empty) * 1e6, 2),
                "target": STATS_TARGET_US,
                "meets_target": stats_us <= STATS_TARGET_US,
            },
            "jobs_snapshot_ms": {
                "queued_jobs": self.queued_jobs,
                "calls_per_run": SNAPSHOT_CALLS,
                "median": round(statistics.median(self.snapshot) * 1e3, 2),
            },
        }


# -- the runs ---------------------------------------------------------------------------


def _noop_handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    """The cheapest handler there is: what is measured is the call of it."""


@contextmanager
def attached(handler: bool) -> Iterator[None]:
    """A no-op handler on job.stop while the block runs (``handler``), or none."""
    if not handler:
        yield
        return
    telemetry.attach(HANDLER_ID, [HANDLER_EVENT], _noop_handler)
    try:
        yield
    finally:
        telemetry.detach(HANDLER_ID)


def throughput_run(mode: str, n: int, size: int, handler: bool) -> float:
    """Jobs per second of ``n`` no-op jobs in ``mode`` into a fresh pool, until all ran."""
    peer = OddjobPeer()
    with attached(handler):
        return n / peer.throughput(mode, noop, n, size)


def _median_call(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Seconds of the median and the p99 of ``calls`` calls of ``call``, each timed alone."""
    clock = time.perf_counter
    samples = []
    with quiet_gc():
        for _ in range(calls):
            start = clock()
            call()
            samples.append(clock() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, len(samples) * 99 // 100)]


@dataclass(frozen=True)
class QueueRun:
    """Seconds of one run's median and p99 ``stats()`` call with the jobs queued, of its
    median call before they were, and of its median ``pool(name).jobs``."""

    stats: float
    stats_p99: float
    stats_empty: float
    snapshot: float


def queue_run(queued: int, size: int) -> QueueRun:
    """stats() and pool(name).jobs on a fresh pool of ``size`` blocked workers, with
    ``queued`` no-op jobs queued behind them (and stats() before they are)."""
    peer = OddjobPeer()
    blocker = Blocker(size)
    with peer._pool(size) as name:
        for _ in range(size):
            oddjob.perform(name, blocker)
        with blocker.holding():
            empty, _ = _median_call(lambda: oddjob.stats(name), STATS_CALLS)
            oddjob.perform_many(name, range(queued), noop)
            seen = oddjob.stats(name).queued
            if seen != queued:
                raise RuntimeError(f"stats() says {seen:,} jobs are queued, not {queued:,}")
            median, p99 = _median_call(lambda: oddjob.stats(name), STATS_CALLS)
            snapshot, _ = _median_call(lambda: oddjob.pool(name).jobs, SNAPSHOT_CALLS)
    return QueueRun(median, p99, empty, snapshot)


def queued_jobs(jobs: int) -> int:
    """The queue the stats() and snapshot figures are taken on, for --jobs ``jobs``."""
    return max(MIN_QUEUED_JOBS, min(QUEUED_JOBS, QUEUED_JOBS_SCALE * jobs))


def measure_observability(
    jobs: int, repeat: int, size: int, *, progress: TextIO | None = None
) -> ObservabilityResult:
    """Run the section: ``jobs`` is --jobs, ``size`` the pool size."""
    result = ObservabilityResult(
        repeat=repeat, pool_size=size, jobs=jobs, queued_jobs=queued_jobs(jobs)
    )

    def throughput(mode: str, handler: bool) -> Callable[[], None]:
        side = TELEMETRY_SIDES[handler]

        def run() -> None:
            rate = throughput_run(mode, jobs, size, handler)
            result.throughput.setdefault(mode, {}).setdefault(side, []).append(rate)

        return run

    def queue() -> None:
        run = queue_run(result.queued_jobs, size)
        result.stats.append(run.stats)
        result.stats_p99.append(run.stats_p99)
        result.stats_empty.append(run.stats_empty)
        result.snapshot.append(run.snapshot)

    runs = [throughput(mode, handler) for mode in TELEMETRY_MODES for handler in (False, True)]
    runs.append(queue)
    for run in runs:  # warm-up, discarded
        run()
    result.throughput.clear()
    result.stats.clear()
    result.stats_p99.clear()
    result.stats_empty.clear()
    result.snapshot.clear()
    for repetition in range(repeat):
        show_progress(progress, f"observability: run {repetition + 1} of {repeat}")
        for run in runs:
            run()
    show_progress(progress, None)
    return result


# -- the report -------------------------------------------------------------------------


def observability_lines(result: ObservabilityResult) -> list[str]:
    """The section as text."""
    lines = [
        f"Observability (v2; pool size {result.pool_size}, median of {result.repeat})",
    ]
    calls = {"perform": "perform", "async_many": "async_perform_many+await_many"}
    for mode in TELEMETRY_MODES:
        ratio = result.ratio(mode)
        lines.append(
            f"  no-op {calls[mode]}, {result.jobs:,} jobs: no telemetry handler "
            f"{result.rate(mode, 'none'):,.0f}/s, a no-op handler on {HANDLER_EVENT} "
            f"{result.rate(mode, 'handler'):,.0f}/s ({ratio:.2f}x; target >= "
            f"{TELEMETRY_TARGET:.2f}x{'' if ratio >= TELEMETRY_TARGET else ', MISSED'})"
        )
    stats_us = statistics.median(result.stats) * 1e6
    lines.append(
        f"  stats() with {result.queued_jobs:,} jobs queued: {stats_us:.2f} µs a call "
        f"(p99 {statistics.median(result.stats_p99) * 1e6:.2f} µs; with none queued "
        f"{statistics.median(result.stats_empty) * 1e6:.2f} µs; median of {STATS_CALLS:,} "
        f"calls, each timed alone; target <= {STATS_TARGET_US:.0f} µs"
        f"{'' if stats_us <= STATS_TARGET_US else ', MISSED'})"
    )
    lines.append(
        f"  pool(name).jobs, the same queue, for contrast: "
        f"{statistics.median(result.snapshot) * 1e3:,.2f} ms a snapshot (it copies every job)"
    )
    return lines


def wanted(flag: bool | None) -> bool:
    """--observability / --no-observability, else: on."""
    return True if flag is None else flag


if __name__ == "__main__":  # pragma: no cover - a quick look without the main table
    res = measure_observability(10_000, 3, 5, progress=sys.stderr)
    print("\n".join(observability_lines(res)))
