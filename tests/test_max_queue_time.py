"""Queue deadlines (contract v2, "Calling external services"): a job that reaches a worker
after waiting longer than max_queue_time is not run. An async one fails with
JobExpiredError, a fire-and-forget one is logged at WARNING; both are counted expired and
use no rate-limit start; a retry's wait counts from when it re-entered the queue. Then the
three options together: with a bounded queue and stop(), and under many submitters."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import oddjob
import support
from oddjob import JobExpiredError, OddJobError, Retry
from support import (
    SETTLE,
    WAIT,
    Events,
    Flaky,
    Recorder,
    accounted,
    assert_window,
    block_workers,
    gate,
    settled,
    until,
)

# The queue deadline of most tests; jobs meant to expire wait MARGIN longer than it.
MAX_QUEUE_TIME = 0.1
MARGIN = 0.03


def wait_past(since: float, limit: float = MAX_QUEUE_TIME) -> None:
    """Sleep until jobs queued at ``since`` have waited longer than ``limit``. Time has
    to pass here: there is nothing to wait on but the clock."""
    left = since + limit + MARGIN - time.monotonic()
    if left > 0:
        time.sleep(left)


def queued_in(name: str, job: oddjob.Job[Any]) -> bool:
    pool = oddjob.whereis(name)
    assert pool is not None
    return any(entry[3] is job for entry in pool.queue.snapshot())


class Work(Recorder):
    """Jobs that record their tag, and (tag, time.monotonic()) in ``starts``, as their
    first line. The method's name is what the expiry record names."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[tuple[Any, float]] = []

    def stale_or_fresh(self, tag: Any) -> Any:
        self.starts.append((tag, time.monotonic()))
        self(tag)
        return tag

    def at(self, tag: Any) -> float:
        (t,) = [t for seen, t in self.starts if seen == tag]
        return t


def is_expiry_record(record: logging.LogRecord) -> bool:
    return (
        record.name == "oddjob"
        and record.levelno == logging.WARNING
        and "stale_or_fresh" in record.getMessage()
    )


@pytest.fixture
def events(record_events: Callable[[str, list[str]], Events]) -> Callable[[str], Events]:
    """events(pool) records pool's job.expired and job.start events."""
    return lambda pool: record_events(pool, ["job.expired", "job.start"])


# -- expired jobs never run, fresh ones do ------------------------------------------------


def test_jobs_that_waited_too_long_are_not_run_and_fresh_ones_are(make_pool, oddjob_log, caplog):
    name = make_pool(1, max_queue_time=MAX_QUEUE_TIME)
    work = Work()
    release = gate()
    blockers = block_workers(name, 1, release)
    queued_at = time.monotonic()
    stale = [oddjob.async_perform(name, work.stale_or_fresh, f"stale {i}") for i in range(2)]
    done = Recorder()
    for job in stale:
        job.add_done_callback(done)
    oddjob.perform(name, work.stale_or_fresh, "stale ff")
    wait_past(queued_at)
    fresh = oddjob.async_perform(name, work.stale_or_fresh, "fresh")
    oddjob.perform(name, work.stale_or_fresh, "fresh ff")
    release.set()

    assert oddjob.await_(fresh, WAIT) == "fresh"
    assert work.wait_for_count(2) == ["fresh", "fresh ff"]
    assert done.wait_for_count(2) == stale  # done callbacks run, in queue order
    for job in stale:
        with pytest.raises(JobExpiredError):
            job.result(timeout=WAIT)
        exc = job.exception()
        assert isinstance(exc, JobExpiredError)
        assert isinstance(exc, TimeoutError) and isinstance(exc, OddJobError)
        assert job.done() and not job.cancelled() and job.attempts == 0
    (record,) = oddjob_log.wait_for(is_expiry_record)
    assert name in record.getMessage()  # it names the pool (and the function)
    assert oddjob.await_many(blockers, WAIT) == ["blocker 0"]
    stats = settled(name, lambda s: s.completed == 3 and s.expired == 3)
    assert (stats.submitted, stats.started, stats.failed, stats.cancelled) == (6, 3, 0, 0)
    assert (stats.queued, stats.running) == (0, 0)
    assert accounted(stats) == stats.submitted
    time.sleep(SETTLE)
    assert work.items == ["fresh", "fresh ff"], "an expired job ran after all"
    assert len([r for r in caplog.records if is_expiry_record(r)]) == 1


