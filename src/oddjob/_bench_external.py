"""The external-services section of ``python -m oddjob bench``: how exact the rate limit
and the retry backoff are.

- Rate accuracy: ``RATE_JOBS`` no-op jobs (``QUICK_RATE_JOBS`` with --quick) submitted at
  once to a pool with ``rate_limit=(RATE_COUNT, RATE_PER)``. Each job records the time it
  ran; the figures are the most starts in any window of ``RATE_PER`` seconds, and the
  shortest time between a start and the ``RATE_COUNT``-th after it (at least ``RATE_PER``,
  or the limit is broken). A job reads the clock a little after the pool stamped its start,
  not always equally late (a worker may wait for the GIL in between), so the verdict takes
  windows ``CLOCK_TOLERANCE`` shorter: at most ``RATE_COUNT`` starts in any of those. Then
  the run's wall time against the ideal
  (``(jobs - 1) // RATE_COUNT`` windows: the first ``RATE_COUNT`` start at once, the last
  job in the last window; target within ``RATE_TARGET`` of it) and the process's CPU time
  during the run as a share of one core (the workers sleep while they wait for their turn;
  target at most ``CPU_TARGET_PERCENT``).
- Retry timing: jobs that always fail, on a pool with ``retry=Retry(attempts=RETRY_ATTEMPTS,
  backoff=RETRY_BACKOFF, jitter=False)``, submitted one every ``RETRY_SPACING`` seconds so
  that their retries seldom meet. Each run of a job records the time it ran (just before it
  raises); a retry's lateness is how much later than the previous run's time plus
  ``Retry.delay(n)`` it ran (p50, p99, max; target: within ``RETRY_TARGET_MS`` ms). A
  negative lateness, a retry that ran early, would be a bug.

One run each, not a median of repetitions: the rate run alone takes the ideal 9 s.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import oddjob

from ._bench_peers import PRESTART_TIMEOUT, quiet_gc
from ._bench_scaling import show_progress

__all__ = [
    "ExternalResult",
    "busiest_window",
    "external_lines",
    "measure_external",
    "retry_lateness",
    "shortest_span",
    "wanted",
]

RATE_COUNT: Final = 200
RATE_PER: Final = 1.0
RATE_JOBS: Final = 2_000  # the ideal run: 9 s
QUICK_RATE_JOBS: Final = 400  # 1 s
RATE_TARGET: Final = 0.03  # the wall time within 3% of the ideal
# How much later than the pool's own start stamp a job may read the clock, for the verdict.
CLOCK_TOLERANCE: Final = 0.001
CPU_TARGET_PERCENT: Final = 5.0
RETRY_ATTEMPTS: Final = 4
RETRY_BACKOFF: Final = 0.05  # delays 50, 100, 200 ms: 350 ms a job
RETRY_JOBS: Final = 300
QUICK_RETRY_JOBS: Final = 60
RETRY_SPACING: Final = 0.011  # seconds between submits (not a divisor of the delays)
RETRY_TARGET_MS: Final = 5.0
# How long past its ideal either run may take before the section gives up on it.
RUN_SLACK: Final = 30.0

_names = itertools.count()


@dataclass
class ExternalResult:
    """What the section measured."""

    pool_size: int
    rate_jobs: int = 0
    rate_seconds: float = 0.0
    rate_cpu_seconds: float = 0.0
    busiest: int = 0  # the most starts in any window of RATE_PER seconds
    busiest_tolerant: int = 0  # the same, windows CLOCK_TOLERANCE shorter
    shortest_span: float = 0.0  # seconds from a start to the RATE_COUNT-th after it, least
    retry_jobs: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds, one per retry

    @property
    def ideal_seconds(self) -> float:
        return ideal_seconds(self.rate_jobs)

    @property
    def rate_ratio(self) -> float:
        return self.rate_seconds / self.ideal_seconds

    @property
    def cpu_percent(self) -> float:
        return 100 * self.rate_cpu_seconds / self.rate_seconds

    def late_ms(self, fraction: float) -> float:
        return nearest_rank(self.lateness, fraction) * 1e3

    @property
    def rate_met(self) -> bool:
        return self.rate_ratio <= 1 + RATE_TARGET

    @property
    def cpu_met(self) -> bool:
        return self.cpu_percent <= CPU_TARGET_PERCENT

    @property
    def window_met(self) -> bool:
        return self.busiest_tolerant <= RATE_COUNT

    @property
    def retry_met(self) -> bool:
        return min(self.lateness) >= 0 and self.late_ms(0.99) <= RETRY_TARGET_MS

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": {
                "rate_limit": [RATE_COUNT, RATE_PER],
                "pool_size": self.pool_size,
                "jobs": self.rate_jobs,
                "max_starts_in_any_window": self.busiest,
                "clock_tolerance_seconds": CLOCK_TOLERANCE,
                "max_starts_in_any_window_less_tolerance": self.busiest_tolerant,
                "shortest_span_of_count_starts_seconds": round(self.shortest_span, 7),
                "meets_window": self.window_met,
                "seconds": round(self.rate_seconds, 4),
                "ideal_seconds": self.ideal_seconds,
                "over_ideal": round(self.rate_ratio, 4),
                "target_over_ideal": 1 + RATE_TARGET,
                "meets_target": self.rate_met,
                "cpu_percent_of_one_core": round(self.cpu_percent, 2),
                "target_cpu_percent": CPU_TARGET_PERCENT,
                "meets_cpu_target": self.cpu_met,
            },
            "retry": {
                "attempts": RETRY_ATTEMPTS,
                "backoff": RETRY_BACKOFF,
                "jitter": False,
                "pool_size": self.pool_size,
                "jobs": self.retry_jobs,
                "spacing_seconds": RETRY_SPACING,
                "retries": len(self.lateness),
                "lateness_ms": {
                    "min": round(min(self.lateness) * 1e3, 3),
                    "p50": round(self.late_ms(0.50), 3),
                    "p99": round(self.late_ms(0.99), 3),
                    "max": round(max(self.lateness) * 1e3, 3),
                },
                "target_ms": RETRY_TARGET_MS,
                "meets_target": self.retry_met,
            },
        }


# -- the figures ------------------------------------------------------------------------


def ideal_seconds(jobs: int, count: int = RATE_COUNT, per: float = RATE_PER) -> float:
    """The shortest run of ``jobs`` starts that keeps to ``count`` per ``per`` seconds."""
    return (jobs - 1) // count * per


def busiest_window(times: Sequence[float], per: float = RATE_PER) -> int:
    """The most of ``times`` within any half-open window of ``per`` seconds."""
    ordered = sorted(times)
    most = first = 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= per:
            first += 1
        most = max(most, last - first + 1)
    return most


def shortest_span(times: Sequence[float], count: int = RATE_COUNT) -> float:
    """The least time from one of ``times`` to the ``count``-th after it (inf if none):
    at least ``per`` when no window of ``per`` seconds holds more than ``count``."""
    ordered = sorted(times)
    return min(
        (ordered[k + count] - ordered[k] for k in range(len(ordered) - count)), default=math.inf
    )


def retry_lateness(runs: Sequence[float], delay: Callable[[int], float]) -> list[float]:
    """Seconds by which each retry in ``runs`` (one job's run times, in order) ran later
    than the run before it plus ``delay(n)``, n the 1-based number of that run."""
    return [runs[n] - runs[n - 1] - delay(n) for n in range(1, len(runs))]


def nearest_rank(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(len(ordered) * fraction - 1e-9)) - 1]


# -- the runs ---------------------------------------------------------------------------


@contextmanager
def _pool(size: int, **options: Any) -> Iterator[str]:
    """A fresh pool's name while the block runs (no job runs in it before the block)."""
    name = f"bench-external-{next(_names)}"
    while oddjob.whereis(name) is not None:  # never take over a pool of the caller's
        name = f"bench-external-{next(_names)}"
    pool = oddjob.Pool(name, pool_size=size, **options).start()
    try:
        yield name
    finally:
        if pool.running:
            pool.stop(cancel_pending=True)


def rate_run(jobs: int, size: int) -> tuple[float, float, list[float]]:
    """``jobs`` no-op jobs at once into a fresh rate-limited pool, until all have run.

    Returns:
        The wall time and the process's CPU time, in seconds, and the time of each run.
    """
    times: list[float] = []
    clock, append = time.perf_counter, times.append

    def record(_item: object) -> None:
        append(clock())

    with _pool(size, rate_limit=(RATE_COUNT, RATE_PER)) as name, quiet_gc():
        cpu, began = time.process_time(), clock()
        handles = oddjob.async_perform_many(name, range(jobs), record)
        oddjob.await_many(handles, timeout=ideal_seconds(jobs) + RUN_SLACK)
        seconds, cpu_seconds = clock() - began, time.process_time() - cpu
    if len(times) != jobs:
        raise RuntimeError(f"{len(times)} of {jobs} rate-limited jobs ran")
    return seconds, cpu_seconds, times


class _Failure(Exception):
    """What every run of a retry job raises."""


def _fail(runs: list[float]) -> None:
    runs.append(time.perf_counter())
    raise _Failure


def retry_run(jobs: int, size: int) -> list[float]:
    """``jobs`` always-failing jobs, one every RETRY_SPACING seconds, into a fresh pool
    that retries them; the lateness of every retry, in seconds."""
    policy = oddjob.Retry(
        attempts=RETRY_ATTEMPTS, on=(_Failure,), backoff=RETRY_BACKOFF, jitter=False
    )
    runs: list[list[float]] = [[] for _ in range(jobs)]
    with _pool(size, retry=policy) as name:
        warm = [oddjob.async_perform(name, time.sleep, 0.01) for _ in range(size)]
        oddjob.await_many(warm, timeout=PRESTART_TIMEOUT)  # every worker has run a job
        handles = []
        with quiet_gc():
            began = time.perf_counter()
            for index in range(jobs):
                time.sleep(max(0.0, began + index * RETRY_SPACING - time.perf_counter()))
                handles.append(oddjob.async_perform(name, _fail, runs[index]))
            schedule = sum(policy.delay(n) for n in range(1, RETRY_ATTEMPTS))
            _, pending = oddjob.wait(handles, timeout=schedule + RUN_SLACK)
    if pending:
        raise RuntimeError(f"{len(pending)} of {jobs} retried jobs did not finish")
    wrong = [job for job in handles if not isinstance(job.exception(), _Failure)]
    if wrong:
        raise RuntimeError(f"{len(wrong)} retried jobs ended otherwise: {wrong[0].exception()!r}")
    short = [len(r) for r in runs if len(r) != RETRY_ATTEMPTS]
    if short:
        raise RuntimeError(f"a retried job ran {short[0]} times, not {RETRY_ATTEMPTS}")
    return [late for job_runs in runs for late in retry_lateness(job_runs, policy.delay)]


def measure_external(
    size: int, *, quick: bool = False, progress: TextIO | None = None
) -> ExternalResult:
    """Run the section on pools of ``size`` workers; ``quick``: fewer jobs."""
    rate_jobs = QUICK_RATE_JOBS if quick else RATE_JOBS
    retry_jobs = QUICK_RETRY_JOBS if quick else RETRY_JOBS
    result = ExternalResult(pool_size=size, rate_jobs=rate_jobs, retry_jobs=retry_jobs)
    show_progress(
        progress,
        f"external: {rate_jobs:,} jobs at rate_limit=({RATE_COUNT}, {RATE_PER:g}), "
        f"about {ideal_seconds(rate_jobs):.0f} s",
    )
    result.rate_seconds, result.rate_cpu_seconds, times = rate_run(rate_jobs, size)
    result.busiest = busiest_window(times)
    result.busiest_tolerant = busiest_window(times, RATE_PER - CLOCK_TOLERANCE)
    result.shortest_span = shortest_span(times)
    show_progress(progress, f"external: {retry_jobs} jobs retried {RETRY_ATTEMPTS - 1} times")
    result.lateness = retry_run(retry_jobs, size)
    show_progress(progress, None)
    return result


# -- the report -------------------------------------------------------------------------


def _missed(met: bool) -> str:
    return "" if met else ", MISSED"


def external_lines(result: ExternalResult) -> list[str]:
    """The section as text."""
    delays = ", ".join(
        f"{oddjob.Retry(backoff=RETRY_BACKOFF, jitter=False).delay(n) * 1e3:.0f}"
        for n in range(1, RETRY_ATTEMPTS)
    )
    window = f"limit {RATE_COUNT}{'' if result.window_met else ', BROKEN'}"
    span = result.shortest_span * 1e3
    return [
        f"Calling external services (v2; pool size {result.pool_size}, one run each)",
        f"  rate_limit=({RATE_COUNT}, {RATE_PER:g}), {result.rate_jobs:,} no-op jobs at once: "
        f"at most {result.busiest} starts in any {RATE_PER:g} s window, "
        f"{result.busiest_tolerant} in any {(RATE_PER - CLOCK_TOLERANCE) * 1e3:g} ms one "
        f"({window}; a start and the {RATE_COUNT}th after it at least {span:.3f} ms apart); "
        f"{result.rate_seconds:.3f} s against the ideal {result.ideal_seconds:g} s "
        f"({result.rate_ratio:.4f}x; target <= {1 + RATE_TARGET:.2f}x"
        f"{_missed(result.rate_met)}); process CPU {result.cpu_percent:.2f}% of one core "
        f"(target <= {CPU_TARGET_PERCENT:g}%{_missed(result.cpu_met)})",
        f"  retry=Retry(attempts={RETRY_ATTEMPTS}, backoff={RETRY_BACKOFF:g}, jitter=False), "
        f"{result.retry_jobs} jobs that always fail, one every {RETRY_SPACING * 1e3:g} ms: "
        f"{len(result.lateness)} retries (delays {delays} ms), late by p50 "
        f"{result.late_ms(0.50):.2f} ms, p99 {result.late_ms(0.99):.2f} ms, max "
        f"{max(result.lateness) * 1e3:.2f} ms, min {min(result.lateness) * 1e3:.2f} ms "
        f"(target: within {RETRY_TARGET_MS:g} ms{_missed(result.retry_met)})",
    ]


def wanted(flag: bool | None) -> bool:
    """--external / --no-external, else: on."""
    return True if flag is None else flag


if __name__ == "__main__":  # pragma: no cover - a quick look without the main table
    quick = "--quick" in sys.argv[1:]
    print("\n".join(external_lines(measure_external(5, quick=quick, progress=sys.stderr))))
