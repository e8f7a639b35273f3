"""oddjob.aio: the sending calls as coroutines that never block the event loop.

Each test runs its coroutine with asyncio.run inside a plain test function (no
pytest-asyncio), under one overall asyncio.timeout. Waits for something that happens on
a worker thread are bounded polls (`until`) or asyncio.timeout(WAIT); gates that a broken
implementation could leave the event loop blocked on open themselves after 2 * WAIT
(the `safety_gate` fixture), so that such a test fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import oddjob
import support
from oddjob import aio
from support import WAIT, Recorder, block_workers, gate


def arun(main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run(main()) with one overall bound."""

    async def bounded() -> Any:
        async with asyncio.timeout(3 * WAIT):
            return await main()

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll predicate on the event loop (letting it run) until true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.001)


@pytest.fixture
def safety_gate() -> Iterator[Callable[[], threading.Event]]:
    """safety_gate() is a gate that also opens by itself after 2 * WAIT: only ever for
    a broken implementation that blocks the event loop thread on it (every wait of the
    test proper is WAIT), which then fails the test instead of hanging it. Its timer
    ends with the test."""
    timers: list[threading.Timer] = []

    def make() -> threading.Event:
        event = gate()
        timer = threading.Timer(2 * WAIT, event.set)
        timer.daemon = True
        timer.start()
        timers.append(timer)
        return event

    yield make
    for timer in timers:
        timer.cancel()
        timer.join(WAIT)


def pool_of(name: str) -> oddjob.Pool:
    found = oddjob.whereis(name)
    assert found is not None
    return found


def queue_of(name: str) -> Any:
    return pool_of(name).queue


def fill(pool: str, release: threading.Event, workers: int = 1, queued: int = 1) -> Recorder:
    """Occupy `workers` workers until release, then queue `queued` fire-and-forget
    fillers behind them (recorded as "filler i" when they run): a bounded pool with
    max_queue=queued is then full."""
    ran = Recorder()
    block_workers(pool, workers, release)
    for i in range(queued):
        oddjob.perform(pool, ran, f"filler {i}")
    assert len(queue_of(pool)) == queued
    return ran


class Boom(Exception):
    pass


def boom(msg: str = "boom") -> None:
    raise Boom(msg)


# -- the API table: every coroutine's result --------------------------------------------


def test_perform_returns_none_and_the_job_runs(make_pool):
    pool = make_pool(2)
    ran = Recorder()

    def job(x, *, tag):
        ran((x, tag))

    # Typed "-> None", so mypy rejects using the result: check it at run time through
    # an object-returning view.
    perform: Callable[..., Awaitable[object]] = aio.perform

    async def main():
        assert await perform(pool, job, 1, tag="a") is None
        assert await perform(pool_of(pool), job, 2, tag="b") is None  # a Pool object

    arun(main)
    assert sorted(ran.wait_for_count(2)) == [(1, "a"), (2, "b")]


def test_async_perform_returns_a_job_that_can_be_awaited(make_pool, core):
    pool = make_pool(2)

    def times(x, *, y):
        return x * y

    async def main():
        job = await aio.async_perform(pool, times, 6, y=7)
        assert isinstance(job, core.Job)
        assert job.pool == pool and job.args == (6,) and job.kwargs == {"y": 7}
        return job, await job

    job, result = arun(main)
    assert result == 42
    assert oddjob.await_(job, timeout=WAIT) == 42  # read again, from sync code


def test_perform_many_runs_one_job_per_item_in_order_and_returns_none(make_pool):
    pool = make_pool(1)
    ran = Recorder()

    perform_many: Callable[..., Awaitable[object]] = aio.perform_many  # as above

    async def main():
        assert await perform_many(pool, range(5), ran) is None
        assert await perform_many(pool, (x for x in "ab"), ran) is None  # any iterable
        assert await perform_many(pool, [], ran) is None

    arun(main)
    assert ran.wait_for_count(7) == [0, 1, 2, 3, 4, "a", "b"]


