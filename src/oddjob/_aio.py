"""Awaiting a Job from asyncio without blocking the event loop.

The job's done callback (run on a worker thread) hands completion to the loop with
call_soon_threadsafe; cancelling the awaiting task cancels the job if still queued.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._core_py import Job

T = TypeVar("T")


def _mark_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def await_job(job: Job[T]) -> T:
    """Wait for ``job`` on the running loop and return its result (or raise)."""
    if not job.done():
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake(_job: Any) -> None:
            try:
                loop.call_soon_threadsafe(_mark_done, fut)
            except RuntimeError:  # the loop closed while the job ran: nobody to tell
                pass

        job.add_done_callback(wake)
        try:
            await fut
        except asyncio.CancelledError:
            job.cancel()
            raise
    return job.result(0)
