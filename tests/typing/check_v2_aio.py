"""The v2 asyncio API, "asyncio: oddjob.aio" in API.md, as a user types it: checked,
never run, by mypy --strict and pyright (strict), as check_public_api.py is.

Not a test module: pytest collects ``test_*.py`` only, so it never imports this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

from oddjob import Job, aio


def square(x: int) -> int:
    return x * x


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


async def asyncio_api(jobs: list[Job[int]]) -> None:
    assert_type(await aio.run("work", square, 2), int)
    assert_type(await aio.run("work", greet, "ann", punctuation="?"), str)
    assert_type(await aio.perform("work", square, 2), None)
    assert_type(await aio.perform_many("work", [1, 2], square), None)

    job = await aio.async_perform("work", square, 3)
    assert_type(job, Job[int])
    assert_type(await job, int)
    assert_type(await aio.async_perform_many("work", [1, 2], square), list[Job[int]])

    assert_type(await aio.await_many(jobs), list[int])
    assert_type(await aio.await_many(jobs, timeout=1.0), list[int])

    completed: AsyncIterator[Job[int]] = aio.as_completed(jobs, timeout=None)
    assert_type(await anext(completed), Job[int])
    async for finished in aio.as_completed(jobs):
        assert_type(finished, Job[int])

    await aio.run("work", square, "2")  # type: ignore[arg-type]
    await aio.async_perform("work", greet)  # type: ignore[call-arg]
