"""await_ and await_many: results, deadlines, and jobs that stay collectable after a timeout."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate


def test_await_returns_the_jobs_result(make_pool):
    pool = make_pool(2)

    def add(a: int, b: int = 0) -> int:
        return a + b

    job = oddjob.async_perform(pool, add, 2, b=3)
    assert oddjob.await_(job, timeout=WAIT) == 5


def test_a_result_can_be_read_any_number_of_times(make_pool):
    pool = make_pool(1)
    value = object()
    job = oddjob.async_perform(pool, lambda: value)
    for _ in range(5):
        assert oddjob.await_(job, timeout=WAIT) is value
    assert job.result() is value
    assert job.result(timeout=0) is value
    assert oddjob.await_many([job, job], timeout=WAIT) == [value, value]


def test_await_times_out_on_a_running_job_which_can_be_awaited_again_later(make_pool):
    pool = make_pool(1)
    release = gate()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(WAIT)
        return "finally"

    job = oddjob.async_perform(pool, slow)
    assert started.wait(WAIT)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        oddjob.await_(job, timeout=0.1)
    assert time.monotonic() - t0 >= 0.09
    assert not job.done()
    assert not job.cancelled()
    with pytest.raises(TimeoutError):
        oddjob.await_(job, timeout=0)
    release.set()
    assert oddjob.await_(job, timeout=WAIT) == "finally"
    assert oddjob.await_(job, timeout=WAIT) == "finally"


def test_await_timeout_does_not_cancel_a_queued_job(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()

    def queued_job() -> int:
        ran("queued job")
        return 42

    job = oddjob.async_perform(pool, queued_job)
    with pytest.raises(TimeoutError):
        oddjob.await_(job, timeout=0.05)
    assert not job.cancelled()
    release.set()
    assert oddjob.await_(job, timeout=WAIT) == 42
    assert ran.items == ["queued job"]


def test_await_default_timeout_is_five_seconds(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        oddjob.await_(job)
    elapsed = time.monotonic() - t0
    assert 4.9 <= elapsed < 8.0


def test_await_with_timeout_none_waits_until_the_job_finishes(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    timer = threading.Timer(0.2, release.set)
    timer.start()
    try:
        assert oddjob.await_(job, timeout=None) == "blocker 0"
    finally:
        timer.join(WAIT)


def test_await_accepts_a_timedelta_timeout(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        oddjob.await_(job, timeout=timedelta(milliseconds=100))
    assert time.monotonic() - t0 >= 0.09
    release.set()
    assert oddjob.await_(job, timeout=timedelta(seconds=WAIT)) == "blocker 0"


def test_await_many_returns_results_in_job_order_whatever_order_they_finish_in(make_pool):
    n = 5
    pool = make_pool(n)
    releases = [gate() for _ in range(n)]
    started = Recorder()

    def job(i):
        started(i)
        releases[i].wait(WAIT)
        return i * 100

    jobs = [oddjob.async_perform(pool, job, i) for i in range(n)]
    started.wait_for_count(n)
    for i in reversed(range(n)):  # finish the last job first, the first job last
        releases[i].set()
        oddjob.await_(jobs[i], timeout=WAIT)
    assert oddjob.await_many(jobs, timeout=WAIT) == [i * 100 for i in range(n)]
    assert oddjob.await_many(list(reversed(jobs)), timeout=WAIT) == [
        i * 100 for i in reversed(range(n))
    ]


def test_await_many_waits_for_jobs_finishing_in_reverse_order_while_it_waits(make_pool):
    n = 4
    pool = make_pool(n)
    releases = [gate() for _ in range(n)]

    def job(i):
        releases[i].wait(WAIT)
        return i

    jobs = [oddjob.async_perform(pool, job, i) for i in range(n)]

    def release_in_reverse():
        for i in reversed(range(n)):
            releases[i].set()
            time.sleep(0.01)

    releaser = threading.Thread(target=release_in_reverse, name="test-releaser")
    releaser.start()
    try:
        assert oddjob.await_many(jobs, timeout=WAIT) == list(range(n))
    finally:
        releaser.join(WAIT)


def test_await_many_of_no_jobs_is_an_empty_list():
    assert oddjob.await_many([]) == []
    assert oddjob.await_many([], timeout=0) == []


def test_await_many_times_out_with_one_overall_deadline_and_jobs_stay_collectable(make_pool):
    n = 10
    pool = make_pool(2)
    release = gate()

    def job(i):
        release.wait(WAIT)
        return -i

    jobs = [oddjob.async_perform(pool, job, i) for i in range(n)]
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        oddjob.await_many(jobs, timeout=0.2)
    elapsed = time.monotonic() - t0
    # One deadline for the whole call, not 0.2 s per job (that would be 2 s).
    assert 0.18 <= elapsed < 1.0
    assert not any(job.cancelled() for job in jobs)
    release.set()
    assert oddjob.await_many(jobs, timeout=WAIT) == [-i for i in range(n)]
    assert oddjob.await_many(jobs, timeout=WAIT) == [-i for i in range(n)]


def test_await_many_with_some_jobs_done_and_some_not_times_out_then_collects(make_pool):
    pool = make_pool(2)
    release = gate()
    done_job = oddjob.async_perform(pool, lambda: "done")
    oddjob.await_(done_job, timeout=WAIT)
    slow_job = oddjob.async_perform(pool, lambda: release.wait(WAIT) and "slow")
    with pytest.raises(TimeoutError):
        oddjob.await_many([done_job, slow_job], timeout=0.05)
    release.set()
    assert oddjob.await_many([done_job, slow_job], timeout=WAIT) == ["done", "slow"]


def test_await_many_accepts_timeout_none(make_pool):
    pool = make_pool(2)
    jobs = oddjob.async_perform_many(pool, range(10), str)
    assert oddjob.await_many(jobs, timeout=None) == [str(i) for i in range(10)]


def test_await_many_accepts_any_iterable_of_jobs(make_pool):
    pool = make_pool(2)
    jobs = oddjob.async_perform_many(pool, range(4), lambda x: x + 1)
    assert oddjob.await_many(iter(jobs), timeout=WAIT) == [1, 2, 3, 4]
    assert oddjob.await_many(tuple(jobs), timeout=WAIT) == [1, 2, 3, 4]
