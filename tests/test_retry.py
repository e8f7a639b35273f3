"""Retries (contract v2, "Calling external services"): retry=Retry(...) runs a job that
raised one of ``on`` again, up to ``attempts`` runs, after backoff * 2**(n-1) seconds
(capped at max_backoff, fully jittered when asked). A waiting retry holds no worker and
re-enters the queue at its tail; the caller sees only the last outcome; Job.attempts
counts the runs; telemetry job.retry and stats().retried; cancel() and stop() reach a job
waiting for its retry."""

from __future__ import annotations

import contextvars
import gc
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import pytest

import oddjob
import support
from oddjob import Retry
from support import (
    SETTLE,
    WAIT,
    Events,
    Flaky,
    Recorder,
    accounted,
    block_workers,
    gate,
    settled,
    until,
)

# A retry is due delay seconds after its run failed, on time.monotonic() as the test's
# stamps are; a gap between two runs' first lines is never shorter than that delay.
# CLOCK_SLACK only absorbs float rounding of the due time.
CLOCK_SLACK = 0.001
# "Not hugely late": a retry that fires this long after it was due is a bug, not load.
LATE = 0.25


def is_error_record(record: logging.LogRecord) -> bool:
    return record.name == "oddjob" and record.levelno == logging.ERROR


@pytest.fixture
def events(record_events: Callable[[str, list[str]], Events]) -> Callable[[str], Events]:
    """events(pool) records pool's job.retry and job.exception events."""
    return lambda pool: record_events(pool, ["job.retry", "job.exception"])


def quick(attempts: int = 3, **fields: Any) -> Retry:
    """A policy with short, exact delays."""
    fields.setdefault("backoff", 0.005)
    fields.setdefault("jitter", False)
    return Retry(attempts=attempts, **fields)


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("retry_test_var", default="unset")


@pytest.mark.parametrize("submit", ["async_perform", "perform", "perform_many", "async_many"])
def test_every_run_starts_from_the_context_it_was_submitted_in(make_pool, submit):
    name = make_pool(1, retry=quick(3))
    seen = Recorder()

    def job(_item: object = None) -> None:
        seen(VAR.get())
        VAR.set("left by a failed run")  # never seen by the next run
        if len(seen.items) < 3:
            raise ConnectionError("again")

    token = VAR.set("as submitted")
    try:
        if submit == "async_perform":
            oddjob.async_perform(name, job).result(timeout=WAIT)
        elif submit == "async_many":
            oddjob.await_many(oddjob.async_perform_many(name, [1], job), WAIT)
        elif submit == "perform_many":
            oddjob.perform_many(name, [1], job)
        else:
            oddjob.perform(name, job)
        seen.wait_for_count(3)
    finally:
        VAR.reset(token)
    assert seen.items == ["as submitted"] * 3


# -- outcomes ----------------------------------------------------------------------------


def test_a_job_that_fails_then_succeeds_returns_its_result(make_pool):
    name = make_pool(1, retry=quick(3))
    flaky = Flaky(2)
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"
    assert job.exception() is None
    assert job.attempts == 3 and flaky.count() == 3
    stats = settled(name, lambda s: s.completed == 1)
    assert (stats.submitted, stats.started, stats.retried, stats.failed) == (1, 3, 2, 0)
    assert accounted(stats) == stats.submitted


def test_attempts_is_zero_before_the_first_run_and_counts_every_run(make_pool):
    name = make_pool(1, retry=quick(4))
    release = gate()
    block_workers(name, 1, release)
    flaky = Flaky(1)
    job = oddjob.async_perform(name, flaky)
    assert job.attempts == 0 and not job.done()
    release.set()
    assert oddjob.await_(job, WAIT) == "job ok"
    assert job.attempts == 2
    plain = make_pool(1)  # no retry: one run
    once = oddjob.async_perform(plain, abs, -3)
    assert oddjob.await_(once, WAIT) == 3 and once.attempts == 1


