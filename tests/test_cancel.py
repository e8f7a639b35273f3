"""Job.cancel(): succeeds only while the job is still queued."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate


def test_cancel_of_a_queued_job_succeeds_and_the_job_never_runs(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    job = oddjob.async_perform(pool, ran, "cancelled job")
    assert job.cancel() is True
    assert job.cancelled()
    assert job.done()
    later = oddjob.async_perform(pool, ran, "later job")
    release.set()
    oddjob.await_(later, timeout=WAIT)  # FIFO: the cancelled job's turn has passed
    assert ran.items == ["later job"]
    assert job.cancelled()


def test_awaiting_a_cancelled_job_raises_concurrent_futures_cancelled_error(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    job = oddjob.async_perform(pool, lambda: "never")
    assert job.cancel()
    with pytest.raises(CancelledError):
        oddjob.await_(job, timeout=WAIT)
    with pytest.raises(CancelledError):
        oddjob.await_many([job], timeout=WAIT)
    with pytest.raises(CancelledError):
        job.result(timeout=WAIT)
    with pytest.raises(CancelledError):
        job.exception(timeout=WAIT)


def test_cancel_wakes_a_thread_already_waiting_for_the_job(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    job = oddjob.async_perform(pool, lambda: "never")
    outcome = []
    waiting = threading.Event()

    def waiter():
        waiting.set()
        try:
            oddjob.await_(job, timeout=WAIT)
        except BaseException as exc:
            outcome.append(type(exc))

    t = threading.Thread(target=waiter, name="test-waiter")
    t.start()
    assert waiting.wait(WAIT)
    assert job.cancel()
    t.join(WAIT)
    assert not t.is_alive()
    assert outcome == [CancelledError]


def test_cancel_of_a_running_job_fails_and_the_job_completes(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    assert job.cancel() is False
    assert not job.cancelled()
    assert not job.done()
    release.set()
    assert oddjob.await_(job, timeout=WAIT) == "blocker 0"
    assert not job.cancelled()


def test_cancel_of_a_finished_job_fails(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, lambda: 7)
    assert oddjob.await_(job, timeout=WAIT) == 7
    assert job.cancel() is False
    assert not job.cancelled()
    assert oddjob.await_(job, timeout=WAIT) == 7


def test_cancel_of_a_failed_job_fails_and_keeps_its_exception(make_pool):
    pool = make_pool(1)

    def job():
        raise KeyError("k")

    j = oddjob.async_perform(pool, job)
    assert isinstance(j.exception(timeout=WAIT), KeyError)
    assert j.cancel() is False
    with pytest.raises(KeyError):
        oddjob.await_(j, timeout=WAIT)


def test_done_callback_runs_when_a_queued_job_is_cancelled(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    job = oddjob.async_perform(pool, lambda: "never")
    called = Recorder()
    job.add_done_callback(called)
    assert job.cancel()
    assert called.wait_for_count(1) == [job]


def test_cancelling_some_queued_jobs_leaves_the_others_to_run_in_order(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    jobs = oddjob.async_perform_many(pool, range(20), ran)
    for job in jobs[::2]:
        assert job.cancel()
    release.set()
    results = [oddjob.await_(job, timeout=WAIT) for job in jobs[1::2]]
    assert results == [None] * 10
    assert ran.items == list(range(1, 20, 2))
    assert [job.cancelled() for job in jobs] == [i % 2 == 0 for i in range(20)]