def test_async_perform_many_returns_jobs_in_input_order(make_pool):
    pool = make_pool(3)

    async def main():
        jobs = await aio.async_perform_many(pool, range(10), lambda x: x * x)
        assert [job.args for job in jobs] == [(x,) for x in range(10)]
        assert await aio.async_perform_many(pool, [], lambda x: x) == []
        assert await aio.async_perform_many(pool, iter(()), lambda x: x) == []
        return [await job for job in jobs]

    assert arun(main) == [x * x for x in range(10)]


def test_run_returns_the_result(make_pool):
    pool = make_pool(2)

    def add(a, b, *, c):
        return a + b + c

    async def main():
        return await aio.run(pool, add, 1, 2, c=3)

    assert arun(main) == 6


def test_run_reraises_the_jobs_own_exception_with_its_type_and_traceback(make_pool):
    pool = make_pool(1)

    async def main():
        with pytest.raises(Boom, match="from the job") as caught:
            await aio.run(pool, boom, "from the job")
        return caught.value

    exc = arun(main)
    assert type(exc) is Boom
    assert "boom" in support.frame_names(exc)  # the job's own frame is in the traceback


def test_await_many_returns_results_in_the_order_of_jobs_whatever_order_they_finish(make_pool):
    pool = make_pool(3)
    gates = [gate() for _ in range(3)]
    finished = Recorder()

    def job(i):
        assert gates[i].wait(WAIT)
        finished(i)
        return f"result {i}"

    def has_finished(i):
        return i in finished.items

    async def opener():
        for i in (2, 0, 1):  # finish in this order, one after the other
            gates[i].set()
            await until(functools.partial(has_finished, i), f"job {i} finished")

    async def main():
        jobs = await aio.async_perform_many(pool, range(3), job)
        results, _ = await asyncio.gather(aio.await_many(jobs, timeout=WAIT), opener())
        return results

    assert arun(main) == ["result 0", "result 1", "result 2"]
    assert finished.items == [2, 0, 1]


def test_await_many_of_no_jobs_is_an_empty_list():
    async def main():
        return await aio.await_many([]), await aio.await_many(iter([]), timeout=0)

    assert arun(main) == ([], [])


def test_await_many_has_one_overall_deadline_and_leaves_jobs_collectable(make_pool):
    pool = make_pool(3)
    gates = [gate() for _ in range(3)]

    def job(i):
        assert gates[i].wait(WAIT)
        return i

    async def opener():
        # Job i finishes at 0.15, 0.3, 0.55 s: with a deadline per job (0.4 s each)
        # every job would be in time; with one deadline of 0.4 s for the call, the last
        # is not.
        for i, pause in enumerate((0.15, 0.15, 0.25)):
            await asyncio.sleep(pause)
            gates[i].set()

    async def main():
        jobs = await aio.async_perform_many(pool, range(3), job)
        opening = asyncio.create_task(opener())
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await aio.await_many(jobs, timeout=0.4)
        elapsed = time.monotonic() - start
        await opening
        return jobs, elapsed

    jobs, elapsed = arun(main)
    assert elapsed >= 0.35  # it waited for the deadline, not less
    assert not any(job.cancelled() for job in jobs)  # a timeout cancels nothing

    async def again():
        return await aio.await_many(jobs, timeout=WAIT)

    assert arun(again) == [0, 1, 2]  # still collectable, by a later call


def test_await_many_raises_the_first_failure_as_soon_as_it_is_seen(make_pool):
    pool = make_pool(2)
    release = gate()

    def slow():
        assert release.wait(WAIT)
        return "slow"

    async def main():
        slow_job = await aio.async_perform(pool, slow)
        failing = await aio.async_perform(pool, boom, "fails first")
        with pytest.raises(Boom, match="fails first"):
            await aio.await_many([slow_job, failing], timeout=WAIT)
        # Raised while the slower job before it in the list is still running.
        assert not slow_job.done()
        release.set()
        return await slow_job

    assert arun(main) == "slow"


def set_event(event: threading.Event, _job: object) -> None:
    event.set()


