"""Pool statistics (contract v2): oddjob.stats(pool) and Pool.stats(), a frozen snapshot
of a pool's counters, workers and latencies; and the exit warning that names what a pool
left undone."""

from __future__ import annotations

import threading
import time

import pytest

import oddjob
import support
from oddjob import Latency, PoolStats
from support import WAIT, accounted, block_workers, gate, settled

FIELDS = [
    "pool",
    "queued",
    "running",
    "workers",
    "submitted",
    "started",
    "completed",
    "failed",
    "cancelled",
    "dropped",
    "expired",
    "retried",
    "rejected",
    "crashes",
    "restarts",
    "queue_wait",
    "run_time",
]
ZERO = Latency(0, 0.0, 0.0, 0.0, 0.0, 0.0)


def fails_on_tens(i: int) -> int:
    if i % 10 == 0:
        raise ValueError(i)
    return i


# -- the snapshot itself -------------------------------------------------------------------


def test_the_fields_are_those_of_the_contract():
    assert list(PoolStats._fields) == FIELDS
    assert list(Latency._fields) == [
        "count",
        "mean",
        "p50",
        "p90",
        "p99",
        "max",
    ]


def test_stats_and_latency_are_frozen(make_pool):
    stats = oddjob.stats(make_pool(1))
    with pytest.raises(AttributeError):
        stats.queued = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        stats.run_time.p50 = 1.0  # type: ignore[misc]
    assert not hasattr(stats, "__dict__") and not hasattr(stats.run_time, "__dict__")


def test_a_fresh_pool_has_zero_counts_and_its_workers(make_pool):
    name = make_pool(3)
    stats = oddjob.stats(name)
    assert stats == PoolStats(name, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ZERO, ZERO)


def test_stats_takes_a_name_or_a_pool_and_pool_stats_is_the_same(make_pool):
    name = make_pool(2)
    oddjob.await_many(oddjob.async_perform_many(name, range(5), abs), WAIT)
    pool = oddjob.whereis(name)
    assert pool is not None
    by_name = settled(name, lambda s: s.completed == 5)
    assert oddjob.stats(pool) == by_name
    assert pool.stats() == by_name


def test_stats_of_a_pool_that_is_not_running(make_pool):
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.stats("no-such-pool")
    with pytest.raises(TypeError, match="str name or a Pool"):
        oddjob.stats(42)  # type: ignore[arg-type]
    never = oddjob.Pool(support.new_name())
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.stats(never)
    with pytest.raises(oddjob.PoolNotFoundError, match="never started"):
        never.stats()

    name = make_pool(2)
    pool = oddjob.whereis(name)
    assert pool is not None
    oddjob.perform_many(name, range(4), abs)
    oddjob.stop(name, timeout=WAIT)
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.stats(name)
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.stats(pool)
    # The Pool object keeps its final figures.
    final = pool.stats()
    assert (final.completed, final.queued, final.running, final.workers) == (4, 0, 0, 0)


def test_stats_starts_a_configured_pool_as_other_calls_do():
    from oddjob import _config

    name = support.new_name()
    oddjob.configure(extra_pools={name: {"pool_size": 2}})
    try:
        stats = oddjob.stats(name)
    finally:
        _config.reset()
    assert stats.pool == name and stats.workers == 2


# -- counters after known work ---------------------------------------------------------------


def test_completed_and_failed_after_100_jobs_of_which_10_raise(make_pool):
    name = make_pool(4)
    jobs = oddjob.async_perform_many(name, range(100), fails_on_tens)
    oddjob.wait(jobs, timeout=WAIT)
    assert all(job.done() for job in jobs)
    stats = settled(name, lambda s: s.completed + s.failed == 100)
    assert (stats.completed, stats.failed) == (90, 10)
    assert (stats.submitted, stats.started, stats.queued, stats.running) == (100, 100, 0, 0)
    assert (stats.cancelled, stats.dropped, stats.rejected, stats.crashes) == (0, 0, 0, 0)
    assert accounted(stats) == stats.submitted
    for job in jobs:  # retrieve the failures: none is logged as never retrieved
        job.exception()


def test_fire_and_forget_failures_count_as_failed(make_pool, oddjob_log):
    name = make_pool(2)
    pool = oddjob.whereis(name)
    assert pool is not None
    oddjob.perform_many(name, range(20), fails_on_tens)
    oddjob.stop(name, timeout=WAIT)  # drains the queue and joins the workers: all settled
    stats = pool.stats()
    assert (stats.submitted, stats.completed, stats.failed) == (20, 18, 2)


def test_queued_and_running_while_the_workers_are_blocked(make_pool):
    name = make_pool(2)
    release = gate()
    blockers = block_workers(name, 2, release)
    oddjob.perform_many(name, range(5), abs)
    stats = oddjob.stats(name)
    assert (stats.queued, stats.running, stats.workers) == (5, 2, 2)
    assert (stats.submitted, stats.started, stats.completed) == (7, 2, 0)
    assert accounted(stats) == stats.submitted
    release.set()
    oddjob.await_many(blockers, WAIT)
    stats = settled(name, lambda s: s.completed == 7)
    assert (stats.queued, stats.running, stats.started) == (0, 0, 7)


