"""A failed async job whose exception nobody read (contract v2, "Waiting on many jobs"):
once the Job is garbage-collected, "Job exception was never retrieved" is logged at ERROR
on the "oddjob" logger, with the job's traceback, as asyncio does for tasks. Reading the
outcome (await_, result, exception, await, await_many) prevents it; looking (done,
add_done_callback, wait, as_completed) does not. Successful and cancelled jobs log
nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import oddjob
import support
from support import WAIT, block_workers, gate

MESSAGE = "Job exception was never retrieved"


class Boom(Exception):
    pass


def explode(tag: str) -> None:
    raise Boom(f"boom {tag}")


def fine(tag: str) -> str:
    return tag


def finished(name: str, fn: Callable[[str], Any], tag: str = "x") -> Any:
    """An async job of fn on pool `name` (one worker), done, and let go by its worker:
    a job queued after it has finished too, so the worker holds no reference to it."""
    job = oddjob.async_perform(name, fn, tag)
    oddjob.wait([job], timeout=WAIT)  # looks, does not read
    assert job.done()
    assert oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT) == "after"
    return job


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """pytest's caplog, capturing the "oddjob" logger at every level."""
    caplog.set_level(logging.DEBUG, logger="oddjob")
    return caplog


def unretrieved(caplog: pytest.LogCaptureFixture, ref: int) -> list[logging.LogRecord]:
    """The never-retrieved records of the job numbered ref."""
    return [
        r
        for r in caplog.records
        if r.name == "oddjob" and MESSAGE in r.getMessage() and f"ref={ref} " in r.getMessage()
    ]


def collect(job_holder: list[Any]) -> int:
    """Drop the last reference to the job in job_holder and collect; its ref."""
    ref: int = job_holder[0].ref
    job_holder.clear()
    gc.collect()
    gc.collect()
    return ref


def test_a_failed_job_collected_unread_logs_once_with_its_traceback(make_pool, caplog):
    name = make_pool(1)
    job = finished(name, explode, "unread")
    ref = job.ref
    assert unretrieved(caplog, ref) == [], "logged before the Job was collected"
    del job
    gc.collect()
    gc.collect()
    (record,) = unretrieved(caplog, ref)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    exc_type, exc, tb = record.exc_info
    assert exc_type is Boom and str(exc) == "boom unread"
    frames = [frame.name for frame in traceback.extract_tb(tb)]
    assert "explode" in frames, frames
    assert f"pool={name!r}" in record.getMessage()


def test_an_unread_failed_job_of_a_batch_logs_too(make_pool, caplog):
    name = make_pool(1)
    jobs = oddjob.async_perform_many(name, ["a", "b"], explode)
    oddjob.wait(jobs, timeout=WAIT)
    oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT)
    refs = [job.ref for job in jobs]
    with pytest.raises(Boom):
        oddjob.await_(jobs[0], WAIT)  # the first is read, the second is not
    del jobs
    gc.collect()
    assert unretrieved(caplog, refs[0]) == []
    assert len(unretrieved(caplog, refs[1])) == 1


def _await(job: Any) -> None:
    with pytest.raises(Boom):
        oddjob.await_(job, WAIT)


def _result(job: Any) -> None:
    with pytest.raises(Boom):
        job.result(WAIT)


def _exception(job: Any) -> None:
    assert isinstance(job.exception(WAIT), Boom)


def _asyncio_await(job: Any) -> None:
    async def main() -> None:
        with pytest.raises(Boom):
            await job

    asyncio.run(main())


def _await_many(job: Any) -> None:
    with pytest.raises(Boom):
        oddjob.await_many([job], WAIT)


READERS = {
    "await_": _await,
    "result": _result,
    "exception": _exception,
    "await": _asyncio_await,
    "await_many": _await_many,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_reading_the_outcome_prevents_the_log(make_pool, caplog, reader):
    name = make_pool(1)
    holder = [finished(name, explode)]
    READERS[reader](holder[0])
    ref = collect(holder)
    assert unretrieved(caplog, ref) == []


@pytest.mark.parametrize("reader", ["await_", "exception", "await_many"])
def test_reading_before_the_job_has_finished_prevents_the_log(make_pool, caplog, reader):
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    holder = [oddjob.async_perform(name, explode, "later")]
    assert not holder[0].done()
    release.set()
    READERS[reader](holder[0])  # waits for the job, then reads its exception
    oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT)
    ref = collect(holder)
    assert unretrieved(caplog, ref) == []


def _done(job: Any) -> None:
    assert job.done() and not job.cancelled()


def _callback(job: Any) -> None:
    seen: list[Any] = []
    job.add_done_callback(seen.append)
    assert seen == [job]
    seen.clear()


def _wait_all(job: Any) -> None:
    done, not_done = oddjob.wait([job], timeout=WAIT)
    assert done == {job} and not not_done


def _wait_first_exception(job: Any) -> None:
    done, _ = oddjob.wait([job], timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION)
    assert done == {job}


def _as_completed(job: Any) -> None:
    assert list(oddjob.as_completed([job], timeout=WAIT)) == [job]


def _cancel(job: Any) -> None:
    assert job.cancel() is False  # too late: it has finished


LOOKERS = {
    "done": _done,
    "add_done_callback": _callback,
    "wait": _wait_all,
    "wait(FIRST_EXCEPTION)": _wait_first_exception,
    "as_completed": _as_completed,
    "cancel": _cancel,
}


@pytest.mark.parametrize("looker", list(LOOKERS))
def test_looking_at_a_failed_job_is_not_reading_it(make_pool, caplog, looker):
    name = make_pool(1)
    holder = [finished(name, explode)]
    LOOKERS[looker](holder[0])
    ref = collect(holder)
    assert len(unretrieved(caplog, ref)) == 1