def test_await_many_raises_the_failure_seen_first_not_the_first_in_the_list(make_pool):
    pool = make_pool(2)
    gates = [gate(), gate()]

    def fail(i):
        assert gates[i].wait(WAIT)
        raise Boom(f"job {i}")

    async def main():
        jobs = await aio.async_perform_many(pool, [0, 1], fail)
        waiting = asyncio.create_task(aio.await_many(jobs, timeout=WAIT))
        await asyncio.sleep(0.01)  # the task is waiting
        # Job 1 fails, then job 0, both before the event loop runs again (this
        # coroutine holds it, waiting from sync code). A done callback added now runs
        # after await_many's own: once it has, await_many has been told.
        for i in (1, 0):
            told = threading.Event()
            jobs[i].add_done_callback(functools.partial(set_event, told))
            gates[i].set()
            assert told.wait(WAIT)
        with pytest.raises(Boom, match="job 1"):
            await waiting

    arun(main)


def test_await_many_raises_a_job_that_had_failed_before_the_call(make_pool):
    pool = make_pool(1)
    release = gate()

    async def main():
        failed = await aio.async_perform(pool, boom, "already")
        assert isinstance(failed.exception(WAIT), Boom)
        blocked = block_workers(pool, 1, release)[0]
        with pytest.raises(Boom, match="already"):
            await aio.await_many([blocked, failed], timeout=WAIT)
        assert not blocked.done()

    arun(main)


def test_cancelling_the_task_awaiting_await_many_cancels_its_queued_jobs(make_pool):
    pool = make_pool(1)
    release = gate()
    ran = Recorder()

    async def main():
        running = block_workers(pool, 1, release)[0]
        queued = await aio.async_perform(pool, ran, "never")
        task = asyncio.create_task(aio.await_many([running, queued], timeout=WAIT))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running, queued

    running, queued = arun(main)
    assert queued.cancelled()
    assert not running.cancelled()
    release.set()
    assert oddjob.await_(running, timeout=WAIT) == "blocker 0"
    oddjob.await_(oddjob.async_perform(pool, ran, "later"), timeout=WAIT)
    assert ran.items == ["later"]


def test_as_completed_yields_jobs_in_the_order_they_finish(make_pool):
    pool = make_pool(4)
    order = [2, 0, 3, 1]
    gates = [gate() for _ in order]

    def job(i):
        assert gates[i].wait(WAIT)
        if i == 3:
            raise Boom("a failure is yielded too")
        return i

    async def main():
        jobs = await aio.async_perform_many(pool, range(4), job)
        yielded = []
        gates[order[0]].set()
        # Each next job is let finish only once the one before it has been yielded.
        async for done in aio.as_completed(jobs, timeout=WAIT):
            yielded.append(jobs.index(done))
            assert done.done()
            if len(yielded) < len(order):
                gates[order[len(yielded)]].set()
        with pytest.raises(Boom):
            await jobs[3]
        return yielded

    assert arun(main) == order


def test_as_completed_yields_a_cancelled_job_and_each_job_once(make_pool):
    pool = make_pool(1)
    release = gate()

    async def main():
        running = block_workers(pool, 1, release)[0]
        queued = await aio.async_perform(pool, lambda: "never")
        assert queued.cancel()
        release.set()
        return [job async for job in aio.as_completed([queued, running, queued], timeout=WAIT)]

    yielded = arun(main)
    assert len(yielded) == 2 and yielded[0].cancelled() and yielded[1].result(0) == "blocker 0"


def test_as_completed_raises_timeout_error_with_jobs_left_which_stay_collectable(make_pool):
    pool = make_pool(3)
    release = gate()

    def slow(i):
        assert release.wait(WAIT)
        return i

    async def main():
        quick = await aio.async_perform(pool, lambda: "quick")
        slow_jobs = await aio.async_perform_many(pool, [1, 2], slow)
        yielded = []
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="2 of 3"):
            async for job in aio.as_completed([*slow_jobs, quick], timeout=0.2):
                yielded.append(job)
        elapsed = time.monotonic() - start
        assert yielded == [quick]
        assert elapsed >= 0.15
        assert not any(job.done() for job in slow_jobs)
        release.set()
        return await aio.await_many(slow_jobs, timeout=WAIT)

    assert arun(main) == [1, 2]


