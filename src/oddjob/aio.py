"""oddjob from asyncio: the sending calls as coroutines that never block the event loop.

    await aio.run("db", query, sql)          # submit, then await the result
    job = await aio.async_perform("db", query, sql)
    await aio.perform("email", send, to)     # fire and forget
    results = await aio.await_many(jobs)
    async for job in aio.as_completed(jobs): ...

Where the sync form would block a thread waiting for room in a bounded queue, these await
it: the submission takes a place in the pool's line with a RoomTicket whose wake-up (run by
the worker that frees the room) resolves a future on the loop. No thread is spent per
waiter. Cancelling the awaiting task gives the place up, or cancels the job if it is still
queued; a running job goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _backend, _registry
from ._aio import await_job, call_soon, on_loop, resolve
from ._api import PoolName, Timeout
from ._errors import QueueFullError, _NoRoom
from ._pool import _as_list
from ._waiting import checked_jobs, distinct_jobs

if TYPE_CHECKING:
    from ._core_py import Job

__all__ = [
    "as_completed",
    "async_perform",
    "async_perform_many",
    "await_many",
    "perform",
    "perform_many",
    "run",
]

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")


async def perform(
    pool: PoolName, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
) -> None:
    """Run ``fn(*args, **kwargs)`` on a worker of ``pool``; fire and forget.

    Raises:
        QueueFullError: as oddjob.perform (a full queue with on_full="raise", or
            block_timeout ran out while this waited for room).
        PoolNotFoundError: the pool is not running, or stopped while this waited.
        TypeError: fn is not callable, or pool is not a str or Pool.
    """
    queue = _registry.queue(pool)
    await _submit(queue, queue.push, fn, args, kwargs)


async def async_perform(
    pool: PoolName, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> Job[T]:
    """Run ``fn(*args, **kwargs)`` on a worker of ``pool``; its Job (await it)."""
    queue = _registry.queue(pool)
    job: Job[T] = await _submit(queue, queue.push_async, fn, args, kwargs)
    return job


async def perform_many(pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], Any]) -> None:
    """Run ``fn(item)`` for each item, queued as one batch (it waits until it fits whole)."""
    queue = _registry.queue(pool)
    await _submit(queue, queue.push_many, fn, _batch(queue, iterable))


async def async_perform_many(
    pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], T]
) -> list[Job[T]]:
    """One async job per item, queued as one batch; the Jobs in input order."""
    queue = _registry.queue(pool)
    jobs: list[Job[T]] = await _submit(queue, queue.push_async_many, fn, _batch(queue, iterable))
    return jobs


async def run(pool: PoolName, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Submit ``fn(*args, **kwargs)`` to ``pool`` and await its result, in one call.

    Re-raises the job's own exception. Cancelling the awaiting task cancels the job if it
    is still queued (a running job goes on).
    """
    queue = _registry.queue(pool)
    job: Job[T] = await _submit(queue, queue.push_async, fn, args, kwargs)
    return await await_job(job)


async def await_many(jobs: Iterable[Job[T]], timeout: Timeout = 5.0) -> list[T]:
    """Results of ``jobs`` in their order, within one overall deadline, as await_many.

    Raises the first failure seen, as soon as it is seen. ``TimeoutError`` leaves every
    job collectable later. Cancelling the awaiting task cancels the jobs still queued.
    """
    seq = checked_jobs(jobs, "await_many")
    seconds = _backend.core.seconds(timeout)
    pending = [job for job in seq if not job.done()]
    # A job already failed when the call starts wins (the first in order), then the
    # failure the loop hears of first.
    failed = next((job for job in seq if job._failed()), None)
    if failed is None and pending:
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[Job[T] | None] = loop.create_future()
        left = [len(pending)]

        def count(job: Job[Any]) -> None:  # on the loop, in the order the jobs finished
            left[0] -= 1
            if not settled.done():
                if job._failed():
                    settled.set_result(job)
                elif left[0] == 0:
                    settled.set_result(None)

        for job in pending:
            job.add_done_callback(on_loop(loop, count))
        try:
            async with asyncio.timeout(None if seconds < 0 else seconds):
                failed = await settled
        except TimeoutError:
            done = sum(job.done() for job in seq)
            raise TimeoutError(
                f"aio.await_many: {len(seq) - done} of {len(seq)} jobs not done within "
                f"{timeout} seconds"
            ) from None
        except asyncio.CancelledError:
            for job in pending:
                job.cancel()
            raise
    if failed is not None:
        failed.result(0)  # raises
    return [job.result(0) for job in seq]


async def as_completed(jobs: Iterable[Job[T]], timeout: Timeout = None) -> AsyncIterator[Job[T]]:
    """Yield each job as it finishes (result, failure or cancel), earliest first.

    Raises:
        TimeoutError: the deadline passed with jobs left (they stay collectable).
    """
    seq = distinct_jobs(jobs, "as_completed")  # each distinct job once
    seconds = _backend.core.seconds(timeout)
    loop = asyncio.get_running_loop()
    deadline = None if seconds < 0 else loop.time() + seconds
    finished: asyncio.Queue[Job[T]] = asyncio.Queue()
    for job in seq:
        job.add_done_callback(on_loop(loop, finished.put_nowait))
    for yielded in range(len(seq)):
        try:
            async with asyncio.timeout_at(deadline):
                job = await finished.get()
        except TimeoutError:
            left = len(seq) - yielded - finished.qsize()
            raise TimeoutError(
                f"aio.as_completed: {left} of {len(seq)} jobs not done within {timeout} seconds"
            ) from None
        yield job


# -- submitting, waiting for room in line ----------------------------------------------------


async def _submit(queue: Any, push: Callable[..., Any], *args: Any) -> Any:
    """``push(*args)``, awaiting room in a full bounded queue instead of blocking.

    An unbounded queue never blocks, so the push happens at once. A bounded one gets a
    RoomTicket: a push without room puts it in line (raising _NoRoom) and its wake-up
    resolves a future here; the push is tried again once the submission may fit.
    """
    if queue.max_queue is None:
        return push(*args)
    loop = asyncio.get_running_loop()
    room: list[asyncio.Future[None]] = []

    def wake() -> None:  # on the thread that freed the room
        if room:
            call_soon(loop, resolve, room[-1])

    ticket = _backend.core.RoomTicket(wake)
    limit = queue.block_timeout
    try:
        async with asyncio.timeout(limit):
            while True:
                room.append(loop.create_future())
                try:
                    return push(*args, ticket)
                except _NoRoom:
                    pass
                await room[-1]
                room.clear()
    except TimeoutError:
        raise QueueFullError(
            f"pool {queue.name!r} stayed full for block_timeout={limit} seconds "
            f"(max_queue={queue.max_queue})"
        ) from None
    finally:
        if ticket.waiting:  # cancelled or timed out in line: give the place up
            queue.withdraw(ticket)


def _batch(queue: Any, iterable: Iterable[Item]) -> list[Item]:
    # The batch as it is at the call: while it waits for room other code may change the
    # caller's list, which must not change what is queued (the sync form copies it too).
    batch = _as_list(iterable)
    if batch is iterable and queue.max_queue is not None:
        batch = list(batch)
    return batch
