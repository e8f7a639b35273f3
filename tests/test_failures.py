"""A job that raises: its exception reaches await_ (type and traceback kept) or the log."""

from __future__ import annotations

import logging

import pytest

import oddjob
from support import WAIT, Recorder, frame_names


class JobFailed(Exception):
    pass


def failing_job(message):
    raise JobFailed(message)


def is_oddjob_error_record(record):
    return (record.name == "oddjob" or record.name.startswith("oddjob.")) and (
        record.levelno == logging.ERROR
    )


def test_await_reraises_the_jobs_own_exception_type_and_message(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, failing_job, "bad input")
    with pytest.raises(JobFailed, match="bad input") as info:
        oddjob.await_(job, timeout=WAIT)
    assert type(info.value) is JobFailed


def test_awaited_exception_traceback_includes_the_job_functions_frame(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, failing_job, "x")
    with pytest.raises(JobFailed) as info:
        oddjob.await_(job, timeout=WAIT)
    assert "failing_job" in frame_names(info.value)


def test_a_failed_job_raises_its_exception_every_time_it_is_awaited(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, failing_job, "again")
    for _ in range(3):
        with pytest.raises(JobFailed, match="again") as info:
            oddjob.await_(job, timeout=WAIT)
        assert "failing_job" in frame_names(info.value)
    assert job.done()
    assert not job.cancelled()
    assert isinstance(job.exception(timeout=0), JobFailed)
    with pytest.raises(JobFailed):
        job.result(timeout=0)


def test_await_many_raises_the_failing_jobs_exception(make_pool):
    pool = make_pool(2)
    jobs = [
        oddjob.async_perform(pool, lambda: 1),
        oddjob.async_perform(pool, failing_job, "in a batch"),
        oddjob.async_perform(pool, lambda: 3),
    ]
    with pytest.raises(JobFailed, match="in a batch") as info:
        oddjob.await_many(jobs, timeout=WAIT)
    assert "failing_job" in frame_names(info.value)
    # The other jobs are unaffected.
    assert oddjob.await_(jobs[0], timeout=WAIT) == 1
    assert oddjob.await_(jobs[2], timeout=WAIT) == 3


def test_async_perform_many_job_failure_reaches_await(make_pool):
    pool = make_pool(2)

    def maybe_fail(i):
        if i == 3:
            raise JobFailed(f"item {i}")
        return i

    jobs = oddjob.async_perform_many(pool, range(5), maybe_fail)
    with pytest.raises(JobFailed, match="item 3"):
        oddjob.await_many(jobs, timeout=WAIT)
    assert [oddjob.await_(j, timeout=WAIT) for j in jobs if j is not jobs[3]] == [0, 1, 2, 4]


def test_fire_and_forget_failure_is_logged_at_error_on_the_oddjob_logger(
    make_pool, oddjob_log, caplog
):
    pool = make_pool(1)
    oddjob.perform(pool, failing_job, "nobody awaits this")
    oddjob_log.wait_for(is_oddjob_error_record)
    records = [r for r in caplog.records if is_oddjob_error_record(r)]
    assert len(records) == 1
    record = records[0]
    assert record.exc_info is not None, "the log record carries no traceback"
    exc = record.exc_info[1]
    assert isinstance(exc, JobFailed)
    assert str(exc) == "nobody awaits this"
    assert "failing_job" in frame_names(exc)
    assert "failing_job" in caplog.text
    assert "nobody awaits this" in caplog.text


def test_fire_and_forget_batch_failure_is_logged_and_later_items_still_run(
    make_pool, oddjob_log, caplog
):
    pool = make_pool(1)
    ran = Recorder()

    def job(i):
        if i == 2:
            raise JobFailed("item 2")
        ran(i)

    oddjob.perform_many(pool, range(5), job)
    assert ran.wait_for_count(4) == [0, 1, 3, 4]
    oddjob_log.wait_for(is_oddjob_error_record)
    assert "item 2" in caplog.text


@pytest.mark.parametrize("restart_on_error", [False, True])
def test_awaited_failure_is_not_also_logged_as_an_unhandled_error(
    make_pool, oddjob_log, caplog, restart_on_error
):
    pool = make_pool(1, restart_on_error=restart_on_error)
    job = oddjob.async_perform(pool, failing_job, "handled by the caller")
    with pytest.raises(JobFailed):
        oddjob.await_(job, timeout=WAIT)
    # The pool's one worker logs a failure before it takes its next job: once that next
    # job is done, the worker has logged all it will about the first.
    assert oddjob.await_(oddjob.async_perform(pool, lambda: "alive"), timeout=WAIT) == "alive"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in logged if r.exc_info and r.exc_info[1] is job.exception(timeout=0)]
    assert not [r for r in logged if "handled by the caller" in r.getMessage()]


def test_pool_keeps_running_jobs_after_jobs_raise(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    for i in range(3):
        oddjob.perform(pool, failing_job, f"crash {i}")
        oddjob.perform(pool, ran, i)
    job = oddjob.async_perform(pool, failing_job, "async crash")
    with pytest.raises(JobFailed):
        oddjob.await_(job, timeout=WAIT)
    assert oddjob.await_(oddjob.async_perform(pool, lambda: "alive"), timeout=WAIT) == "alive"
    assert ran.wait_for_count(3) == [0, 1, 2]
    assert len(oddjob.workers(pool)) == 1


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_a_job_reaches_await_and_does_not_take_down_the_pool(make_pool, exc_type):
    pool = make_pool(1)

    def job():
        raise exc_type("from the job")

    with pytest.raises(exc_type):
        oddjob.await_(oddjob.async_perform(pool, job), timeout=WAIT)
    assert oddjob.await_(oddjob.async_perform(pool, lambda: "alive"), timeout=WAIT) == "alive"
    assert oddjob.whereis(pool) is not None