@pytest.mark.parametrize("limit", [timedelta(seconds=WAIT), math.inf])
def test_jobs_within_max_queue_time_run(make_pool, limit):
    name = make_pool(2, max_queue_time=limit)
    pool = oddjob.whereis(name)
    assert pool is not None and pool.options.max_queue_time == (
        WAIT if isinstance(limit, timedelta) else math.inf
    )
    release = gate()
    blockers = block_workers(name, 2, release)
    jobs = oddjob.async_perform_many(name, range(30), abs)
    time.sleep(SETTLE)
    release.set()
    assert oddjob.await_many(jobs, WAIT) == list(range(30))
    oddjob.await_many(blockers, WAIT)
    stats = settled(name, lambda s: s.completed == 32)
    assert stats.expired == 0


def test_job_expired_telemetry(make_pool, events, oddjob_log):
    name = make_pool(1, max_queue_time=MAX_QUEUE_TIME)
    recorded = events(name)
    work = Work()
    release = gate()
    block_workers(name, 1, release)
    queued_at = time.monotonic()
    job = oddjob.async_perform(name, work.stale_or_fresh, "stale")
    oddjob.perform(name, work.stale_or_fresh, "stale ff")
    wait_past(queued_at)
    release.set()
    expired = recorded.wait_for("job.expired", 2)
    (worker,) = oddjob.workers(name)
    assert [e.metadata for e in expired] == [
        {"pool": name, "function": work.stale_or_fresh, "ref": job.ref},
        {"pool": name, "function": work.stale_or_fresh, "ref": None},
    ]
    for event in expired:
        assert set(event.measurements) == {"queue_wait"}
        assert MAX_QUEUE_TIME <= event.measurements["queue_wait"] < WAIT
        assert event.thread is worker
    assert isinstance(job.exception(timeout=WAIT), JobExpiredError)
    assert oddjob.await_(oddjob.async_perform(name, abs, -1), WAIT) == 1
    # job.start for the blocker and the last job only: the expired ones never started.
    assert len(recorded.named("job.start")) == 2
    assert work.items == []


def test_an_expired_job_frees_the_window_for_the_next(make_pool):
    """An expired job uses no rate-limit start: the start goes to the job behind it."""
    per = 0.4
    name = make_pool(1, max_queue_time=MAX_QUEUE_TIME, rate_limit=(2, per))
    work = Work()
    release = gate()
    before_blocker = time.monotonic()
    blockers = block_workers(name, 1, release)  # start 1 of the window
    queued_at = time.monotonic()
    stale = oddjob.async_perform(name, work.stale_or_fresh, "stale")
    wait_past(queued_at)
    fresh = oddjob.async_perform(name, work.stale_or_fresh, "fresh")
    release.set()
    assert oddjob.await_(fresh, WAIT) == "fresh"
    assert isinstance(stale.exception(timeout=WAIT), JobExpiredError)
    # "fresh" took start 2 at once. Had "stale" used it, "fresh" would have waited for
    # the blocker's start to leave the window, per after it.
    assert work.at("fresh") - before_blocker < per - 0.1, "the expired job used a start"
    oddjob.await_many(blockers, WAIT)
    stats = settled(name, lambda s: s.completed == 2)
    assert (stats.started, stats.expired) == (2, 1)
    assert work.items == ["fresh"]


# -- retries and the deadline -------------------------------------------------------------