def test_the_sending_coroutines_check_their_arguments():
    async def main():
        with pytest.raises(oddjob.PoolNotFoundError):
            await aio.perform(support.new_name(), print)
        with pytest.raises(TypeError):
            await aio.run(42, print)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await aio.await_many(["not a job"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            async for _ in aio.as_completed([object()]):  # type: ignore[arg-type]
                pass

    arun(main)


@pytest.mark.parametrize("max_queue", [None, 3])
def test_a_non_callable_or_a_non_iterable_batch_raises_type_error_and_queues_nothing(
    make_pool, max_queue
):
    pool = make_pool(1, max_queue=max_queue)
    release = gate()
    block_workers(pool, 1, release)

    async def main():
        with pytest.raises(TypeError):
            await aio.perform(pool, "not callable")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await aio.async_perform_many(pool, 5, print)  # type: ignore[arg-type]
        assert len(queue_of(pool)) == 0

    arun(main)


# -- bounded queues: waiting for room without blocking the loop ------------------------------


def test_perform_awaits_room_in_a_full_queue_while_the_event_loop_keeps_running(
    make_pool, safety_gate
):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)
    ticks = [0]

    async def ticker():
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    async def main():
        ticking = asyncio.create_task(ticker())
        waiter = asyncio.create_task(aio.perform(pool, ran, "waiter"))
        await until(lambda: queue.waiting() == 1, "the submit waits in line")
        seen = ticks[0]
        await until(lambda: ticks[0] >= seen + 50, "the loop ticks while the submit waits")
        # Really waiting: not queued, not run, still in line.
        assert not waiter.done()
        assert len(queue) == 1 and queue.waiting() == 1
        assert [fn for fn, *_ in queue.snapshot()] == [ran]  # the filler alone
        release.set()
        async with asyncio.timeout(WAIT):
            await waiter
        assert waiter.result() is None
        ticking.cancel()

    arun(main)
    assert ran.wait_for_count(2) == ["filler 0", "waiter"]
    assert queue.waiting() == 0


def test_many_coroutines_waiting_for_room_take_no_thread_each(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        before = threading.active_count(), set(threading.enumerate())
        tasks = [asyncio.create_task(aio.perform(pool, ran, i)) for i in range(20)]
        await until(lambda: queue.waiting() == 20, "20 submits wait in line")
        during = threading.active_count(), set(threading.enumerate())
        release.set()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*tasks)
        return before, during

    (count_before, before), (count_during, during) = arun(main)
    assert not during - before, f"threads started while waiting: {during - before}"
    assert count_during <= count_before
    assert ran.wait_for_count(21) == ["filler 0", *range(20)]


def waiting(queue: Any, n: int) -> bool:
    return bool(queue.waiting() == n)


def _line_up(pool, starters, queue):
    """Start each submitter in turn (a callable that starts one), each only once the one
    before it waits in line: their arrival order is the order of `starters`."""

    async def go():
        started = []
        for k, start in enumerate(starters, 1):
            started.append(start())
            await until(functools.partial(waiting, queue, k), f"submitter {k} waits in line")
        return started

    return go()


def test_coroutines_waiting_for_room_are_served_in_arrival_order(make_pool, safety_gate):
    pool = make_pool(1, max_queue=2)
    release = safety_gate()
    ran = fill(pool, release, queued=2)
    queue = queue_of(pool)

    async def main():
        def starter(i):
            return lambda: asyncio.create_task(aio.perform(pool, ran, i))

        tasks = await _line_up(pool, [starter(i) for i in (3, 1, 4, 0, 2)], queue)
        release.set()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*tasks)

    arun(main)
    assert ran.wait_for_count(7) == ["filler 0", "filler 1", 3, 1, 4, 0, 2]


