"""Rate limits (contract v2, "Calling external services"): rate_limit=(count, per) allows at
most count job starts in any window of per seconds. Workers wait for their turn asleep
(no spinning); FIFO, cancel, stop() and stats are those of a pool without a rate;
cancelled and dropped jobs use no start."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import oddjob
import support
from support import (
    GRANT_SLACK,
    SETTLE,
    WAIT,
    Recorder,
    accounted,
    assert_window,
    gate,
    settled,
    until,
)


def ideal_span(n: int, count: int, per: float) -> float:
    """First start to last of n jobs started as fast as (count, per) allows."""
    return ((n - 1) // count) * per


class Starts(Recorder):
    """Jobs that record (tag, time.monotonic()) as their first line."""

    def job(self, tag: Any) -> Any:
        self((tag, time.monotonic()))
        return tag

    def times(self) -> list[float]:
        return [t for _tag, t in self.items]

    def tags(self) -> list[Any]:
        return [tag for tag, _t in self.items]

    def at(self, tag: Any) -> float:
        (t,) = [float(t) for seen, t in self.items if seen == tag]
        return t


# -- the window --------------------------------------------------------------------------


def test_every_window_holds_at_most_count_starts(make_pool):
    count, per, n = 10, 0.25, 60
    name = make_pool(4, rate_limit=(count, per))
    starts = Starts()
    oddjob.perform_many(name, range(n), starts.job)
    starts.wait_for_count(n)
    times = starts.times()
    assert sorted(starts.tags()) == list(range(n))
    assert_window(times, count, per)
    span = max(times) - min(times)
    ideal = ideal_span(n, count, per)  # 1.25 s: six bursts of ten, per apart
    assert ideal - GRANT_SLACK <= span <= ideal + 0.2, f"{n} starts took {span:.3f}s"


def test_a_burst_up_to_count_starts_at_once(make_pool):
    """The first count jobs of an idle pool are not spaced out: a window, not a pace."""
    name = make_pool(4, rate_limit=(4, 10.0))
    starts = Starts()
    jobs = oddjob.async_perform_many(name, range(4), starts.job)
    assert oddjob.await_many(jobs, WAIT) == [0, 1, 2, 3]
    times = starts.times()
    assert max(times) - min(times) < 1.0, "jobs within the count were made to wait"


def test_workers_waiting_for_the_rate_do_not_spin(make_pool):
    """One worker sleeps until its turn, the others idle: the process uses little CPU
    while the rate holds four workers back for most of a second."""
    per = 0.25
    name = make_pool(4, rate_limit=(1, per))
    starts = Starts()
    oddjob.perform_many(name, range(4), starts.job)  # starts at 0, per, 2 per, 3 per
    starts.wait_for_count(1)
    cpu, wall = time.process_time(), time.monotonic()
    starts.wait_for_count(4)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    assert wall >= 2 * per, f"the rate held the jobs back only {wall:.3f}s: the test is moot"
    assert cpu < 0.2 * wall, f"{cpu:.3f}s of CPU in {wall:.3f}s waiting for the rate"
    assert_window(starts.times(), 1, per)


def test_jobs_start_in_fifo_order_at_the_rate(make_pool):
    """Starts per apart, so that the order of first lines is the order of the grants."""
    name = make_pool(3, rate_limit=(1, 0.02))
    order = Recorder()
    jobs = []
    for i in range(6):
        if i % 2:
            oddjob.perform(name, order, i)
        else:
            jobs.append(oddjob.async_perform(name, order, i))
    order.wait_for_count(2)  # some wait for the rate while more arrive
    oddjob.perform_many(name, range(6, 9), order)
    jobs.extend(oddjob.async_perform_many(name, range(9, 12), order))
    assert order.wait_for_count(12) == list(range(12))
    oddjob.await_many(jobs, WAIT)


@pytest.mark.parametrize("kind", ["cancelled", "dropped"])
def test_a_job_that_never_runs_uses_no_start(make_pool, kind):
    per = 0.25
    name = make_pool(1, rate_limit=(2, per))
    release = gate()
    starts = Starts()

    def blocker() -> None:
        starts(("blocker", time.monotonic()))
        release.wait(WAIT)

    oddjob.perform(name, blocker)  # start 1 of the window
    starts.wait_for_count(1)
    if kind == "cancelled":
        skipped = oddjob.async_perform(name, starts.job, "skipped")
        assert skipped.cancel()
    else:  # its owner thread ends while it is queued: dropped when its turn comes
        skipped = support.in_thread_that_exits(
            lambda: oddjob.async_perform(name, starts.job, "skipped")
        )
    second = oddjob.async_perform(name, starts.job, "second")
    third = oddjob.async_perform(name, starts.job, "third")
    release.set()
    assert oddjob.await_many([second, third], WAIT) == ["second", "third"]
    assert starts.tags() == ["blocker", "second", "third"]
    assert skipped.cancelled()
    blocker_at = starts.at("blocker")
    # Had the skipped job used a start, "second" would have waited for the window.
    assert starts.at("second") - blocker_at < per - 0.1, "the skipped job used a start"
    assert starts.at("third") - blocker_at >= per - GRANT_SLACK, "the rate let three through"
    stats = settled(name, lambda s: s.completed == 3)
    assert stats.started == 3
    assert (stats.cancelled, stats.dropped) == ((1, 0) if kind == "cancelled" else (0, 1))
    assert accounted(stats) == stats.submitted == 4


def test_a_queued_job_can_be_cancelled_while_a_worker_waits_for_the_rate(make_pool):
    name = make_pool(2, rate_limit=(1, 0.3))
    starts = Starts()
    first = oddjob.async_perform(name, starts.job, "first")
    waiting = oddjob.async_perform(name, starts.job, "waiting")
    behind = oddjob.async_perform(name, starts.job, "behind")
    assert oddjob.await_(first, WAIT) == "first"
    time.sleep(SETTLE)  # a worker is now asleep until the window lets "waiting" start
    assert waiting.cancel() and waiting.cancelled()
    assert oddjob.await_(behind, WAIT) == "behind"
    assert starts.tags() == ["first", "behind"]
    assert_window(starts.times(), 1, 0.3)


# -- stats and stop() -------------------------------------------------------------------------


def fails_on_fours(i: int) -> int:
    if i % 4 == 0:
        raise ValueError(i)
    return i


def test_stats_count_every_job_at_the_rate(make_pool):
    name = make_pool(2, rate_limit=(3, timedelta(milliseconds=100)))
    pool = oddjob.whereis(name)
    assert pool is not None and pool.options.rate_limit == (3, 0.1)
    jobs = oddjob.async_perform_many(name, range(12), fails_on_fours)
    oddjob.wait(jobs, timeout=WAIT)
    assert all(job.done() for job in jobs)
    stats = settled(name, lambda s: s.completed + s.failed == 12)
    assert (stats.submitted, stats.started, stats.completed, stats.failed) == (12, 12, 9, 3)
    assert (stats.queued, stats.running, stats.cancelled, stats.expired) == (0, 0, 0, 0)
    assert stats.retried == 0
    assert accounted(stats) == stats.submitted
    for job in jobs:
        job.exception()  # retrieved: none is logged as never retrieved


def test_stop_cancel_pending_while_a_worker_waits_for_the_rate_returns_at_once(make_pool):
    per = 3.0
    name = make_pool(2, rate_limit=(1, per))
    pool = oddjob.whereis(name)
    assert pool is not None
    starts = Starts()
    jobs = oddjob.async_perform_many(name, ["first", "second", "third"], starts.job)
    assert oddjob.await_(jobs[0], WAIT) == "first"
    settled(name, lambda s: s.completed == 1)
    time.sleep(SETTLE)  # a worker is now asleep until the window lets "second" start
    stats = oddjob.stats(name)
    # The waiting jobs have not started: queued, not running.
    assert (stats.started, stats.queued, stats.running) == (1, 2, 0)
    assert accounted(stats) == stats.submitted == 3

    began = time.monotonic()
    oddjob.stop(name, timeout=WAIT, cancel_pending=True)
    took = time.monotonic() - began
    assert took < 1.0, f"stop(cancel_pending=True) took {took:.3f}s (the rate: {per}s)"
    assert jobs[1].cancelled() and jobs[2].cancelled()
    assert starts.tags() == ["first"]
    final = pool.stats()
    assert (final.started, final.cancelled, final.queued, final.running) == (1, 2, 0, 0)
    assert accounted(final) == final.submitted


@pytest.mark.parametrize(
    "size, count, per, n",
    [
        (2, 2, 0.1, 8),
        # stop() comes while one worker waits for the rate and two idle behind it
        (3, 1, 0.05, 5),
    ],
)
def test_stop_drains_the_queue_at_the_rate(core, size, count, per, n):
    starts = Starts()
    pool = oddjob.Pool(support.new_name(), pool_size=size, rate_limit=(count, per)).start()
    oddjob.perform_many(pool, range(n), starts.job)
    began = time.monotonic()
    pool.stop(timeout=WAIT)  # runs every queued job first, at the rate
    took = time.monotonic() - began
    assert sorted(starts.tags()) == list(range(n))
    assert_window(starts.times(), count, per)
    span = max(starts.times()) - min(starts.times())
    assert span >= ideal_span(n, count, per) - GRANT_SLACK
    assert took < WAIT
    final = pool.stats()
    assert (final.completed, final.started, final.queued) == (n, n, 0)


def test_stop_without_wait_leaves_the_drain_to_the_rate(core):
    """stop(wait=False) returns at once; the workers still keep to the rate."""
    count, per, n = 1, 0.05, 5
    starts = Starts()
    pool = oddjob.Pool(support.new_name(), pool_size=3, rate_limit=(count, per)).start()
    workers = pool.workers()
    pool.perform_many(range(n), starts.job)
    began = time.monotonic()
    pool.stop(wait=False)
    assert time.monotonic() - began < 1.0
    support.join_all(workers)
    assert sorted(starts.tags()) == list(range(n))
    assert_window(starts.times(), count, per)


# -- many threads at a high rate ------------------------------------------------------------


def test_many_submitters_at_a_high_rate_run_every_job_once(make_pool):
    count, per = 500, 0.1
    name = make_pool(4, rate_limit=(count, per))
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            seen[i] = seen.get(i, 0) + 1

    def produce(p: int) -> None:
        ids = range(p * 250, (p + 1) * 250)
        oddjob.perform_many(name, ids[:125], job)
        oddjob.await_many(oddjob.async_perform_many(name, ids[125:], job), WAIT)

    began = time.monotonic()
    support.run_threads(produce, 8)
    until(lambda: len(seen) == 2000, "every job ran")
    took = time.monotonic() - began
    time.sleep(SETTLE)
    with lock:
        assert set(seen) == set(range(2000)) and set(seen.values()) == {1}
    # 2000 starts at 500 per 0.1 s: three full windows must pass.
    assert took >= ideal_span(2000, count, per) - GRANT_SLACK
    stats = settled(name, lambda s: s.completed == 2000)
    assert (stats.started, stats.queued, stats.running) == (2000, 0, 0)
