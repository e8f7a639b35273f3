"""Dispatch: FIFO order, the pool_size concurrency limit, submits that never block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import oddjob
from support import SETTLE, WAIT, Recorder, block_workers, gate


def test_one_worker_runs_fire_and_forget_jobs_in_submission_order(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    for i in range(200):
        oddjob.perform(pool, ran, i)
    release.set()
    assert ran.wait_for_count(200) == list(range(200))


def test_one_worker_keeps_fifo_order_across_perform_batches_and_async_jobs(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    expected: list[tuple[str, int] | tuple[str, int, int]] = []
    jobs = []
    for round_ in range(10):
        oddjob.perform(pool, ran, ("perform", round_))
        oddjob.perform_many(pool, [("many", round_, j) for j in range(3)], ran)
        jobs.append(oddjob.async_perform(pool, ran, ("async", round_)))
        jobs += oddjob.async_perform_many(pool, [("async_many", round_, j) for j in range(2)], ran)
        expected += [("perform", round_)]
        expected += [("many", round_, j) for j in range(3)]
        expected += [("async", round_)]
        expected += [("async_many", round_, j) for j in range(2)]
    release.set()
    oddjob.await_many(jobs, timeout=WAIT)
    assert ran.wait_for_count(len(expected)) == expected


def test_job_starts_at_once_when_a_worker_is_idle(make_pool):
    pool = make_pool(2)
    started = threading.Event()
    oddjob.perform(pool, started.set)
    assert started.wait(WAIT)


def test_pool_never_runs_more_jobs_at_once_than_its_pool_size(make_pool):
    size = 3
    pool = make_pool(size)
    lock = threading.Lock()
    state = {"active": 0, "max": 0, "started": 0}
    some_started = threading.Condition(lock)
    release = gate()

    def job(i):
        with lock:
            state["active"] += 1
            state["started"] += 1
            state["max"] = max(state["max"], state["active"])
            some_started.notify_all()
        try:
            release.wait(WAIT)
        finally:
            with lock:
                state["active"] -= 1
        return i

    jobs = [oddjob.async_perform(pool, job, i) for i in range(30)]
    with some_started:
        assert some_started.wait_for(lambda: state["started"] >= size, WAIT)
    time.sleep(SETTLE)  # room for a wrong implementation to start a fourth job
    with lock:
        assert state["active"] == size
        assert state["started"] == size
    release.set()
    assert oddjob.await_many(jobs, timeout=WAIT) == list(range(30))
    assert state["max"] == size
    assert state["active"] == 0


def test_concurrency_limit_holds_while_jobs_finish_and_new_ones_start(make_pool):
    size = 2
    pool = make_pool(size)
    lock = threading.Lock()
    state = {"active": 0, "max": 0}

    def job(i):
        with lock:
            state["active"] += 1
            state["max"] = max(state["max"], state["active"])
        time.sleep(0.001)  # keep the job running long enough to overlap others
        with lock:
            state["active"] -= 1
        return i

    jobs = oddjob.async_perform_many(pool, range(200), job)
    assert oddjob.await_many(jobs, timeout=WAIT) == list(range(200))
    assert 1 <= state["max"] <= size


def test_perform_returns_at_once_while_every_worker_is_blocked(make_pool):
    pool = make_pool(2)
    release = gate()
    block_workers(pool, 2, release)
    ran = Recorder()
    returned: list[object] = []
    # Typed "-> None", so mypy rejects using the result: collect it through object-returning
    # views of the calls and check it at run time.
    perform: Callable[..., object] = oddjob.perform
    perform_many: Callable[..., object] = oddjob.perform_many

    def submit():
        for i in range(1000):
            returned.append(perform(pool, ran, i))
        returned.append(perform_many(pool, range(1000, 1100), ran))

    submitter = threading.Thread(target=submit, name="test-submitter")
    submitter.start()
    submitter.join(WAIT)
    assert not submitter.is_alive(), "perform blocked while the pool's workers were busy"
    assert returned == [None] * 1001
    # Async jobs are owned by their creating thread, so these come from this one.
    t0 = time.monotonic()
    jobs = [oddjob.async_perform(pool, ran, 1100)]
    jobs += oddjob.async_perform_many(pool, range(1101, 1110), ran)
    assert time.monotonic() - t0 < WAIT / 2, "async_perform blocked while workers were busy"
    assert not any(job.done() for job in jobs)
    assert len(ran) == 0, "jobs ran although every worker was blocked"
    release.set()
    oddjob.await_many(jobs, timeout=WAIT)
    assert sorted(ran.wait_for_count(1110)) == list(range(1110))


def test_jobs_run_on_the_pools_worker_threads_not_the_caller(make_pool):
    pool = make_pool(2)
    job = oddjob.async_perform(pool, threading.current_thread)
    thread = oddjob.await_(job, timeout=WAIT)
    assert thread is not threading.current_thread()
    assert thread in oddjob.workers(pool)


def test_perform_passes_positional_and_keyword_arguments(make_pool):
    pool = make_pool(1)
    ran = Recorder()

    def job(a, b, *, c, d=4):
        ran((a, b, c, d))

    oddjob.perform(pool, job, 1, 2, c=3)
    oddjob.perform(pool, job, 5, 6, c=7, d=8)
    assert ran.wait_for_count(2) == [(1, 2, 3, 4), (5, 6, 7, 8)]


def test_job_may_take_keyword_arguments_named_pool_and_fn(make_pool):
    pool = make_pool(1)

    def job(**kwargs):
        return kwargs

    result = oddjob.await_(
        oddjob.async_perform(pool, job, pool="p", fn="f", timeout=1), timeout=WAIT
    )
    assert result == {"pool": "p", "fn": "f", "timeout": 1}
    ran = Recorder()
    oddjob.perform(pool, lambda **kw: ran(kw), pool="p", fn="f")
    assert ran.wait_for_count(1) == [{"pool": "p", "fn": "f"}]


def test_pool_object_is_accepted_wherever_a_pool_name_is(make_pool):
    name = make_pool(1)
    pool = oddjob.whereis(name)
    assert isinstance(pool, oddjob.Pool)
    ran = Recorder()
    oddjob.perform(pool, ran, 1)
    oddjob.perform_many(pool, [2, 3], ran)
    job = oddjob.async_perform(pool, ran, 4)
    jobs = oddjob.async_perform_many(pool, [5], ran)
    assert job.pool == name
    oddjob.await_many([job, *jobs], timeout=WAIT)
    assert ran.wait_for_count(5) == [1, 2, 3, 4, 5]
    assert oddjob.workers(pool) == oddjob.workers(name)
