"""Pools: start_link forms, the Pool object and context manager, stop, whereis, workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate, join_all, new_name, track


def worker_count(pool):
    return len(oddjob.workers(pool))


def test_start_link_with_a_name_starts_a_pool_with_five_workers():
    name = new_name()
    pool = oddjob.start_link(name)
    assert isinstance(pool, oddjob.Pool)
    assert oddjob.whereis(name) is not None
    assert worker_count(name) == 5
    assert oddjob.await_(oddjob.async_perform(name, lambda: "ran"), timeout=WAIT) == "ran"


def test_start_link_with_a_dict_of_options_including_the_name():
    name = new_name()
    pool = oddjob.start_link({"name": name, "pool_size": 2})
    assert isinstance(pool, oddjob.Pool)
    assert worker_count(name) == 2


def test_start_link_with_a_name_and_options_pair():
    name = new_name()
    oddjob.start_link((name, {"pool_size": 3}))
    assert worker_count(name) == 3


def test_start_link_with_a_name_and_keyword_options():
    name = new_name()
    oddjob.start_link(name, pool_size=4)
    assert worker_count(name) == 4


def test_start_link_with_only_keyword_options_including_the_name():
    name = new_name()
    oddjob.start_link(name=name, pool_size=2)
    assert worker_count(name) == 2


def test_workers_are_live_threads_named_after_oddjob():
    name = new_name()
    oddjob.start_link(name, pool_size=3)
    workers = oddjob.workers(name)
    assert isinstance(workers, list)
    assert len(set(workers)) == 3
    for t in workers:
        assert isinstance(t, threading.Thread)
        assert t.is_alive()
        assert t.name.startswith("oddjob")


def test_whereis_returns_the_running_pool_and_none_otherwise():
    name = new_name()
    assert oddjob.whereis(name) is None
    pool = oddjob.start_link(name, pool_size=1)
    found = oddjob.whereis(name)
    assert isinstance(found, oddjob.Pool)
    assert found is pool
    oddjob.stop(name)
    assert oddjob.whereis(name) is None


def test_starting_a_running_name_raises_pool_already_started_error():
    name = new_name()
    oddjob.start_link(name, pool_size=2)
    before = oddjob.workers(name)
    for arg in (name, {"name": name}, (name, {"pool_size": 1})):
        with pytest.raises(oddjob.PoolAlreadyStartedError) as info:
            oddjob.start_link(arg)
        assert isinstance(info.value, oddjob.OddJobError)
    # The running pool is untouched.
    assert oddjob.workers(name) == before
    assert oddjob.await_(oddjob.async_perform(name, lambda: "still"), timeout=WAIT) == "still"


def test_pool_context_manager_starts_the_pool_and_stops_it_on_exit():
    name = track(new_name())
    with oddjob.Pool(name, pool_size=3) as pool:
        assert isinstance(pool, oddjob.Pool)
        assert oddjob.whereis(name) is pool
        workers = oddjob.workers(name)
        assert len(workers) == 3
        assert oddjob.await_(pool.async_perform(lambda: "inside"), timeout=WAIT) == "inside"
    assert oddjob.whereis(name) is None
    join_all(workers, timeout=0.5)  # stop joined them already


def test_pool_context_manager_drains_queued_jobs_on_exit():
    name = track(new_name())
    ran = Recorder()
    release = gate()
    with oddjob.Pool(name, pool_size=3) as pool:
        block_workers(pool, 3, release)
        for i in range(30):
            pool.perform(ran, i)
        pool.perform_many(range(30, 40), ran)
        jobs = pool.async_perform_many(range(40, 45), ran)
        assert len(ran) == 0
        release.set()
    # __exit__ returned: everything queued has run, nothing was cancelled.
    assert sorted(ran.items) == list(range(45))
    assert all(job.done() and not job.cancelled() for job in jobs)
    assert oddjob.whereis(name) is None


def test_pool_context_manager_stops_the_pool_when_the_block_raises():
    name = track(new_name())
    ran = Recorder()
    with pytest.raises(ZeroDivisionError), oddjob.Pool(name, pool_size=1) as pool:
        pool.perform(ran, "queued before the error")
        raise ZeroDivisionError
    assert oddjob.whereis(name) is None
    assert ran.items == ["queued before the error"]


def test_pool_object_job_methods_send_to_that_pool():
    name = track(new_name())
    with oddjob.Pool(name, pool_size=1) as pool:
        ran = Recorder()
        # Typed "-> None", so mypy rejects using the result: check it at run time through
        # object-returning views of the methods.
        perform: Callable[..., object] = pool.perform
        perform_many: Callable[..., object] = pool.perform_many
        assert perform(ran, "perform") is None
        assert perform_many(["many 0", "many 1"], ran) is None

        def pair(a: int, *, b: int) -> tuple[int, int]:
            return (a, b)

        job = pool.async_perform(pair, 1, b=2)
        jobs = pool.async_perform_many(["async many"], ran)
        assert job.pool == name
        assert [j.pool for j in jobs] == [name]
        assert oddjob.await_(job, timeout=WAIT) == (1, 2)
        oddjob.await_many(jobs, timeout=WAIT)
        assert ran.items == ["perform", "many 0", "many 1", "async many"]
        assert pool.async_perform_many([], ran) == []


def test_pool_object_from_start_link_has_the_job_methods():
    name = new_name()
    pool = oddjob.start_link(name, pool_size=2)
    ran = Recorder()
    pool.perform(ran, 1)
    pool.perform_many([2], ran)
    jobs = [pool.async_perform(ran, 3), *pool.async_perform_many([4], ran)]
    oddjob.await_many(jobs, timeout=WAIT)
    assert sorted(ran.wait_for_count(4)) == [1, 2, 3, 4]


def test_stop_frees_the_name_for_a_new_start_link():
    name = new_name()
    oddjob.start_link(name, pool_size=1)
    oddjob.stop(name)
    assert oddjob.whereis(name) is None
    oddjob.start_link(name, pool_size=2)
    assert worker_count(name) == 2
    assert oddjob.await_(oddjob.async_perform(name, lambda: "again"), timeout=WAIT) == "again"


def test_stop_runs_queued_jobs_and_joins_the_workers():
    name = new_name()
    oddjob.start_link(name, pool_size=2)
    release = gate()
    block_workers(name, 2, release)
    ran = Recorder()
    oddjob.perform_many(name, range(50), ran)
    job = oddjob.async_perform(name, lambda: "queued async")
    workers = oddjob.workers(name)
    timer = threading.Timer(0.05, release.set)
    timer.start()
    oddjob.stop(name, timeout=WAIT)
    timer.join(WAIT)
    assert sorted(ran.items) == list(range(50))
    assert oddjob.await_(job, timeout=0) == "queued async"
    assert not any(t.is_alive() for t in workers)


def test_stop_with_cancel_pending_cancels_queued_async_jobs():
    name = new_name()
    pool = oddjob.start_link(name, pool_size=1)
    release = gate()
    running = block_workers(name, 1, release)[0]
    ran = Recorder()
    queued = oddjob.async_perform_many(name, range(5), ran)
    # Cancelled while the worker is still busy: released first, the worker could take a
    # queued job before stop() drops them (it does, without the GIL).
    oddjob.stop(name, wait=False, cancel_pending=True)
    assert all(job.cancelled() for job in queued)
    release.set()
    pool.join(time.monotonic() + WAIT)
    assert oddjob.await_(running, timeout=0) == "blocker 0"  # a running job finishes
    assert ran.items == []


def test_stop_accepts_a_pool_object():
    name = new_name()
    pool = oddjob.start_link(name, pool_size=1)
    oddjob.stop(pool)
    assert oddjob.whereis(name) is None


def test_stopping_a_stopped_pool_raises_pool_not_found_error():
    name = new_name()
    oddjob.start_link(name, pool_size=1)
    oddjob.stop(name)
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.stop(name)


@pytest.mark.parametrize(
    "send",
    [
        lambda pool: oddjob.perform(pool, print),
        lambda pool: oddjob.perform_many(pool, [1], print),
        lambda pool: oddjob.async_perform(pool, print),
        lambda pool: oddjob.async_perform_many(pool, [1], print),
        lambda pool: oddjob.workers(pool),
    ],
    ids=["perform", "perform_many", "async_perform", "async_perform_many", "workers"],
)
def test_calls_on_a_stopped_pool_raise_pool_not_found_error(send):
    name = new_name()
    oddjob.start_link(name, pool_size=1)
    oddjob.stop(name)
    with pytest.raises(oddjob.PoolNotFoundError):
        send(name)


def test_job_methods_of_a_stopped_pool_object_raise_pool_not_found_error():
    name = track(new_name())
    with oddjob.Pool(name, pool_size=1) as pool:
        pass
    with pytest.raises(oddjob.PoolNotFoundError):
        pool.perform(print)
    with pytest.raises(oddjob.PoolNotFoundError):
        pool.async_perform(print)


def test_pools_started_and_stopped_repeatedly_leave_no_threads_behind():
    name = new_name()
    before = {t for t in threading.enumerate() if t.name.startswith("oddjob")}
    seen = []
    for i in range(30):
        oddjob.start_link(name, pool_size=3)
        seen += oddjob.workers(name)

        def tagged(x: int, i: int = i) -> tuple[int, int]:
            return (i, x)

        jobs = oddjob.async_perform_many(name, range(5), tagged)
        assert oddjob.await_many(jobs, timeout=WAIT) == [(i, x) for x in range(5)]
        oddjob.stop(name)
        assert oddjob.whereis(name) is None
    assert len(set(seen)) == 90
    join_all(seen, timeout=5)
    after = {t for t in threading.enumerate() if t.name.startswith("oddjob")}
    assert after <= before


def test_pools_are_independent_of_each_other():
    a, b = new_name(), new_name()
    oddjob.start_link(a, pool_size=1)
    oddjob.start_link(b, pool_size=1)
    release = gate()
    block_workers(a, 1, release)
    # b runs while a is blocked
    assert oddjob.await_(oddjob.async_perform(b, lambda: "b"), timeout=WAIT) == "b"
    assert not set(oddjob.workers(a)) & set(oddjob.workers(b))
    oddjob.stop(b)
    assert oddjob.whereis(a) is not None
    release.set()
