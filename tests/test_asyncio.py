"""Jobs are awaitable from asyncio without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate


def test_await_job_in_a_coroutine_returns_its_result(make_pool):
    pool = make_pool(2)

    async def main():
        job = oddjob.async_perform(pool, lambda x: x * 2, 21)
        return await job

    assert asyncio.run(main()) == 42


def test_await_job_does_not_block_the_event_loop(make_pool):
    pool = make_pool(1)
    release = gate()
    ticks = []

    def job():
        # Finishes only once the event loop has ticked; if awaiting blocked the loop the
        # wait times out and the job returns False.
        return release.wait(WAIT)

    async def ticker():
        for i in range(10):
            ticks.append(i)
            await asyncio.sleep(0.001)
        release.set()

    async def main():
        j = oddjob.async_perform(pool, job)
        result, _ = await asyncio.gather(j, ticker())
        return result

    assert asyncio.run(main()) is True
    assert ticks == list(range(10))


def test_many_jobs_can_be_awaited_together_with_gather(make_pool):
    pool = make_pool(3)

    async def main():
        jobs = oddjob.async_perform_many(pool, range(30), lambda x: x + 1)
        return await asyncio.gather(*jobs)

    assert asyncio.run(main()) == list(range(1, 31))


def test_awaiting_a_finished_job_returns_its_result_at_once(make_pool):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, lambda: "ready")
    oddjob.await_(job, timeout=WAIT)

    async def main():
        return await job, await job

    assert asyncio.run(main()) == ("ready", "ready")


def test_awaiting_a_failed_job_raises_its_exception_in_the_coroutine(make_pool):
    pool = make_pool(1)

    def job():
        raise LookupError("from the job")

    async def main():
        with pytest.raises(LookupError, match="from the job"):
            await oddjob.async_perform(pool, job)
        return "caught"

    assert asyncio.run(main()) == "caught"


def test_await_job_can_be_bounded_with_asyncio_wait_for(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_await(job), 0.05)

    async def _await(j):
        return await j

    asyncio.run(main())
    assert not job.cancelled()  # it was running: a timeout never cancels a running job
    release.set()
    assert oddjob.await_(job, timeout=WAIT) == "blocker 0"


def test_cancelling_the_awaiting_task_cancels_a_still_queued_job(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    job = oddjob.async_perform(pool, ran, "must not run")

    async def waiter(awaiting):
        awaiting.set()
        return await job

    async def main():
        awaiting = asyncio.Event()
        task = asyncio.create_task(waiter(awaiting))
        await asyncio.wait_for(awaiting.wait(), WAIT)
        await asyncio.sleep(0)  # let the task reach `await job`
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    assert job.cancelled()
    later = oddjob.async_perform(pool, ran, "later")
    release.set()
    oddjob.await_(later, timeout=WAIT)
    assert ran.items == ["later"]


def test_cancelling_the_awaiting_task_leaves_a_running_job_to_finish(make_pool):
    pool = make_pool(1)
    release = gate()
    job = block_workers(pool, 1, release)[0]

    async def main():
        task = asyncio.create_task(_await(job))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)

    async def _await(j):
        return await j

    asyncio.run(main())
    assert not job.cancelled()
    release.set()
    assert oddjob.await_(job, timeout=WAIT) == "blocker 0"


def test_awaiting_a_cancelled_job_in_a_coroutine_raises_cancelled_error(make_pool):
    from concurrent.futures import CancelledError

    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    job = oddjob.async_perform(pool, lambda: "never")
    assert job.cancel()

    async def main():
        try:
            await job
        except CancelledError as exc:
            return type(exc)
        return None

    assert asyncio.run(main()) is CancelledError


def test_jobs_can_be_awaited_from_event_loops_in_several_threads(make_pool):
    pool = make_pool(2)
    results = Recorder()

    def run_loop(k):
        async def main():
            jobs = oddjob.async_perform_many(pool, range(k * 10, k * 10 + 10), lambda x: -x)
            return await asyncio.gather(*jobs)

        results((k, asyncio.run(main())))

    threads = [
        threading.Thread(target=run_loop, args=(k,), name=f"test-loop-{k}") for k in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(results.wait_for_count(3)) == [
        (k, [-x for x in range(k * 10, k * 10 + 10)]) for k in range(3)
    ]
