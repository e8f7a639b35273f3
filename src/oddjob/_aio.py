"""Awaiting a Job from asyncio without blocking the event loop.

The job's done callback (run on a worker thread) hands completion to the loop with
call_soon_threadsafe; cancelling the awaiting task cancels the job if still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._core_py import Job

T = TypeVar("T")


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """``fn(*args)`` on ``loop``, from any thread; nothing if the loop has closed (then
    nobody is waiting any more)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def resolve(fut: asyncio.Future[None]) -> None:
    """Wake whoever awaits ``fut`` (on its loop), once."""
    if not fut.done():
        fut.set_result(None)


def on_loop(
    loop: asyncio.AbstractEventLoop, fn: Callable[[Job[Any]], object]
) -> Callable[[Job[Any]], None]:
    """A done callback that runs ``fn(job)`` on ``loop`` (from whichever thread the job
    finishes on); nothing happens if the loop has closed meanwhile."""

    def callback(job: Job[Any]) -> None:
        call_soon(loop, fn, job)

    return callback


async def await_job(job: Job[T]) -> T:
    """Wait for ``job`` on the running loop and return its result (or raise)."""
    if not job.done():
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        job.add_done_callback(lambda _job: call_soon(loop, resolve, fut))
        try:
            await fut
        except asyncio.CancelledError:
            job.cancel()
            raise
    return job.result(0)
