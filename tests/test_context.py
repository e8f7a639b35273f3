"""Context propagation (contract v2, "Context"): each job runs in a copy of its
submitter's contextvars context, taken at the submit (for a timer, when it is set); one
copy per job, so nothing a job sets leaks into another job, the worker or the submitter.
copy_context=False runs jobs in the worker's own context; oddjob.Executor copies only
when asked to."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate

var: contextvars.ContextVar[str] = contextvars.ContextVar("oddjob_test_var", default="unset")


def in_context(value: str, call: Callable[[], Any]) -> Any:
    """call() in a fresh copy of the test's context with var set to value: nothing the
    test sets leaks into the test's own context (or the next test's)."""

    def run() -> Any:
        var.set(value)
        return call()

    return contextvars.copy_context().run(run)


def pool_of(name: str) -> oddjob.Pool:
    pool = oddjob.whereis(name)
    assert pool is not None
    return pool


def read_var(*_: object) -> str:
    return var.get()


def set_and_read(value: Any) -> tuple[str, str, int]:
    """What the job saw, then set, and the worker it ran on."""
    before = var.get()
    var.set(f"set by {value}")
    return before, var.get(), threading.get_ident()


# -- a job sees its submitter's context ---------------------------------------------------


def test_async_perform_runs_the_job_in_the_submitters_context(make_pool):
    name = make_pool(1)
    job = in_context("submitter", lambda: oddjob.async_perform(name, read_var))
    assert oddjob.await_(job, WAIT) == "submitter"
    assert var.get() == "unset"


def test_perform_runs_the_job_in_the_submitters_context(make_pool):
    name = make_pool(1)
    seen = Recorder()
    in_context("submitter", lambda: oddjob.perform(name, lambda: seen(var.get())))
    assert seen.wait_for_count(1) == ["submitter"]


@pytest.mark.parametrize("form", ["perform_many", "async_perform_many"])
def test_batch_jobs_run_in_the_submitters_context(make_pool, form):
    name = make_pool(2)
    seen = Recorder()

    def job(i: int) -> str:
        seen((i, var.get()))
        return var.get()

    def submit() -> Any:
        return getattr(oddjob, form)(name, range(6), job)

    jobs = in_context("batch submitter", submit)
    assert sorted(seen.wait_for_count(6)) == [(i, "batch submitter") for i in range(6)]
    if jobs is not None:
        assert oddjob.await_many(jobs, WAIT) == ["batch submitter"] * 6


def test_pool_methods_and_the_Pool_object_copy_the_context_too(make_pool):
    pool = oddjob.whereis(make_pool(1))
    assert pool is not None
    seen = Recorder()

    def submit() -> list[Any]:
        pool.perform(lambda: seen(("perform", var.get())))
        pool.perform_many(["perform_many"], lambda tag: seen((tag, var.get())))
        return [
            pool.async_perform(read_var),
            *pool.async_perform_many([1], read_var),
            oddjob.async_perform(pool, read_var),
        ]

    jobs = in_context("methods", submit)
    assert oddjob.await_many(jobs, WAIT) == ["methods"] * 3
    assert sorted(seen.wait_for_count(2)) == [("perform", "methods"), ("perform_many", "methods")]


def test_a_job_submitted_from_a_coroutine_sees_the_tasks_context(make_pool):
    name = make_pool(1)

    async def main() -> str:
        var.set("in the task")
        job = oddjob.async_perform(name, read_var)
        result: str = await job
        return result

    assert asyncio.run(main()) == "in the task"
    assert var.get() == "unset"


# -- one copy per job: nothing leaks ------------------------------------------------------


@pytest.mark.parametrize("form", ["perform_many", "async_perform_many"])
def test_each_job_of_a_batch_runs_in_its_own_copy_even_on_one_worker(make_pool, form):
    name = make_pool(1)  # every job of the batch on the same worker thread
    seen = Recorder()

    def job(i: int) -> None:
        seen(set_and_read(i))

    jobs = in_context("submitter", lambda: getattr(oddjob, form)(name, range(5), job))
    if jobs is not None:
        oddjob.await_many(jobs, WAIT)
    results = seen.wait_for_count(5)
    assert [before for before, _, _ in results] == ["submitter"] * 5, (
        "a job saw what an earlier job of its batch set"
    )
    assert [after for _, after, _ in results] == [f"set by {i}" for i in range(5)]
    assert len({worker for _, _, worker in results}) == 1


def test_a_jobs_set_leaks_neither_into_the_submitter_nor_into_the_workers_next_job(make_pool):
    name = make_pool(1)
    first = oddjob.async_perform(name, set_and_read, "first")
    second = oddjob.async_perform(name, set_and_read, "second")
    (before1, after1, worker1), (before2, _, worker2) = oddjob.await_many([first, second], WAIT)
    assert worker1 == worker2
    assert (before1, after1) == ("unset", "set by first")
    assert before2 == "unset", "the second job saw what the first one set"
    assert var.get() == "unset"
    # A fire-and-forget job, and a job without a submitter value, likewise.
    seen = Recorder()

    def fire_and_forget() -> None:
        var.set("fire and forget")
        seen(var.get())

    oddjob.perform(name, fire_and_forget)
    seen.wait_for_count(1)
    assert oddjob.await_(oddjob.async_perform(name, read_var), WAIT) == "unset"
    assert var.get() == "unset"


def test_a_jobs_set_does_not_leak_into_the_workers_own_context(make_pool):
    """The worker's context outside jobs (where the finalizer runs) is untouched."""
    finals = Recorder()
    name = make_pool(1, finalizer=lambda: finals(var.get()))
    oddjob.await_(oddjob.async_perform(name, set_and_read, "job"), WAIT)
    oddjob.stop(name, timeout=WAIT)
    assert finals.wait_for_count(1) == ["unset"]