def test_cancelled_jobs_while_queued_and_at_stop(make_pool):
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    queued = oddjob.async_perform_many(name, range(5), abs)
    assert queued[0].cancel() and queued[3].cancel()
    stats = oddjob.stats(name)
    assert (stats.cancelled, stats.queued, stats.running) == (2, 3, 1)
    assert accounted(stats) == stats.submitted == 6

    pool = oddjob.whereis(name)
    assert pool is not None
    stopper = threading.Thread(
        target=oddjob.stop, args=(name,), kwargs={"timeout": WAIT, "cancel_pending": True}
    )
    stopper.start()
    settled(pool, lambda s: s.cancelled == 5)  # stop() has cancelled the queued ones ...
    release.set()  # ... before the running job ends
    support.join_all([stopper])
    final = pool.stats()
    assert (final.cancelled, final.queued, final.completed) == (5, 0, 1)
    assert accounted(final) == final.submitted


def test_dropped_jobs_of_an_owner_thread_that_died(make_pool):
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    orphans: list[oddjob.Job[int]] = []
    owner = threading.Thread(
        target=lambda: orphans.extend(oddjob.async_perform_many(name, range(3), abs))
    )
    owner.start()
    support.join_all([owner])
    mine = oddjob.async_perform(name, abs, -1)
    release.set()
    assert oddjob.await_(mine, WAIT) == 1  # FIFO: the orphans' turn came first
    stats = settled(name, lambda s: s.completed == 2)
    assert (stats.dropped, stats.cancelled, stats.submitted) == (3, 0, 5)
    assert accounted(stats) == stats.submitted
    assert all(job.cancelled() for job in orphans)


def test_rejected_jobs_of_a_full_queue(make_pool):
    name = make_pool(1, max_queue=2, on_full="raise")
    release = gate()
    block_workers(name, 1, release)
    oddjob.perform_many(name, range(2), abs)
    with pytest.raises(oddjob.QueueFullError):
        oddjob.perform(name, abs, 1)
    with pytest.raises(oddjob.QueueFullError):
        oddjob.async_perform(name, abs, 1)
    stats = oddjob.stats(name)
    assert (stats.rejected, stats.queued, stats.submitted) == (2, 2, 3)
    release.set()


def test_crashes_and_restarts_come_from_the_worker_supervisor(make_pool, oddjob_log):
    name = make_pool(2, max_restarts=1, max_seconds=60, restart_on_error=True)

    def boom() -> None:
        raise RuntimeError("boom")

    for _ in range(2):  # 2 crashes > max_restarts=1: one restart of every worker
        with pytest.raises(RuntimeError):
            oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    supervisor = oddjob.supervisor(name)
    stats = settled(name, lambda s: s.restarts == 1 and s.workers == 2)
    assert (stats.crashes, stats.restarts) == (supervisor.crashes, supervisor.restarts) == (2, 1)
    assert stats.failed == 2


# -- latencies ----------------------------------------------------------------------------


def test_run_time_and_queue_wait_of_jobs_of_known_length(make_pool):
    name = make_pool(1)
    release = gate()
    blockers = block_workers(name, 1, release)
    jobs = oddjob.async_perform_many(name, range(5), lambda i: time.sleep(0.02))
    time.sleep(0.1)  # the five wait at least this long in the queue
    release.set()
    oddjob.await_many([*blockers, *jobs], WAIT)
    stats = settled(name, lambda s: s.completed == 6)
    run, wait = stats.run_time, stats.queue_wait
    # Jobs this long are always timed; the blocker ran for 0.1 s at least.
    assert run.count == 6 and wait.count == 6
    assert 0.02 * 0.95 <= run.p50 <= run.p90 <= run.p99 <= run.max
    assert run.max >= 0.1 * 0.95
    assert 0.02 < run.mean < run.max
    assert wait.max >= 0.1 * 0.95 and wait.p99 <= wait.max
    assert run.max < WAIT and wait.max < WAIT


# -- never silent at exit ------------------------------------------------------------------


def test_exit_names_what_a_pool_left_undone(core):
    result = support.run_child(
        core,
        """
        import threading, oddjob
        oddjob.configure(exit_timeout=0.3)
        oddjob.start_link("stuck", pool_size=1)
        started = threading.Event()
        def stuck():
            started.set()
            threading.Event().wait()  # never returns
        oddjob.perform("stuck", stuck)
        assert started.wait(10), "the blocking job never started"
        oddjob.perform_many("stuck", range(3), print)
        oddjob.start_link("idle", pool_size=1)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "pool 'stuck' did not drain within 0.3 seconds at exit: 3 jobs left queued, 1 running"
    ) in result.stderr
    assert "'idle'" not in result.stderr
    assert result.stdout == ""
