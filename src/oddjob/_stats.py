"""Pool statistics: a frozen snapshot of a pool's counters and latency summaries.

Data flow::

    stats(pool) --> Pool --> core Queue.stats(): one tuple, under the queue's mutex, O(1)
                        \\--> WorkerSupervisor: live workers, crashes, restarts
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from . import _registry
from ._errors import PoolNotFoundError

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Latency", "PoolStats", "snapshot", "stats"]


class Latency(NamedTuple):
    """A latency summary since the pool started, in seconds (a named tuple: frozen,
    and cheap enough to make that ``stats()`` stays a few microseconds).

    Percentiles come from a fixed-size log-linear histogram, within 5% relative error.
    Every field is 0 while ``count`` is 0.

    Attributes:
        count: how many jobs were timed. Every job that runs for a couple of
            microseconds or more is; shorter ones are sampled (down to one in 64),
            except while a job telemetry handler is attached. So ``count`` may be less
            than the jobs run.
        mean: the mean.
        p50, p90, p99: the 50th, 90th and 99th percentiles.
        max: the longest.
    """

    # The contract's name; it hides tuple.count, which a summary has no use for.
    count: int  # type: ignore[assignment]  # pyright: ignore[reportIncompatibleMethodOverride]
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


class PoolStats(NamedTuple):
    """A frozen snapshot of one pool, taken by ``oddjob.stats(pool)`` or ``Pool.stats()``
    (a named tuple; ``_asdict()`` gives the fields by name).

    The counters are taken at one instant (the queue's lock held once), so once the pool
    is idle ``submitted == queued + running + completed + failed + cancelled + dropped +
    expired``. Counts are since the pool started.

    Attributes:
        pool: the pool's name.
        queued: jobs waiting in the queue (jobs cancelled while queued not included).
        running: jobs started and not yet finished.
        workers: live worker threads.
        submitted: jobs accepted into the queue (jobs of fired timers included).
        started: jobs taken by a worker to run.
        completed: jobs that ran and returned.
        failed: jobs that raised (and async jobs failed by a broken pool, or by a
            worker lost at fork).
        cancelled: queued jobs cancelled (``Job.cancel()``, or
            ``stop(cancel_pending=True)``).
        dropped: queued async jobs dropped because their owner thread died first.
        expired: jobs that waited in the queue longer than ``max_queue_time``.
        retried: job attempts retried.
        rejected: jobs refused with QueueFullError (never counted as submitted).
        crashes: workers that crashed (initializer failures included).
        restarts: times the whole worker set was restarted.
        queue_wait: time from entering the queue to starting on a worker.
        run_time: time a job ran on its worker.
    """

    pool: str
    queued: int
    running: int
    workers: int
    submitted: int
    started: int
    completed: int
    failed: int
    cancelled: int
    dropped: int
    expired: int
    retried: int
    rejected: int
    crashes: int
    restarts: int
    queue_wait: Latency
    run_time: Latency


def stats(pool: str | Pool) -> PoolStats:
    """A snapshot of a running pool's counters and latencies, taken in O(1).

    Args:
        pool: the pool's name, or its Pool.

    Raises:
        PoolNotFoundError: the pool is not running (and not configured).
        TypeError: pool is neither a str nor a Pool.
    """
    return snapshot(_registry.lookup(pool))


def snapshot(pool: Pool) -> PoolStats:
    """The stats of a Pool that was started, running or not (``Pool.stats()``)."""
    queue, supervisor = pool._queue, pool._supervisor
    if queue is None or supervisor is None:
        raise PoolNotFoundError(f"pool {pool.name!r} was never started")
    c = queue.stats()
    return PoolStats(
        pool.name,
        c[0],
        c[1],
        supervisor.live_workers(),
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        c[8],
        c[9],
        c[10],
        supervisor.crashes,
        supervisor.restarts,
        Latency._make(c[11]),
        Latency._make(c[12]),
    )