@pytest.mark.parametrize("on", [ConnectionError, (ConnectionError, TimeoutError)])
def test_an_exception_not_in_on_fails_at_once(make_pool, on):
    name = make_pool(1, retry=quick(5, on=on))
    flaky = Flaky(5, error=ValueError)
    job = oddjob.async_perform(name, flaky)
    with pytest.raises(ValueError, match=r"^job run 1$"):
        oddjob.await_(job, WAIT)
    assert job.attempts == 1 and flaky.count() == 1
    assert job.exception() is flaky.raised()[0]
    stats = settled(name, lambda s: s.failed == 1)
    assert (stats.started, stats.retried, stats.completed) == (1, 0, 0)


def test_a_subclass_of_on_is_retried(make_pool):
    name = make_pool(1, retry=quick(3, on=OSError))
    flaky = Flaky(2, error=ConnectionError)  # ConnectionError is an OSError
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"
    assert job.attempts == 3


def test_a_job_failing_every_attempt_raises_the_last_exception(make_pool):
    name = make_pool(1, retry=quick(3))
    flaky = Flaky(10)
    job = oddjob.async_perform(name, flaky)
    with pytest.raises(ConnectionError, match=r"^job run 3$") as info:
        oddjob.await_(job, WAIT)
    _first, _second, last = flaky.raised()
    assert info.value is last and job.exception() is last
    assert job.attempts == 3 and flaky.count() == 3
    with pytest.raises(ConnectionError, match=r"^job run 3$"):
        job.result(timeout=0)  # the same outcome every time
    stats = settled(name, lambda s: s.failed == 1)
    assert (stats.started, stats.retried, stats.completed) == (3, 2, 0)
    assert accounted(stats) == stats.submitted == 1


def test_attempts_one_never_retries(make_pool):
    name = make_pool(1, retry=quick(1))
    flaky = Flaky(1)
    job = oddjob.async_perform(name, flaky)
    with pytest.raises(ConnectionError, match=r"^job run 1$"):
        oddjob.await_(job, WAIT)
    assert job.attempts == 1
    assert settled(name, lambda s: s.failed == 1).retried == 0


def test_retry_given_as_an_int_is_that_many_attempts(make_pool):
    name = make_pool(1, retry=2)
    pool = oddjob.whereis(name)
    assert pool is not None and pool.options.retry == Retry(attempts=2)
    flaky = Flaky(1)
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"  # after a jittered wait of at most 0.1 s
    assert job.attempts == 2
    always = Flaky(5)
    job = oddjob.async_perform(name, always)
    with pytest.raises(ConnectionError, match=r"^job run 2$"):
        oddjob.await_(job, WAIT)


# -- delays ------------------------------------------------------------------------------