def test_a_retrys_queue_wait_starts_when_it_reenters_the_queue(make_pool):
    """It waited longer than max_queue_time since it was submitted, but not since it
    re-entered the queue: it runs."""
    backoff = 0.25
    name = make_pool(
        1, max_queue_time=MAX_QUEUE_TIME, retry=Retry(attempts=2, backoff=backoff, jitter=False)
    )
    flaky = Flaky(1)
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"
    assert job.attempts == 2
    stats = settled(name, lambda s: s.completed == 1)
    assert (stats.expired, stats.retried, stats.started) == (0, 1, 2)


def test_a_retry_that_waits_too_long_after_reentering_expires(make_pool):
    name = make_pool(
        1, max_queue_time=MAX_QUEUE_TIME, retry=Retry(attempts=3, backoff=0.05, jitter=False)
    )
    flaky = Flaky(5)
    job = oddjob.async_perform(name, flaky)
    flaky.runs.wait_for_count(1)
    release = gate()
    blockers = block_workers(name, 1, release)  # the worker is busy when the retry is due
    until(lambda: queued_in(name, job), "the retry re-entered the queue")
    wait_past(time.monotonic())
    release.set()
    with pytest.raises(JobExpiredError) as caught:
        job.result(timeout=WAIT)
    # The caller learns why it was being retried: the last run's exception is the cause,
    # kept without its traceback (whose frames must not live through the backoff).
    cause = caught.value.__cause__
    assert type(cause) is ConnectionError and str(cause) == "job run 1"
    assert cause.__traceback__ is None
    assert "after 1 attempt" in str(caught.value)
    assert job.attempts == 1 and flaky.count() == 1
    oddjob.await_many(blockers, WAIT)
    stats = settled(name, lambda s: s.expired == 1 and s.completed == 1)
    assert (stats.retried, stats.started, stats.failed, stats.queued) == (1, 2, 0, 0)
    assert accounted(stats) == stats.submitted == 2


# -- the three together -------------------------------------------------------------------


def test_the_three_with_a_bounded_queue_and_stop(make_pool, oddjob_log, caplog):
    count, per = 2, 0.1
    name = make_pool(
        1,
        max_queue=3,
        rate_limit=(count, per),
        retry=Retry(attempts=3, on=ConnectionError, backoff=0.02, jitter=False),
        max_queue_time=0.15,
    )
    pool = oddjob.whereis(name)
    assert pool is not None
    queue = pool.queue
    work = Work()
    flaky = Flaky(2)
    release = gate()

    def blocker() -> str:
        work.stale_or_fresh("blocker")
        release.wait(WAIT)
        return "blocker"

    held = oddjob.async_perform(name, blocker)  # start 1
    work.wait_for_count(1)
    queued_at = time.monotonic()
    stale = oddjob.async_perform(name, work.stale_or_fresh, "stale")
    oddjob.perform(name, work.stale_or_fresh, "stale ff")
    wait_past(queued_at, 0.15)
    retried = oddjob.async_perform(name, flaky, "retried")  # the queue is full now (3)
    late: list[BaseException] = []

    def submit_late() -> None:
        try:
            oddjob.perform(name, work.stale_or_fresh, "late")
        except BaseException as exc:
            late.append(exc)

    submitter = threading.Thread(target=submit_late, name="test-late-submitter")
    submitter.start()
    until(lambda: queue.waiting() == 1, "the late submitter waits for room")
    stopper = threading.Thread(
        target=oddjob.stop, args=(name,), kwargs={"timeout": WAIT}, name="test-stopper"
    )
    stopper.start()
    support.join_all([submitter])  # stop() woke the line: the late job is refused
    assert len(late) == 1 and isinstance(late[0], oddjob.PoolNotFoundError), late
    release.set()
    support.join_all([stopper])  # stop() drained the queue: retries included

    assert held.result(timeout=0) == "blocker"
    assert retried.done(), "stop() returned before the retries ran"
    assert retried.result(timeout=0) == "retried ok" and retried.attempts == 3
    assert isinstance(stale.exception(timeout=0), JobExpiredError)
    assert work.items == ["blocker"], "an expired or refused job ran"
    oddjob_log.wait_for(is_expiry_record)
    assert len([r for r in caplog.records if is_expiry_record(r)]) == 1
    starts = [work.at("blocker"), *(t for _k, _n, t in flaky.runs.items)]
    assert_window(starts, count, per)
    final = pool.stats()
    assert (final.submitted, final.started, final.completed) == (4, 4, 2)
    assert (final.expired, final.retried, final.failed, final.cancelled) == (2, 2, 0, 0)
    assert (final.queued, final.running) == (0, 0)
    assert accounted(final) == final.submitted


