"""The public API as a user types it: checked, never run, by mypy --strict and pyright
(strict). Each ``assert_type`` pins what a type checker infers; each line ending in
``# type: ignore[...]`` is a call the checkers must reject (mypy's warn_unused_ignores and
pyright's reportUnnecessaryTypeIgnoreComment fail if it ever type-checks).

Not a test module: pytest collects ``test_*.py`` only, so it never imports this file.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Literal, assert_type

import oddjob
from oddjob import Job, Pool, PoolState, TimerRef


def square(x: int) -> int:
    return x * x


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


def log(message: str) -> None:
    print(message)


def module_api() -> None:
    job = oddjob.async_perform("work", square, 3)
    assert_type(job, Job[int])
    assert_type(oddjob.async_perform("work", greet, "ann", punctuation="?"), Job[str])
    assert_type(oddjob.async_perform("work", log, "hi"), Job[None])
    assert_type(oddjob.await_(job), int)
    assert_type(oddjob.await_(job, timeout=1.5), int)
    assert_type(oddjob.await_(job, timeout=timedelta(seconds=2)), int)
    assert_type(oddjob.await_(job, None), int)

    jobs = oddjob.async_perform_many("work", [1, 2, 3], square)
    assert_type(jobs, list[Job[int]])
    assert_type(oddjob.async_perform_many("work", range(3), square), list[Job[int]])
    assert_type(oddjob.await_many(jobs), list[int])
    assert_type(oddjob.await_many(iter(jobs), timeout=None), list[int])
    assert_type(oddjob.await_many(j for j in jobs), list[int])

    assert_type(oddjob.perform("work", square, 3), None)
    assert_type(oddjob.perform("work", greet, "ann", punctuation="?"), None)
    assert_type(oddjob.perform_many("work", [1, 2], square), None)

    # ParamSpec: the job's arguments are checked against its function.
    oddjob.async_perform("work", square, "3")  # type: ignore[arg-type]
    oddjob.async_perform("work", square)  # type: ignore[call-arg]
    oddjob.async_perform("work", greet, "ann", punct="?")  # type: ignore[call-arg]
    oddjob.perform("work", square, 1, 2)  # type: ignore[call-arg]
    oddjob.async_perform_many("work", ["a"], square)  # type: ignore[arg-type]
    oddjob.await_(square)  # type: ignore[arg-type]
    wrong: str = oddjob.await_(job)  # type: ignore[assignment]
    print(wrong)


def job_handle(job: Job[int]) -> None:
    assert_type(job.result(), int)
    assert_type(job.result(timeout=0.5), int)
    assert_type(job.exception(), BaseException | None)
    assert_type(job.done(), bool)
    assert_type(job.cancelled(), bool)
    assert_type(job.running(), bool)
    assert_type(job.cancel(), bool)
    assert_type(job.pool, str)
    assert_type(job.ref, int)

    def on_done(finished: Job[int]) -> None:
        assert_type(finished.result(0), int)

    assert_type(job.add_done_callback(on_done), None)
    job.add_done_callback(lambda finished: print(finished.result() + 1))

    def on_str(finished: Job[str]) -> None:
        print(finished)

    job.add_done_callback(on_str)  # type: ignore[arg-type]


async def awaiting(job: Job[int]) -> None:
    assert_type(await job, int)
    value = await asyncio.wait_for(job, 1.0)
    assert_type(value, int)


def pool_methods() -> None:
    with Pool("work", pool_size=2) as pool:
        assert_type(pool, Pool)
        job = pool.async_perform(square, 4)
        assert_type(job, Job[int])
        assert_type(pool.async_perform(greet, "bo", punctuation="."), Job[str])
        assert_type(pool.async_perform_many([1, 2], square), list[Job[int]])
        assert_type(pool.perform(square, 4), None)
        assert_type(pool.perform_many([1, 2], square), None)
        assert_type(pool.perform_after(0.5, square, 1), TimerRef)
        assert_type(pool.perform_at(datetime.now(), square, 1), TimerRef)
        assert_type(pool.perform_many_after(timedelta(seconds=1), [1], square), TimerRef)
        assert_type(pool.workers(), list[threading.Thread])
        assert_type(pool.running, bool)
        pool.async_perform(square, "4")  # type: ignore[arg-type]
        pool.async_perform_many([b"x"], square)  # type: ignore[arg-type]
    assert_type(oddjob.start_link("other", pool_size=1), Pool)
    assert_type(oddjob.whereis("work"), Pool | None)
    assert_type(oddjob.stop("other"), None)


def timers() -> None:
    ref = oddjob.perform_after(1.0, "work", square, 2)
    assert_type(ref, TimerRef)
    assert_type(oddjob.perform_at(datetime.now(), "work", greet, "x"), TimerRef)
    assert_type(oddjob.perform_many_after(2, "work", [1, 2], square), TimerRef)
    assert_type(oddjob.perform_many_at(datetime.now(), "work", [1], square), TimerRef)
    assert_type(oddjob.cancel_timer(ref), float | Literal[False])
    assert_type(oddjob.read_timer(ref), float | Literal[False])
    oddjob.perform_after(1.0, "work", square, "2")  # type: ignore[arg-type]


def introspection() -> None:
    state = oddjob.pool("work")
    assert_type(state, PoolState)
    assert_type(state.workers, tuple[threading.Thread, ...])
    assert_type(oddjob.pool_id("work"), str)
    assert_type(oddjob.supervisor("work"), oddjob.WorkerSupervisor)
    assert_type(oddjob.supervisor_id("work"), str)
    assert_type(oddjob.current_worker(), oddjob.WorkerInfo | None)


def decorator() -> None:
    @oddjob.perform_this("work", "async")
    def answer() -> int:
        return 42

    assert_type(answer, Job[int])

    @oddjob.perform_this("work")
    def fire() -> None:
        pass

    assert_type(fire, None)

    @oddjob.perform_this("work", after=1.0)
    def later() -> None:
        pass

    assert_type(later, TimerRef)


def executor() -> None:
    with oddjob.Executor(max_workers=2) as pool:
        future = pool.submit(square, 5)
        assert_type(future, Future[int])
        assert_type(future.result(), int)
        assert_type(pool.map(square, [1, 2]), Iterator[int])
        pool.submit(square, "5")  # type: ignore[arg-type]