def test_delay_doubles_from_backoff_up_to_max_backoff(core):
    policy = Retry(backoff=0.1, max_backoff=1.0, jitter=False)
    delays = [policy.delay(n) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(10_000) == 1.0  # no OverflowError far past the cap
    jittered = Retry(backoff=0.1, max_backoff=1.0)
    samples = [jittered.delay(3) for _ in range(200)]
    assert all(0.0 <= s <= 0.4 for s in samples)
    assert len(set(samples)) > 100, "full jitter draws a fresh delay every time"
    assert max(samples) > 0.2 and min(samples) < 0.2  # spread over [0, 0.4], not [0.2, 0.4]


def test_runs_are_spaced_by_the_schedule(make_pool, events):
    policy = Retry(attempts=4, backoff=0.03, max_backoff=0.07, jitter=False)
    schedule = [0.03, 0.06, 0.07]  # the third capped (uncapped: 0.12)
    name = make_pool(1, retry=policy)
    recorded = events(name)
    flaky = Flaky(3)
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"
    times = flaky.times()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    for n, (gap, delay) in enumerate(zip(gaps, schedule, strict=True), 1):
        assert gap >= delay - CLOCK_SLACK, f"run {n + 1} came {gap:.4f}s after run {n} ({delay}s)"
        assert gap < delay + LATE, f"run {n + 1} came {gap:.4f}s after run {n} ({delay}s)"
    retries = recorded.wait_for("job.retry", 3)
    assert [e.measurements for e in retries] == [
        {"attempt": n, "delay": pytest.approx(delay)} for n, delay in enumerate(schedule, 1)
    ]


def test_jittered_delays_are_within_the_schedule_and_kept(make_pool, events):
    policy = Retry(attempts=5, backoff=0.01, max_backoff=0.03, jitter=True)
    name = make_pool(1, retry=policy)
    recorded = events(name)
    flaky = Flaky(4)
    job = oddjob.async_perform(name, flaky)
    assert oddjob.await_(job, WAIT) == "job ok"
    retries = recorded.wait_for("job.retry", 4)
    delays = [e.measurements["delay"] for e in retries]
    for n, delay in enumerate(delays, 1):
        assert 0.0 <= delay <= min(0.03, 0.01 * 2 ** (n - 1)), (n, delays)
    times = flaky.times()
    for n, (a, b) in enumerate(itertools.pairwise(times), 1):
        assert b - a >= delays[n - 1] - CLOCK_SLACK, (n, delays, times)
        assert b - a < delays[n - 1] + LATE, (n, delays, times)


# -- a waiting retry holds no worker -------------------------------------------------------


def test_a_pool_of_one_runs_another_job_during_a_backoff(make_pool):
    backoff = 0.3
    name = make_pool(1, retry=quick(2, backoff=backoff))
    flaky = Flaky(lambda key: 1 if key == "retried" else 0)
    retried = oddjob.async_perform(name, flaky, "retried")
    flaky.runs.wait_for_count(1)
    other = oddjob.async_perform(name, flaky, "other")
    assert oddjob.await_(other, WAIT) == "other ok"
    assert oddjob.await_(retried, WAIT) == "retried ok"
    (first, second), (other_at,) = flaky.times("retried"), flaky.times("other")
    assert first < other_at < second, "the other job waited for the backoff"
    assert other_at - first < backoff, "the other job waited for the backoff"
    assert second - first >= backoff - CLOCK_SLACK


def test_a_retry_reenters_the_queue_at_its_tail(make_pool):
    name = make_pool(1, retry=quick(2, backoff=0.15))
    queue = oddjob.whereis(name).queue  # type: ignore[union-attr]
    order = Recorder()
    flaky = Flaky(1)

    def tracked() -> str:
        order("retried")
        return flaky()

    job = oddjob.async_perform(name, tracked)
    flaky.runs.wait_for_count(1)
    release = gate()
    block_workers(name, 1, release)  # the only worker, busy while the retry waits
    oddjob.perform_many(name, ["before 1", "before 2"], order)
    until(
        lambda: any(entry[3] is job for entry in queue.snapshot()), "the retry re-entered the queue"
    )
    oddjob.perform(name, order, "after")
    release.set()
    assert oddjob.await_(job, WAIT) == "job ok"
    assert order.wait_for_count(5) == ["retried", "before 1", "before 2", "retried", "after"]


def test_a_retry_reenters_even_a_full_bounded_queue(make_pool):
    """A retry never waits for room (it was admitted once): it goes in over the bound."""
    name = make_pool(1, max_queue=2, on_full="raise", retry=quick(2, backoff=0.15))
    queue = oddjob.whereis(name).queue  # type: ignore[union-attr]
    order = Recorder()
    flaky = Flaky(1)

    def tracked() -> str:
        order("retried")
        return flaky()

    job = oddjob.async_perform(name, tracked)
    flaky.runs.wait_for_count(1)
    release = gate()
    block_workers(name, 1, release)
    oddjob.perform_many(name, ["q1", "q2"], order)  # the queue is full
    until(
        lambda: any(entry[3] is job for entry in queue.snapshot()),
        "the retry re-entered the full queue",
    )
    assert len(queue) == 3
    with pytest.raises(oddjob.QueueFullError):
        oddjob.perform(name, order, "refused")
    release.set()
    assert oddjob.await_(job, WAIT) == "job ok" and job.attempts == 2
    assert order.wait_for_count(4) == ["retried", "q1", "q2", "retried"]


# -- fire-and-forget -----------------------------------------------------------------------


def test_a_fire_and_forget_job_failing_every_attempt_is_logged_once(make_pool, oddjob_log, caplog):
    name = make_pool(1, retry=quick(3))
    always, once = Flaky(10), Flaky(1)
    oddjob.perform(name, always, "always")
    oddjob.perform(name, once, "once")  # succeeds on its retry: nothing to log
    always.runs.wait_for_count(3)
    once.runs.wait_for_count(2)
    oddjob_log.wait_for(is_error_record)
    # The worker logs a failure before it takes its next job: once a job queued after
    # every run is done, everything has been logged.
    assert oddjob.await_(oddjob.async_perform(name, abs, -1), WAIT) == 1
    time.sleep(SETTLE)
    records = [r for r in caplog.records if is_error_record(r)]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.exc_info is not None
    assert record.exc_info[1] is always.raised("always")[-1]
    message = record.getMessage()
    assert repr(name) in message and "ConnectionError" in message
    assert "attempt" in message and "3" in message, (
        f"the record does not note the attempts: {message}"
    )
    assert always.count("always") == 3 and once.count("once") == 2
    stats = settled(name, lambda s: s.completed + s.failed == 3)
    assert (stats.failed, stats.completed, stats.retried, stats.started) == (1, 2, 3, 6)


# -- telemetry and stats ----------------------------------------------------------------------


def test_job_retry_telemetry_after_each_failed_run_that_is_retried(make_pool, events, oddjob_log):
    name = make_pool(1, retry=quick(3, backoff=0.01))
    recorded = events(name)
    flaky = Flaky(2)
    job = oddjob.async_perform(name, flaky, "async")
    assert oddjob.await_(job, WAIT) == "async ok"
    retries = recorded.wait_for("job.retry", 2)
    failures = recorded.wait_for("job.exception", 2)
    (worker,) = oddjob.workers(name)
    raised = flaky.raised("async")
    assert [e.measurements for e in retries] == [
        {"attempt": 1, "delay": pytest.approx(0.01)},
        {"attempt": 2, "delay": pytest.approx(0.02)},
    ]
    for event, exc in zip(retries, raised, strict=True):
        assert event.metadata == {"pool": name, "function": flaky, "ref": job.ref, "exception": exc}
        assert event.thread is worker
    assert [e.metadata["exception"] for e in failures] == raised  # one per failed run

    always = Flaky(10)  # fire-and-forget, failing all three runs: no retry after the last
    oddjob.perform(name, always, "ff")
    always.runs.wait_for_count(3)
    recorded.wait_for("job.exception", 5)
    assert oddjob.await_(oddjob.async_perform(name, abs, -1), WAIT) == 1
    ff = [e for e in recorded.named("job.retry") if e.metadata["function"] is always]
    assert [e.measurements["attempt"] for e in ff] == [1, 2]
    assert [e.metadata["exception"] for e in ff] == always.raised("ff")[:2]
    assert all(e.metadata["ref"] is None for e in ff)
    assert len(recorded.named("job.retry")) == 4


def test_stats_count_retries_and_every_run(make_pool, events):
    # Job i fails i % 4 times: it succeeds on run 1, 2 or 3, or fails all three.
    name = make_pool(3, retry=quick(3, on=ConnectionError))
    recorded = events(name)
    flaky = Flaky(lambda i: i % 4)
    jobs = oddjob.async_perform_many(name, range(20), flaky)
    oddjob.wait(jobs, timeout=WAIT)
    assert all(job.done() for job in jobs)
    runs = {0: 1, 1: 2, 2: 3, 3: 3}
    for i, job in enumerate(jobs):
        assert job.attempts == runs[i % 4] == flaky.count(i)
        if i % 4 == 3:
            assert str(job.exception()) == f"{i} run 3"
        else:
            assert job.result() == f"{i} ok"
    stats = settled(name, lambda s: s.completed + s.failed == 20)
    assert (stats.submitted, stats.completed, stats.failed) == (20, 15, 5)
    assert stats.started == 5 * (1 + 2 + 3 + 3)
    assert stats.retried == 5 * (0 + 1 + 2 + 2) == len(recorded.named("job.retry"))
    assert (stats.queued, stats.running, stats.cancelled, stats.expired) == (0, 0, 0, 0)
    assert accounted(stats) == stats.submitted


# -- cancel() and stop() ----------------------------------------------------------------------


def test_a_job_waiting_for_its_retry_is_queued_and_cancel_ends_it_at_once(make_pool):
    backoff = 0.3
    name = make_pool(1, retry=quick(3, backoff=backoff))
    flaky = Flaky(10)
    job = oddjob.async_perform(name, flaky)
    stats = settled(name, lambda s: s.retried == 1 and s.running == 0)
    # A quiet moment: the job waits for its retry, no worker holds it.
    assert not job.done() and not job.running() and job.attempts == 1
    assert (stats.submitted, stats.started, stats.queued, stats.running) == (1, 1, 1, 0)
    assert (stats.completed, stats.failed, stats.cancelled) == (0, 0, 0)
    assert accounted(stats) == stats.submitted
    assert job.cancel()
    assert job.cancelled() and job.done()  # at once, not when the retry was due
    with pytest.raises(CancelledError):
        job.result(timeout=0)
    time.sleep(backoff + 2 * SETTLE)  # past the retry's due time: it must not run now
    assert flaky.count() == 1 and job.attempts == 1
    stats = settled(name, lambda s: s.cancelled == 1)
    assert (stats.queued, stats.running, stats.started, stats.failed) == (0, 0, 1, 0)
    assert accounted(stats) == stats.submitted == 1


class Payload:
    """An argument whose lifetime the test watches (through a weakref)."""


def test_cancelling_a_waiting_retry_drops_its_timer(make_pool):
    name = make_pool(1, retry=Retry(attempts=2, backoff=30.0, jitter=False))
    payload = Payload()
    alive = weakref.ref(payload)

    def job(_payload: Payload) -> None:
        raise ConnectionError("once")

    waiting = oddjob.async_perform(name, job, payload)
    del payload
    settled(name, lambda s: s.retried == 1 and s.running == 0)

    # The timer is set just after the stats count the retry: wait for its thread.
    def scheduler_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "oddjob-scheduler"]

    until(scheduler_threads, "the retry's timer to be set")
    schedulers = scheduler_threads()
    assert len(schedulers) == 1
    assert waiting.cancel()
    # Not kept for the 30 s the retry would have waited: the scheduling thread exits
    # (nothing else is pending), and once the caller lets go, so do the job's arguments.
    schedulers[0].join(WAIT)
    assert not schedulers[0].is_alive()
    del waiting
    gc.collect()
    assert alive() is None