@pytest.mark.parametrize("when", ["failed before the call", "fails during the call"])
def test_wait_first_exception_returning_on_a_failure_is_not_reading_it(make_pool, caplog, when):
    """wait(FIRST_EXCEPTION) has to look at the failure to return early (another job
    is still running): looking is not reading."""
    name = make_pool(2)
    release, go = gate(), gate()
    (running,) = block_workers(name, 1, release)

    def explode_on_go(tag: str) -> None:
        go.wait(WAIT)
        explode(tag)

    holder = [oddjob.async_perform(name, explode_on_go, "first exception")]
    if when == "failed before the call":
        go.set()
        assert oddjob.wait(holder, timeout=WAIT)[0] == set(holder)
    else:
        threading.Timer(0.05, go.set).start()
    done, not_done = oddjob.wait(
        [*holder, running], timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION
    )
    assert done == set(holder) and not_done == {running}
    del done, not_done  # the sets hold the jobs
    # The failed job's worker has let go of it once it takes another job.
    assert oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT) == "after"
    release.set()
    assert oddjob.await_(running, WAIT) == "blocker 0"
    ref = collect(holder)
    assert len(unretrieved(caplog, ref)) == 1


class Marker:
    """A local of a failing job's frame: alive as long as its traceback is."""


def test_the_worker_keeps_nothing_of_a_failed_job(make_pool):
    """Once the failure is read and the Job dropped, its traceback (and the locals of
    its frames) is freed: the worker that ran it keeps no reference to it."""
    name = make_pool(1)
    markers: list[weakref.ref[Marker]] = []

    def fail_with_a_local() -> None:
        marker = Marker()
        markers.append(weakref.ref(marker))
        raise Boom("with a local")

    holder = [oddjob.async_perform(name, fail_with_a_local)]
    assert isinstance(holder[0].exception(WAIT), Boom)
    assert oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT) == "after"
    collect(holder)
    assert markers[0]() is None, "something still holds the failed job's traceback"


class Callback:
    """A done callback that the test watches the lifetime of."""

    def __call__(self, job: Any) -> None:
        pass


@pytest.mark.parametrize("fn", [fine, explode])
def test_the_worker_keeps_nothing_of_a_finished_jobs_done_callbacks(make_pool, fn):
    """Once a job has finished and its callbacks have run, the worker (now idle)
    holds none of them: whatever a callback refers to can be freed."""
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    holder = [oddjob.async_perform(name, fn, "with a callback")]
    callback = Callback()
    alive = weakref.ref(callback)
    holder[0].add_done_callback(callback)
    del callback
    release.set()
    oddjob.wait(holder, timeout=WAIT)
    until_idle(name)
    if fn is explode:
        assert isinstance(holder[0].exception(0), Boom)
    collect(holder)
    assert alive() is None, "the idle worker still holds the finished job's done callbacks"


def until_idle(name: str) -> None:
    """Wait until the pool's only worker has gone idle (it has finished with its job)."""
    pool = oddjob.whereis(name)
    assert pool is not None
    deadline = time.monotonic() + WAIT
    while pool.queue.idle_count() != 1:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.001)


class Owner:
    """Holds its jobs, whose function is its own method: each job is in a cycle."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def fail(self) -> None:
        raise Boom("in a cycle")


def test_a_failed_job_in_a_reference_cycle_logs_when_the_cycle_is_collected(
    make_pool, caplog, core
):
    name = make_pool(1)
    owner = Owner()
    owner.jobs.append(oddjob.async_perform(name, owner.fail))
    oddjob.wait(owner.jobs, timeout=WAIT)
    assert oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT) == "after"
    ref = owner.jobs[0].ref
    del owner
    gc.collect()
    (record,) = unretrieved(caplog, ref)
    assert record.exc_info is not None and record.exc_info[0] is Boom


def test_a_failed_job_in_a_cycle_through_its_own_traceback_logs(make_pool, caplog):
    """The job's frame holds the Job: Job -> exception -> traceback -> frame -> Job."""
    name = make_pool(1)
    box: list[Any] = []

    def fail_holding_myself() -> None:
        me = box[0]
        raise Boom(f"job {me.ref} in a cycle")

    box.append(oddjob.async_perform(name, fail_holding_myself))
    oddjob.wait(box, timeout=WAIT)
    assert oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT) == "after"
    ref = box[0].ref
    box.clear()  # the Job is left only in its own cycle
    gc.collect()
    assert len(unretrieved(caplog, ref)) == 1


def test_a_successful_job_logs_nothing(make_pool, caplog):
    name = make_pool(1)
    holder = [finished(name, fine)]
    ref = collect(holder)
    assert unretrieved(caplog, ref) == []
    assert not [r for r in caplog.records if f"pool={name!r}" in r.getMessage()]


def test_a_cancelled_job_logs_nothing(make_pool, caplog):
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    holder = [oddjob.async_perform(name, explode, "never runs")]
    assert holder[0].cancel()
    release.set()
    oddjob.await_(oddjob.async_perform(name, fine, "after"), WAIT)
    assert holder[0].cancelled()
    ref = collect(holder)
    assert unretrieved(caplog, ref) == []


def test_a_job_failed_by_stop_with_cancel_pending_logs_nothing(make_pool, caplog):
    """stop(cancel_pending=True) cancels queued async jobs: cancelled, not failed."""
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)
    holder = [oddjob.async_perform(name, explode, "dropped")]
    workers = oddjob.workers(name)
    oddjob.stop(name, wait=False, cancel_pending=True)
    release.set()
    support.join_all(workers)
    assert holder[0].cancelled()
    ref = collect(holder)
    assert unretrieved(caplog, ref) == []
