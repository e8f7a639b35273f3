"""The Job handle: attributes, done/result/exception and done callbacks."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate, join_all


def add(a, b, *, scale=1):
    return (a + b) * scale


def test_job_attributes_describe_the_call(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 1, 2, scale=10)
    assert job.pool == pool
    assert job.function is add
    assert job.args == (1, 2)
    assert job.kwargs == {"scale": 10}
    assert job.owner == threading.get_ident()
    assert job.async_ is True
    assert oddjob.await_(job, timeout=WAIT) == 30


def test_job_without_keyword_arguments_has_empty_kwargs(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 1, 2)
    assert job.args == (1, 2)
    assert job.kwargs == {}
    batch = oddjob.async_perform_many(pool, [7], str)
    assert batch[0].function is str
    assert batch[0].args == (7,)
    assert batch[0].kwargs == {}
    oddjob.await_many([job, *batch], timeout=WAIT)


def test_jobs_are_instances_of_the_selected_cores_job_class(make_pool, core):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 1, 2)
    assert type(job) is core.Job
    assert all(type(j) is core.Job for j in oddjob.async_perform_many(pool, [1, 2], str))
    oddjob.await_(job, timeout=WAIT)


def test_job_refs_are_unique_and_hashable_across_pools(make_pool):
    pools = [make_pool(2), make_pool(1)]
    jobs = []
    for pool in pools:
        jobs += [oddjob.async_perform(pool, add, i, i) for i in range(50)]
        jobs += oddjob.async_perform_many(pool, range(50), str)
    refs = {job.ref for job in jobs}
    assert len(refs) == len(jobs)
    assert all(hash(job.ref) == hash(job.ref) for job in jobs)
    oddjob.await_many(jobs, timeout=WAIT)
    assert {job.ref for job in jobs} == refs  # a ref does not change when the job finishes


def test_job_owner_is_the_ident_of_the_creating_thread(make_pool):
    pool = make_pool(1)
    made: dict[str, Any] = {}  # the creator's ident, its Job and its batch's Jobs

    def create():
        made["ident"] = threading.get_ident()
        made["job"] = oddjob.async_perform(pool, add, 1, 1)
        made["batch"] = oddjob.async_perform_many(pool, [1, 2], str)

    creator = threading.Thread(target=create, name="test-creator")
    creator.start()
    join_all([creator])
    assert made["job"].owner == made["ident"]
    assert [j.owner for j in made["batch"]] == [made["ident"]] * 2
    assert made["ident"] != threading.get_ident()


def test_done_result_and_exception_follow_the_job_through_its_life(make_pool):
    pool = make_pool(1)
    release = gate()
    started = threading.Event()

    def job():
        started.set()
        release.wait(WAIT)
        return "value"

    j = oddjob.async_perform(pool, job)
    assert started.wait(WAIT)
    assert not j.done()
    with pytest.raises(TimeoutError):
        j.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        j.exception(timeout=0.01)
    release.set()
    assert j.result(timeout=WAIT) == "value"
    assert j.done()
    assert j.exception(timeout=0) is None
    assert not j.cancelled()


def test_result_without_timeout_waits_for_the_job(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    timer = threading.Timer(0.1, release.set)
    timer.start()
    try:
        assert job.result() == "blocker 0"
        assert job.exception() is None
    finally:
        timer.join(WAIT)


def test_exception_returns_the_jobs_exception_without_raising(make_pool):
    pool = make_pool(1)
    error = ValueError("kept")

    def job():
        raise error

    j = oddjob.async_perform(pool, job)
    assert j.exception(timeout=WAIT) is error
    assert j.done()
    with pytest.raises(ValueError, match="kept"):
        j.result(timeout=0)


def test_done_callback_is_called_with_the_job_when_it_finishes(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    called = Recorder()
    job.add_done_callback(called)
    job.add_done_callback(lambda j: called(("second", j)))
    assert called.items == []
    release.set()
    assert called.wait_for_count(2) == [job, ("second", job)]
    assert job.done()


def test_done_callback_added_to_a_finished_job_is_called_at_once(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 2, 2)
    oddjob.await_(job, timeout=WAIT)
    called: list[oddjob.Job[int]] = []
    job.add_done_callback(called.append)
    assert called == [job]


def test_done_callback_sees_the_jobs_result(make_pool):
    pool = make_pool(1)
    seen = Recorder()
    release = gate()
    job = block_workers(pool, 1, release)[0]
    job.add_done_callback(lambda j: seen((j.done(), j.result(timeout=0))))
    release.set()
    assert seen.wait_for_count(1) == [(True, "blocker 0")]


def test_done_callback_is_called_once_for_a_failed_job(make_pool):
    pool = make_pool(1)
    called = Recorder()

    def job():
        raise ValueError("x")

    j = oddjob.async_perform(pool, job)
    j.add_done_callback(called)
    with pytest.raises(ValueError):
        oddjob.await_(j, timeout=WAIT)
    called.wait_for_count(1)
    oddjob.await_(oddjob.async_perform(pool, add, 0, 0), timeout=WAIT)
    assert called.items == [j]


def test_raising_done_callback_is_logged_not_propagated(make_pool, oddjob_log, caplog):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]
    after = Recorder()

    def bad_callback(j):
        raise RuntimeError("callback failed")

    job.add_done_callback(bad_callback)
    job.add_done_callback(after)  # later callbacks still run
    release.set()
    assert after.wait_for_count(1) == [job]
    assert oddjob.await_(job, timeout=WAIT) == "blocker 0"
    oddjob_log.wait_for(lambda r: r.levelno >= logging.ERROR)
    assert "callback failed" in caplog.text
    # The pool is unharmed.
    assert oddjob.await_(oddjob.async_perform(pool, add, 1, 1), timeout=WAIT) == 2


def test_raising_callback_on_an_already_finished_job_is_logged_not_propagated(
    make_pool, oddjob_log, caplog
):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 1, 1)
    oddjob.await_(job, timeout=WAIT)

    def bad_callback(j):
        raise RuntimeError("late callback failed")

    job.add_done_callback(bad_callback)  # must not raise
    oddjob_log.wait_for(lambda r: r.levelno >= logging.ERROR)
    assert "late callback failed" in caplog.text


def test_add_done_callback_rejects_a_non_callable(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, add, 1, 1)
    with pytest.raises(TypeError):
        job.add_done_callback("not callable")  # type: ignore[arg-type]
    oddjob.await_(job, timeout=WAIT)


def test_every_unread_failure_is_logged_even_when_the_records_keep_them(make_pool):
    # Jobs are recycled (the compiled core keeps a freelist): a Job whose finalization
    # ran once must still report its own unread failure, every time, and a handler that
    # keeps its records must not keep the Jobs alive.
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    def fail() -> None:
        raise ValueError("unread")

    handler = Keep(logging.ERROR)
    logging.getLogger("oddjob").addHandler(handler)
    try:
        name = make_pool(1)
        for i in range(40):
            job = oddjob.async_perform(name, fail)
            if i % 2:
                assert isinstance(job.exception(WAIT), ValueError)  # read: no log
            else:
                oddjob.wait([job], timeout=WAIT)  # done, never read
            assert job.done()
            del job
            gc.collect()
    finally:
        logging.getLogger("oddjob").removeHandler(handler)
    unread = [r for r in kept if "never retrieved" in r.getMessage()]
    assert len(unread) == 20
    assert all(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in unread)
    assert all(not any(type(a).__name__ == "Job" for a in (r.args or ())) for r in unread)