def test_stop_waits_for_a_pending_retry(core):
    name = support.new_name()
    pool = oddjob.Pool(name, pool_size=1, retry=quick(2, backoff=0.2)).start()
    flaky = Flaky(1)
    job = pool.async_perform(flaky, "async")
    pool.perform(flaky, "ff")
    settled(pool, lambda s: s.retried == 2 and s.running == 0)  # both wait for their retry
    pool.stop(timeout=WAIT)
    assert job.done(), "stop() returned before the pending retry ran"
    assert job.result() == "async ok" and job.attempts == 2
    assert flaky.count("ff") == 2
    final = pool.stats()
    assert (final.completed, final.started, final.retried) == (2, 4, 2)
    assert (final.queued, final.running, final.cancelled, final.failed) == (0, 0, 0, 0)
    assert accounted(final) == final.submitted == 2


def test_stop_cancel_pending_cancels_waiting_retries(core, oddjob_log, caplog):
    name = support.new_name()
    pool = oddjob.Pool(name, pool_size=1, retry=quick(3, backoff=WAIT)).start()
    flaky = Flaky(10)
    job = pool.async_perform(flaky, "async")
    pool.perform(flaky, "ff")
    settled(pool, lambda s: s.retried == 2 and s.running == 0)
    began = time.monotonic()
    pool.stop(timeout=WAIT, cancel_pending=True)
    took = time.monotonic() - began
    assert took < 1.0, f"stop(cancel_pending=True) took {took:.3f}s (the retries: {WAIT}s)"
    assert job.cancelled() and job.attempts == 1
    assert flaky.count("async") == 1 and flaky.count("ff") == 1
    # The fire-and-forget job's last error is logged, once; the cancelled async job's not.
    oddjob_log.wait_for(is_error_record)
    records = [r for r in caplog.records if is_error_record(r)]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is flaky.raised("ff")[0]
    final = pool.stats()
    assert (final.cancelled, final.queued, final.running, final.failed) == (2, 0, 0, 0)
    assert (final.started, final.retried) == (2, 2)
    assert accounted(final) == final.submitted == 2