PRODUCERS = 8
JOBS_PER_PRODUCER = 250


def test_many_submitters_with_every_option_lose_no_job_and_run_none_twice(make_pool):
    """Many threads into a small bound, at a high rate, with retries: every job runs
    exactly as often as its failures make it, and its caller sees the right outcome."""
    count, per = 1000, 0.1
    name = make_pool(
        4,
        max_queue=64,
        rate_limit=(count, per),
        retry=Retry(attempts=3, on=ConnectionError, backoff=0.001, max_backoff=0.004),
        max_queue_time=60.0,
    )
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def form(i: int) -> int:  # 0 perform, 1 perform_many, 2 async_perform, 3 ..._many
        return (i // 10) % 4

    def failures(i: int) -> int:
        # Async jobs may fail every run (3); fire-and-forget ones always end well, so
        # that nothing is logged.
        return i % 4 if form(i) >= 2 else i % 3

    def expected_runs(i: int) -> int:
        return min(failures(i) + 1, 3)

    def job(i: int) -> int:
        with lock:
            runs[i] += 1
            n = runs[i]
        if n <= failures(i):
            raise ConnectionError(f"{i} run {n}")
        return i

    def produce(p: int) -> None:
        ids = range(p * JOBS_PER_PRODUCER, (p + 1) * JOBS_PER_PRODUCER)
        jobs: list[tuple[int, oddjob.Job[int]]] = []
        for start in range(ids.start, ids.stop, 10):
            chunk = list(range(start, start + 10))
            kind = form(start)
            if kind == 0:
                for i in chunk:
                    oddjob.perform(name, job, i)
            elif kind == 1:
                oddjob.perform_many(name, chunk, job)
            elif kind == 2:
                jobs.extend((i, oddjob.async_perform(name, job, i)) for i in chunk)
            else:
                jobs.extend(zip(chunk, oddjob.async_perform_many(name, chunk, job), strict=True))
        _done, not_done = oddjob.wait([j for _i, j in jobs], timeout=WAIT)
        assert not not_done, f"{len(not_done)} async jobs never finished"
        for i, handle in jobs:
            assert handle.attempts == expected_runs(i), (i, handle.attempts)
            if failures(i) >= 3:
                assert str(handle.exception()) == f"{i} run 3"
            else:
                assert handle.result() == i

    total = PRODUCERS * JOBS_PER_PRODUCER
    support.run_threads(produce, PRODUCERS, timeout=30.0)
    expected = {i: expected_runs(i) for i in range(total)}
    all_runs = sum(expected.values())

    def ran() -> int:
        with lock:
            return sum(runs.values())

    until(lambda: ran() >= all_runs, f"all {all_runs} runs of {total} jobs")
    time.sleep(SETTLE)
    with lock:
        assert dict(runs) == expected, "a job was lost or ran more often than it should"
    always_failing = sum(1 for i in range(total) if failures(i) >= 3)
    stats = settled(name, lambda s: s.completed + s.failed == total)
    assert (stats.completed, stats.failed) == (total - always_failing, always_failing)
    assert (stats.submitted, stats.started, stats.retried) == (total, all_runs, all_runs - total)
    assert (stats.expired, stats.cancelled, stats.dropped, stats.queued, stats.running) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert accounted(stats) == stats.submitted
