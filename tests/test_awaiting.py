"""await_ and await_many: results, deadlines, and jobs that stay collectable after a timeout."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError
from datetime import timedelta
from typing import Any

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
    jobs: list[oddjob.Job[Any]] = [done_job, slow_job]  # a Job[str] and a Job[bool | str]
    with pytest.raises(TimeoutError):
        oddjob.await_many(jobs, timeout=0.05)
    release.set()
    assert oddjob.await_many(jobs, timeout=WAIT) == ["done", "slow"]


def test_await_many_accepts_timeout_none(make_pool):
    pool = make_pool(2)
    jobs = oddjob.async_perform_many(pool, range(10), str)
    assert oddjob.await_many(jobs, timeout=None) == [str(i) for i in range(10)]


def test_await_many_accepts_any_iterable_of_jobs(make_pool):
    pool = make_pool(2)
    jobs = oddjob.async_perform_many(pool, range(4), lambda x: x + 1)
    assert oddjob.await_many(iter(jobs), timeout=WAIT) == [1, 2, 3, 4]
    assert oddjob.await_many(tuple(jobs), timeout=WAIT) == [1, 2, 3, 4]


class OpensWhenCollected:
    """Stands first in await_many's jobs as a Job of another core, whose result the call
    asks for only once it collects in order, after its look for jobs failed already (a
    job failed by then wins, whatever its place). Asking opens the gate, so that jobs
    waiting on it fail only once that look is over: opening it as the call reads its
    input was too early without a GIL (the look had not reached the failed job yet)."""

    __oddjob_job__ = True

    def __init__(self, gate_: threading.Event) -> None:
        self.gate = gate_

    def result(self, timeout: float | None = None) -> str:
        self.gate.set()
        return "opened"


def test_await_many_raises_a_failure_while_later_jobs_still_run(make_pool):
    # Waiting for all of them at once must still wake at the first failure, not at the
    # last job's end.
    pool = make_pool(3)
    release = gate()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(WAIT)
        return "slow"

    def boom():
        assert started.wait(WAIT)
        raise LookupError("boom")

    jobs = [
        oddjob.async_perform(pool, lambda: "ok"),
        oddjob.async_perform(pool, boom),
        oddjob.async_perform(pool, slow),
    ]
    with pytest.raises(LookupError, match="boom"):
        oddjob.await_many(jobs, timeout=WAIT)
    assert not jobs[2].done()  # raised while the slow job still ran
    release.set()
    assert oddjob.await_(jobs[2], timeout=WAIT) == "slow"


def test_await_many_waits_in_order_for_an_earlier_job_when_a_later_one_fails(make_pool):
    # The first failure in order wins: a later job's failure wakes the wait, but an
    # earlier job still running is waited for, and its own failure is the one raised.
    pool = make_pool(2)
    later_failed = threading.Event()

    def earlier():
        assert later_failed.wait(WAIT)
        time.sleep(0.05)  # still running when the wait wakes up
        raise KeyError("earlier")

    taken = gate()

    def later():
        try:
            assert taken.wait(WAIT)  # not failed before the call starts: that would win
            raise ValueError("later")
        finally:
            later_failed.set()

    jobs = [oddjob.async_perform(pool, earlier), oddjob.async_perform(pool, later)]
    with pytest.raises(KeyError, match="earlier"):
        oddjob.await_many([OpensWhenCollected(taken), *jobs], timeout=WAIT)  # type: ignore[arg-type]
    assert jobs[0].done() and jobs[1].done()


def test_await_many_raises_cancelled_while_other_jobs_still_run(make_pool):
    pool = make_pool(1)
    release = gate()
    blocker = oddjob.async_perform(pool, lambda: release.wait(WAIT))
    queued = oddjob.async_perform(pool, str)
    jobs: list[oddjob.Job[Any]] = [queued, blocker]  # a Job[str] and a Job[bool]
    canceller = threading.Timer(0.05, queued.cancel)
    canceller.start()
    try:
        with pytest.raises(CancelledError):
            oddjob.await_many(jobs, timeout=WAIT)
        assert not blocker.done()
    finally:
        canceller.join(WAIT)
        release.set()
    assert oddjob.await_(blocker, timeout=WAIT) is True


def test_jobs_finishing_after_an_await_many_timed_out_do_not_cut_a_later_wait_short(
    make_pool,
):
    # The first job is still running when its turn comes, and so is the second: the call
    # then sleeps once for the rest, and times out. Those jobs still count down when
    # they finish; that must reach nothing the thread waits on later.
    pool = make_pool(4)
    first, second = gate(), gate()

    def soon() -> object:
        time.sleep(0.02)  # still running when its turn comes
        return "soon"

    def held() -> object:
        return first.wait(WAIT)

    jobs = [oddjob.async_perform(pool, soon)]
    jobs += [oddjob.async_perform(pool, held) for _ in range(2)]
    with pytest.raises(TimeoutError):
        oddjob.await_many(jobs, timeout=0.3)
    assert jobs[0].done() and not jobs[1].done()
    late = oddjob.async_perform(pool, lambda: second.wait(WAIT) and "late")
    first.set()
    assert oddjob.await_many(jobs, timeout=WAIT) == ["soon", True, True]
    with pytest.raises(TimeoutError):
        oddjob.await_(late, timeout=0.1)
    with pytest.raises(TimeoutError):
        oddjob.await_many([late, late], timeout=0.1)
    second.set()
    assert oddjob.await_many([late, late], timeout=WAIT) == ["late", "late"]


def test_await_many_sleeping_for_the_rest_still_wakes_at_a_failure(make_pool):
    # Two jobs not done in turn make the call sleep once for all the rest; a failure
    # among them must end that sleep while a later job still runs, and the earlier job
    # still running is waited for first (the first failure in order wins).
    pool = make_pool(4)
    release, opened = gate(), gate()  # opened once the call collects in order
    failed = threading.Event()

    def boom():
        assert opened.wait(WAIT)
        raise LookupError("boom")

    def after_boom():
        assert failed.wait(WAIT)
        time.sleep(0.05)
        return "after"

    jobs = [
        oddjob.async_perform(pool, lambda: opened.wait(WAIT) and "first"),
        oddjob.async_perform(pool, after_boom),
        oddjob.async_perform(pool, boom),
        oddjob.async_perform(pool, lambda: release.wait(WAIT)),
    ]
    jobs[2].add_done_callback(lambda _job: failed.set())
    with pytest.raises(LookupError, match="boom"):
        oddjob.await_many([OpensWhenCollected(opened), *jobs], timeout=WAIT)  # type: ignore[arg-type]
    assert jobs[1].done() and not jobs[3].done()
    release.set()
    assert oddjob.await_(jobs[3], timeout=WAIT) is True