def test_threads_blocked_in_perform_and_coroutines_keep_one_arrival_order(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)
    threads: list[threading.Thread] = []

    def sync_starter(tag):
        def start():
            t = threading.Thread(target=oddjob.perform, args=(pool, ran, tag), name=tag)
            threads.append(t)
            t.start()
            return None

        return start

    async def main():
        def aio_starter(tag):
            return lambda: asyncio.create_task(aio.perform(pool, ran, tag))

        starters = [
            sync_starter("sync 1"),
            aio_starter("aio 1"),
            aio_starter("aio 2"),
            sync_starter("sync 2"),
            aio_starter("aio 3"),
        ]
        started = await _line_up(pool, starters, queue)
        release.set()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*[task for task in started if task is not None])

    arun(main)
    support.join_all(threads)
    assert ran.wait_for_count(6) == ["filler 0", "sync 1", "aio 1", "aio 2", "sync 2", "aio 3"]


def test_a_batch_that_does_not_fit_yet_queues_none_of_its_jobs(make_pool, safety_gate):
    pool = make_pool(1, max_queue=3)
    release = safety_gate()
    ran = fill(pool, release, queued=2)
    queue = queue_of(pool)

    async def main():
        waiter = asyncio.create_task(aio.perform_many(pool, ["a", "b"], ran))
        await until(lambda: queue.waiting() == 1, "the batch waits")
        await asyncio.sleep(support.SETTLE)
        assert len(queue) == 2  # one would fit: still none is queued
        assert not waiter.done()
        release.set()
        async with asyncio.timeout(WAIT):
            await waiter

    arun(main)
    assert ran.wait_for_count(4) == ["filler 0", "filler 1", "a", "b"]


def test_a_waiting_batch_is_the_one_given_to_the_call(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)
    items = ["a"]

    async def main():
        waiter = asyncio.create_task(aio.perform_many(pool, items, ran))
        await until(lambda: queue.waiting() == 1, "the batch waits")
        items.append("added later")  # by other code, while the call waits
        release.set()
        async with asyncio.timeout(WAIT):
            await waiter
        await aio.run(pool, ran, "last")

    arun(main)
    assert ran.items == ["filler 0", "a", "last"]


def test_block_timeout_raises_queue_full_error_and_queues_nothing(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1, block_timeout=0.2)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        for submit in (
            lambda: aio.perform(pool, ran, "perform"),
            lambda: aio.run(pool, ran, "run"),
            lambda: aio.async_perform_many(pool, ["many"], ran),
        ):
            start = time.monotonic()
            with pytest.raises(oddjob.QueueFullError, match="block_timeout"):
                await submit()
            assert time.monotonic() - start >= 0.15  # it did wait for block_timeout
            assert len(queue) == 1 and queue.waiting() == 0
        release.set()
        await aio.run(pool, ran, "after")

    arun(main)
    assert ran.items == ["filler 0", "after"]


def test_block_timeout_of_one_in_line_lets_the_next_be_served(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1, block_timeout=1.0)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        first = asyncio.create_task(aio.perform(pool, ran, "first"))
        await until(lambda: queue.waiting() == 1, "first waits")
        await asyncio.sleep(0.5)  # second's block_timeout runs out 0.5 s after first's
        second = asyncio.create_task(aio.perform(pool, ran, "second"))
        await until(lambda: queue.waiting() == 2, "second waits")
        with pytest.raises(oddjob.QueueFullError):
            await first
        assert queue.waiting() == 1
        release.set()
        async with asyncio.timeout(WAIT):
            await second

    arun(main)
    assert ran.wait_for_count(2) == ["filler 0", "second"]


def test_on_full_raise_raises_at_once(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1, on_full="raise")
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        with pytest.raises(oddjob.QueueFullError, match="on_full='raise'"):
            await aio.perform(pool, ran, "perform")
        with pytest.raises(oddjob.QueueFullError):
            await aio.run(pool, ran, "run")
        with pytest.raises(oddjob.QueueFullError):
            await aio.perform_many(pool, ["many"], ran)
        # At once: the queue is still full and nobody waits in line.
        assert len(queue) == 1 and queue.waiting() == 0

    arun(main)
    release.set()
    ran.wait_for_count(1)  # the filler ran: there is room
    oddjob.await_(oddjob.async_perform(pool, ran, "after"), timeout=WAIT)
    assert ran.items == ["filler 0", "after"]