# -- the copy is taken at the submit --------------------------------------------------------


@pytest.mark.parametrize("form", ["perform", "perform_many", "async_perform", "async_perform_many"])
def test_the_copy_is_taken_at_the_submit_not_when_the_job_runs(make_pool, form):
    name = make_pool(1)
    release = gate()
    block_workers(name, 1, release)  # the job waits in the queue
    seen = Recorder()

    def job(*_: object) -> str:
        seen(var.get())
        return var.get()

    def submit_then_change() -> Any:
        var.set("at submit")
        if form == "perform":
            oddjob.perform(name, job)
        elif form == "perform_many":
            oddjob.perform_many(name, [1, 2], job)
        elif form == "async_perform":
            jobs = [oddjob.async_perform(name, job)]
        else:
            jobs = oddjob.async_perform_many(name, [1, 2], job)
        assert len(pool_of(name).queue) >= 1  # still queued behind the blocker
        var.set("changed after submit")
        release.set()
        if form.startswith("async"):
            return oddjob.await_many(jobs, WAIT)
        return None

    results = in_context("before", submit_then_change)
    expected = 1 if form in ("perform", "async_perform") else 2
    assert seen.wait_for_count(expected) == ["at submit"] * expected
    if results is not None:
        assert results == ["at submit"] * expected


# -- copy_context=False: the worker's own context ------------------------------------------


@pytest.mark.parametrize("copy", [True, False])
def test_copy_context_false_runs_jobs_in_the_workers_context(make_pool, copy):
    name = make_pool(1, copy_context=copy, initializer=lambda: var.set("worker"))
    assert pool_of(name).queue.copy_context is copy
    job = in_context("submitter", lambda: oddjob.async_perform(name, read_var))
    batch = in_context("submitter", lambda: oddjob.async_perform_many(name, [1], read_var))
    seen = Recorder()
    in_context("submitter", lambda: oddjob.perform(name, lambda: seen(var.get())))
    expected = "submitter" if copy else "worker"
    assert oddjob.await_many([job, *batch], WAIT) == [expected, expected]
    assert seen.wait_for_count(1) == [expected]


# -- timers take the context when they are set ---------------------------------------------


@pytest.mark.parametrize("form", ["perform_after", "perform_many_after", "Pool.perform_after"])
def test_a_timer_runs_its_job_in_the_context_taken_when_it_was_set(make_pool, form):
    name = make_pool(1)
    seen = Recorder()

    def job(*_: object) -> None:
        seen(var.get())

    def set_timer_then_change() -> None:
        var.set("when set")
        if form == "perform_after":
            oddjob.perform_after(0.05, name, job)
        elif form == "perform_many_after":
            oddjob.perform_many_after(0.05, name, [1, 2], job)
        else:
            pool_of(name).perform_after(0.05, job)
        var.set("changed after")

    in_context("before", set_timer_then_change)
    expected = 2 if form == "perform_many_after" else 1
    assert seen.wait_for_count(expected) == ["when set"] * expected


def test_a_timer_of_a_copy_context_false_pool_runs_in_the_workers_context(make_pool):
    name = make_pool(1, copy_context=False, initializer=lambda: var.set("worker"))
    seen = Recorder()
    in_context("when set", lambda: oddjob.perform_after(0, name, lambda: seen(var.get())))
    assert seen.wait_for_count(1) == ["worker"]


def test_a_timers_jobs_of_one_batch_each_run_in_their_own_copy(make_pool):
    name = make_pool(1)
    seen = Recorder()
    in_context(
        "when set",
        lambda: oddjob.perform_many_after(0, name, range(3), lambda i: seen(set_and_read(i))),
    )
    assert [before for before, _, _ in seen.wait_for_count(3)] == ["when set"] * 3


# -- oddjob.Executor --------------------------------------------------------------------------


def test_Executor_does_not_copy_the_context_by_default(core):
    with oddjob.Executor(max_workers=1, initializer=lambda: var.set("worker")) as executor:
        future = in_context("submitter", lambda: executor.submit(read_var))
        assert future.result(WAIT) == "worker"
        results = in_context("submitter", lambda: list(executor.map(read_var, [1, 2])))
        assert results == ["worker", "worker"]


def test_Executor_copy_context_true_copies_the_context_at_submit(core):
    with oddjob.Executor(
        max_workers=1, initializer=lambda: var.set("worker"), copy_context=True
    ) as executor:
        future = in_context("submitter", lambda: executor.submit(read_var))
        assert future.result(WAIT) == "submitter"
        first = in_context("first", lambda: executor.submit(set_and_read, "first"))
        second = in_context("second", lambda: executor.submit(set_and_read, "second"))
        assert first.result(WAIT)[:2] == ("first", "set by first")
        assert second.result(WAIT)[0] == "second"
        results = in_context("mapped", lambda: list(executor.map(read_var, [1, 2])))
        assert results == ["mapped", "mapped"]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_Executor_copy_context_must_be_a_bool(core, value):
    with pytest.raises(TypeError, match="copy_context"):
        oddjob.Executor(max_workers=1, copy_context=value)