def test_a_batch_larger_than_max_queue_raises_at_once(make_pool):
    pool = make_pool(2, max_queue=2)
    ran = Recorder()
    queue = queue_of(pool)

    async def main():
        # Idle workers and an empty queue: it can still never fit.
        with pytest.raises(oddjob.QueueFullError, match="never fit"):
            await aio.perform_many(pool, range(3), ran)
        with pytest.raises(oddjob.QueueFullError, match="never fit"):
            await aio.async_perform_many(pool, range(3), ran)
        assert queue.waiting() == 0
        jobs = await aio.async_perform_many(pool, range(2), ran)  # max_queue fits
        await aio.await_many(jobs, timeout=WAIT)

    arun(main)
    assert sorted(ran.items) == [0, 1]


def test_cancelling_a_task_waiting_for_room_leaves_the_line(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        def starter(tag):
            return lambda: asyncio.create_task(aio.perform(pool, ran, tag))

        a, b, c = await _line_up(pool, [starter("a"), starter("b"), starter("c")], queue)
        b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b
        assert queue.waiting() == 2
        a.cancel()  # the first in line
        with pytest.raises(asyncio.CancelledError):
            await a
        assert queue.waiting() == 1
        release.set()
        async with asyncio.timeout(WAIT):
            await c

    arun(main)
    oddjob.await_(oddjob.async_perform(pool, ran, "last"), timeout=WAIT)
    assert ran.items == ["filler 0", "c", "last"]


def test_cancelling_the_first_in_line_as_room_frees_serves_the_next(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        def starter(tag):
            return lambda: asyncio.create_task(aio.perform(pool, ran, tag))

        first, second = await _line_up(pool, [starter("first"), starter("second")], queue)
        # Room frees while this coroutine holds the loop: the first in line is woken,
        # but cancelled before it can take the room.
        release.set()
        deadline = time.monotonic() + WAIT
        while len(queue) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(queue) == 0
        time.sleep(support.SETTLE)  # its wake-up is on its way to the loop
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        async with asyncio.timeout(WAIT):
            await second
        assert queue.waiting() == 0

    arun(main)
    oddjob.await_(oddjob.async_perform(pool, ran, "last"), timeout=WAIT)
    assert ran.items == ["filler 0", "second", "last"]


def test_cancelling_the_task_awaiting_run_cancels_the_still_queued_job(make_pool):
    pool = make_pool(1)
    release = gate()
    ran = Recorder()
    block_workers(pool, 1, release)
    queue = queue_of(pool)

    async def main():
        task = asyncio.create_task(aio.run(pool, ran, "must not run"))
        await until(lambda: len(queue) == 1, "the job is queued")
        job = queue.snapshot()[0][3]
        await asyncio.sleep(0.01)  # the task awaits the job
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return job

    job = arun(main)
    assert job.cancelled()
    release.set()
    oddjob.await_(oddjob.async_perform(pool, ran, "later"), timeout=WAIT)
    assert ran.items == ["later"]


def test_cancelling_the_task_awaiting_run_leaves_a_running_job_to_complete(make_pool):
    pool = make_pool(1)
    release = gate()
    events = Recorder()

    def job():
        events("started")
        assert release.wait(WAIT)
        events("finished")
        return "done"

    async def main():
        task = asyncio.create_task(aio.run(pool, job))
        await until(lambda: events.items == ["started"], "the job runs")
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main)
    release.set()
    assert events.wait_for_count(2) == ["started", "finished"]


def test_cancelling_the_task_awaiting_a_job_from_async_perform_cancels_it_if_queued(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)

    async def main():
        job = await aio.async_perform(pool, lambda: "never")

        async def awaiting():
            return await job

        task = asyncio.create_task(awaiting())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return job

    assert arun(main).cancelled()


def test_stop_wakes_waiting_coroutines_with_pool_not_found_error(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)
    stopped = pool_of(pool)

    async def main():
        tasks = [
            asyncio.create_task(aio.perform(pool, ran, "perform")),
            asyncio.create_task(aio.run(pool, ran, "run")),
            asyncio.create_task(aio.async_perform_many(pool, ["many"], ran)),
        ]
        await until(lambda: queue.waiting() == 3, "three submits wait")
        oddjob.stop(pool, wait=False)
        async with asyncio.timeout(WAIT):
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return outcomes

    outcomes = arun(main)
    assert [type(o) for o in outcomes] == [oddjob.PoolNotFoundError] * 3
    assert queue.waiting() == 0
    release.set()
    stopped.join(time.monotonic() + WAIT)
    assert ran.items == ["filler 0"]  # the queued filler drained; no waiter's job ran


def test_a_job_submitting_from_its_own_event_loop_to_its_own_full_pool_raises(make_pool):
    # As oddjob.perform does on a worker of that pool: waiting could deadlock the pool.
    pool = make_pool(1, max_queue=1)
    ran = Recorder()

    def job():
        oddjob.perform(pool, ran, "filler")  # the queue is full now

        async def submit():
            async with asyncio.timeout(WAIT):
                await aio.perform(pool, ran, "from the job")

        try:
            asyncio.run(submit())
        except oddjob.QueueFullError as exc:
            return str(exc)
        return "no error"

    assert "own workers" in oddjob.await_(oddjob.async_perform(pool, job), timeout=2 * WAIT)
    assert ran.wait_for_count(1) == ["filler"]


# -- context -----------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.mark.parametrize("max_queue", [None, 1])
def test_a_context_variable_set_in_the_coroutine_is_seen_by_its_job(
    make_pool, max_queue, safety_gate
):
    pool = make_pool(1, max_queue=max_queue)
    release = safety_gate()
    block_workers(pool, 1, release)
    queue = queue_of(pool)

    async def handle(tag):
        request_id.set(tag)
        return await aio.run(pool, request_id.get)

    async def main():
        tasks = [asyncio.create_task(handle(f"request {i}")) for i in range(3)]
        if max_queue is not None:  # the later ones wait for room, then submit
            await until(lambda: queue.waiting() == 2, "two submits wait")
        request_id.set("main")
        release.set()
        async with asyncio.timeout(WAIT):
            return await asyncio.gather(*tasks)

    assert arun(main) == ["request 0", "request 1", "request 2"]
    assert request_id.get() == "unset"


# -- the event loop closing while jobs run ------------------------------------------------


def test_the_loop_closing_while_a_job_runs_leaves_the_worker_fine(make_pool, oddjob_log, caplog):
    pool = make_pool(1)
    release = gate()
    finished = Recorder()

    def job(tag):
        assert release.wait(WAIT)
        finished(tag)
        return tag

    async def main():
        jobs = await aio.async_perform_many(pool, ["await_many", "as_completed"], job)
        # Each of these waits for a running or queued job, and gives up with the loop.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(aio.run(pool, job, "run"), 0.05)
        with pytest.raises(TimeoutError):
            await aio.await_many(jobs, timeout=0.05)
        with pytest.raises(TimeoutError):
            async for _ in aio.as_completed(jobs, timeout=0.05):
                pass
        return jobs

    jobs = arun(main)  # the loop is closed now
    release.set()
    assert sorted(finished.wait_for_count(2)) == ["as_completed", "await_many"]
    assert oddjob.await_many(jobs, timeout=WAIT) == ["await_many", "as_completed"]
    # The worker goes on serving jobs, and nothing was logged.
    assert oddjob.await_(oddjob.async_perform(pool, lambda: "after"), timeout=WAIT) == "after"
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, errors


def test_the_loop_closing_while_a_submit_waits_for_room_gives_its_place_up(make_pool, safety_gate):
    pool = make_pool(1, max_queue=1)
    release = safety_gate()
    ran = fill(pool, release)
    queue = queue_of(pool)

    async def main():
        left = asyncio.create_task(aio.perform(pool, ran, "left behind"))
        await until(lambda: queue.waiting() == 1, "the submit waits")
        return left  # main returns: asyncio.run cancels the waiting task, closes the loop

    assert arun(main).cancelled()
    assert queue.waiting() == 0
    release.set()
    oddjob.await_(oddjob.async_perform(pool, ran, "after"), timeout=WAIT)
    assert ran.items == ["filler 0", "after"]
