"""oddjob.Executor: a drop-in ThreadPoolExecutor on oddjob's core (issue 5).

Every test runs over both cores (the autouse `core` fixture). Executors come from the
`executor` fixture, which shuts them down after the test so that no worker thread leaks;
jobs that block wait on `support.gate()` events, released before that shutdown.

Executor threads are named as ThreadPoolExecutor's (``ThreadPoolExecutor-N_i``), which
the suite's leak check (threads named "oddjob...") does not see: the autouse
`_no_leaked_executor_threads` fixture checks this module's tests for leaked ones instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures.thread import BrokenThreadPool
from pathlib import Path
from types import ModuleType

import pytest

import oddjob
import support
from oddjob import _registry as registry
from support import WAIT, Recorder, gate, join_all, run_threads

CHILD_TIMEOUT = 60.0
SRC = str(Path(oddjob.__file__).resolve().parent.parent)
# Every child script starts by checking that it runs this oddjob, on the expected core.
CHILD_PREAMBLE = """\
import os, oddjob
assert oddjob.__file__.startswith(os.environ["EXPECT_SRC"]), oddjob.__file__
assert oddjob._backend.core.IMPLEMENTATION == os.environ["EXPECT_CORE"]
"""


@pytest.fixture(autouse=True)
def _no_leaked_executor_threads() -> Iterator[None]:
    """After the test (and after `executor` has shut its executors down), every Executor
    worker thread the test started has exited, whatever its name: a thread is an Executor's
    if the executor module registered it for the exit-time join."""
    before = set(threading.enumerate())
    yield
    join_all(t for t in list(oddjob._executor._threads_queues) if t not in before)


@pytest.fixture
def executor() -> Iterator[Callable[..., oddjob.Executor]]:
    """executor(*args, **kwargs) makes an Executor that is shut down after the test."""
    made: list[oddjob.Executor] = []

    def make(*args: object, **kwargs: object) -> oddjob.Executor:
        ex = oddjob.Executor(*args, **kwargs)  # type: ignore[arg-type]
        made.append(ex)
        return ex

    yield make
    support.open_all_gates()
    for ex in made:
        ex.shutdown(wait=False, cancel_futures=True)
    join_all([t for ex in made for t in ex._threads])


def started(ex: oddjob.Executor, release: threading.Event, n: int = 1) -> list[cf.Future[bool]]:
    """Occupy n workers with jobs that wait for `release`; return once all n run."""
    running = Recorder()

    def blocker(i: int) -> bool:
        running(i)
        return release.wait(WAIT)

    futures = [ex.submit(blocker, i) for i in range(n)]
    running.wait_for_count(n)
    return futures


def run_child(core: ModuleType, code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter that imports this oddjob on the given core."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["EXPECT_SRC"] = SRC
    env["EXPECT_CORE"] = core.IMPLEMENTATION
    env.pop("ODDJOB_NO_EXTENSIONS", None)
    if core.IMPLEMENTATION == "python":
        env["ODDJOB_NO_EXTENSIONS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", CHILD_PREAMBLE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=env,
        check=False,
    )


# -- identity -----------------------------------------------------------------------------


def test_is_a_thread_pool_executor_running_on_the_selected_core(executor, core):
    ex = executor(2)
    assert ex._core is core
    assert isinstance(ex, cf.ThreadPoolExecutor)
    assert isinstance(ex, cf.Executor)
    assert oddjob.Executor is oddjob._executor.Executor


def test_is_anonymous_not_a_named_pool(executor):
    ex = executor(2, thread_name_prefix="oddjob-anon")
    assert ex.submit(abs, -1).result(WAIT) == 1
    assert oddjob.whereis("oddjob-anon") is None
    assert registry.running() == []


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        oddjob.Executor(bad)


def test_initializer_must_be_callable():
    with pytest.raises(TypeError, match="initializer must be a callable"):
        oddjob.Executor(2, initializer=42)  # type: ignore[arg-type]


def test_max_workers_default_is_thread_pool_executors(executor):
    counted = getattr(os, "process_cpu_count", os.cpu_count)() or os.cpu_count() or 1
    assert executor()._max_workers == min(32, counted + 4)
    assert executor(3)._max_workers == 3


def test_private_attributes_code_may_read(executor):
    ex = executor(2, "oddjob-attrs", print, (1, 2))
    assert ex._max_workers == 2
    assert ex._thread_name_prefix == "oddjob-attrs"
    assert ex._initializer is print
    assert ex._initargs == (1, 2)
    assert ex._shutdown is False
    assert ex._broken is False
    assert ex._threads == set()
    assert ex._work_queue.qsize() == 0
    assert ex._work_queue.empty()
    ex.shutdown()
    assert ex._shutdown is True


def test_threads_start_lazily_up_to_max_workers(executor):
    ex = executor(3)
    assert ex._threads == set()  # nothing runs before the first submit
    assert ex.submit(abs, -1).result(WAIT) == 1
    assert len(ex._threads) == 1
    release = gate()
    started(ex, release, 3)  # three jobs at once need three threads
    assert len(ex._threads) == 3
    futures = [ex.submit(abs, -i) for i in range(10)]
    assert len(ex._threads) == 3  # never more than max_workers
    assert ex._work_queue.qsize() == 10
    release.set()
    assert [f.result(WAIT) for f in futures] == list(range(10))


def test_a_job_may_wait_for_a_later_one_within_max_workers(executor):
    ex = executor(2)
    ready = threading.Event()
    first = ex.submit(ready.wait, WAIT)  # needs the second job to run beside it
    second = ex.submit(ready.set)
    assert first.result(WAIT) is True
    assert second.result(WAIT) is None


def test_concurrent_submitters_start_every_thread_their_jobs_need(executor):
    submitters, each = 4, 2

    def submit_all(ex: oddjob.Executor, job: Callable[[], int]) -> list[cf.Future[int]]:
        futures: list[cf.Future[int]] = []
        run_threads(lambda _i: futures.extend(ex.submit(job) for _ in range(each)), submitters)
        return futures

    for _ in range(10):  # fresh executors: threads are started only while they grow
        ex = executor(submitters * each)
        ex.submit(abs, 1).result(WAIT)  # one idle worker to count on
        # Jobs that all wait for each other: they finish only if every one has a thread.
        barrier = threading.Barrier(submitters * each, timeout=WAIT)
        futures = submit_all(ex, barrier.wait)
        assert sorted(f.result(WAIT) for f in futures) == list(range(submitters * each))


def test_map_starts_as_many_threads_as_its_items_need(executor):
    ex = executor(4)
    barrier = threading.Barrier(4, timeout=WAIT)
    assert sorted(ex.map(lambda _: barrier.wait(), range(4))) == [0, 1, 2, 3]


def thread_names(ex: oddjob.Executor, n: int) -> list[str]:
    """The names of the n threads that n jobs waiting for each other run on, sorted."""
    barrier = threading.Barrier(n, timeout=WAIT)

    def where(_i: int) -> str:
        barrier.wait()
        return threading.current_thread().name

    return sorted(ex.map(where, range(n)))


def shut_down_and_joined(*executors: oddjob.Executor) -> None:
    for ex in executors:
        ex.shutdown(wait=False)
    join_all(t for ex in executors for t in ex._threads)


def test_threads_are_named_after_the_prefix_like_thread_pool_executors(executor):
    ex = executor(2, thread_name_prefix="oddjob-named")
    assert thread_names(ex, 2) == ["oddjob-named_0", "oddjob-named_1"]
    shut_down_and_joined(ex)


def test_threads_without_a_prefix_are_named_as_thread_pool_executor_names_them(executor):
    # f"ThreadPoolExecutor-{N}_{i}": N counts the executors made without a prefix.
    first = executor(3)
    executor(1, thread_name_prefix="oddjob-prefixed")  # takes no number
    second = executor(1)
    match = re.fullmatch(r"ThreadPoolExecutor-(\d+)", first._thread_name_prefix)
    assert match, first._thread_name_prefix
    number = int(match[1])
    assert second._thread_name_prefix == f"ThreadPoolExecutor-{number + 1}"
    names = [f"ThreadPoolExecutor-{number}_{i}" for i in range(3)]
    assert thread_names(first, 3) == names
    assert thread_names(second, 1) == [f"ThreadPoolExecutor-{number + 1}_0"]
    assert sorted(t.name for t in first._threads) == names
    shut_down_and_joined(first, second)


# -- submit ---------------------------------------------------------------------------------


def test_submit_returns_a_real_future_with_the_result(executor):
    ex = executor(2)
    future = ex.submit(divmod, 17, 5)
    assert type(future) is cf.Future
    assert future.result(WAIT) == (3, 2)
    assert future.done()
    assert not future.cancelled()


def test_submit_passes_keyword_arguments_even_one_named_fn(executor):
    ex = executor(1)

    def job(*args: object, **kwargs: object) -> tuple[object, ...]:
        return args, kwargs

    assert ex.submit(job, 1, fn=2, self=3).result(WAIT) == ((1,), {"fn": 2, "self": 3})


def test_a_job_exception_goes_to_its_future_with_its_traceback(executor):
    ex = executor(1)

    def failing_job() -> None:
        raise KeyError("lost")

    future = ex.submit(failing_job)
    with pytest.raises(KeyError, match="lost") as info:
        future.result(WAIT)
    assert "failing_job" in support.frame_names(info.value)
    assert isinstance(future.exception(WAIT), KeyError)


def test_a_worker_survives_exceptions_in_its_jobs(executor):
    ex = executor(1)

    def raise_(exc: BaseException) -> None:
        raise exc

    first = ex.submit(threading.current_thread).result(WAIT)
    for exc in (ValueError("v"), KeyboardInterrupt(), SystemExit(3)):
        assert ex.submit(raise_, exc).exception(WAIT) is exc
    assert ex.submit(threading.current_thread).result(WAIT) is first
    assert len(ex._threads) == 1


def test_a_non_callable_fails_its_future_like_thread_pool_executor(executor):
    ex = executor(1)
    with pytest.raises(TypeError):
        ex.submit(42).result(WAIT)


def test_a_future_cancelled_while_queued_never_runs(executor):
    ex = executor(1)
    release = gate()
    (blocker,) = started(ex, release)
    ran = Recorder()
    queued = ex.submit(ran, "cancelled")
    after = ex.submit(ran, "after")
    assert not blocker.cancel()  # running: too late
    assert queued.cancel()
    release.set()
    assert after.result(WAIT) is None
    assert queued.cancelled()
    with pytest.raises(cf.CancelledError):
        queued.result(WAIT)
    assert ran.items == ["after"]
    assert blocker.result(WAIT) is True


def test_done_callbacks_run_once(executor):
    ex = executor(2)
    seen = Recorder()
    future = ex.submit(abs, -3)
    future.add_done_callback(lambda f: seen(f.result()))
    seen.wait_for_count(1)
    future.add_done_callback(lambda f: seen(f.result()))  # already done: at once
    assert seen.items == [3, 3]


# -- waiting on futures ---------------------------------------------------------------------


def test_wait_and_as_completed(executor):
    ex = executor(3)
    futures = [ex.submit(pow, i, 2) for i in range(20)]
    done, not_done = cf.wait(futures, timeout=WAIT)
    assert done == set(futures)
    assert not not_done
    more = [ex.submit(pow, i, 3) for i in range(20)]
    assert sorted(f.result() for f in cf.as_completed(more, timeout=WAIT)) == [
        i**3 for i in range(20)
    ]


def test_wait_first_completed_returns_before_a_blocked_job(executor):
    ex = executor(2)
    release = gate()
    (blocked,) = started(ex, release)
    quick = ex.submit(abs, -1)
    done, not_done = cf.wait([blocked, quick], timeout=WAIT, return_when=cf.FIRST_COMPLETED)
    assert done == {quick}
    assert not_done == {blocked}


# -- asyncio --------------------------------------------------------------------------------


def test_asyncio_wrap_future_and_run_in_executor(executor):
    ex = executor(2)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        wrapped = await asyncio.wait_for(asyncio.wrap_future(ex.submit(pow, 2, 5)), WAIT)
        ran = await asyncio.wait_for(loop.run_in_executor(ex, pow, 3, 2), WAIT)
        return wrapped, ran

    assert asyncio.run(main()) == (32, 9)


def test_asyncio_accepts_it_as_default_executor(executor):
    ex = executor(2, thread_name_prefix="oddjob-asyncio")

    def where() -> str:
        return threading.current_thread().name

    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ex)
        by_default = await asyncio.wait_for(loop.run_in_executor(None, where), WAIT)
        to_thread = await asyncio.wait_for(asyncio.to_thread(where), WAIT)
        return by_default, to_thread

    names = asyncio.run(main())  # which shuts the default executor down on its way out
    assert all(name.startswith("oddjob-asyncio_") for name in names), names
    assert ex._shutdown
    assert not any(t.is_alive() for t in ex._threads)


# -- map ------------------------------------------------------------------------------------


def test_map_returns_results_in_order(executor):
    ex = executor(4)

    def slow_square(x: int) -> int:
        time.sleep(0.001 * (x % 3))  # finishing out of order
        return x * x

    assert list(ex.map(slow_square, range(50))) == [x * x for x in range(50)]
    assert list(ex.map(pow, [2, 3, 4], [5, 2])) == [32, 9]  # stops at the shortest
    assert list(ex.map(abs, [])) == []


def test_map_accepts_chunksize(executor):
    ex = executor(2)
    assert list(ex.map(abs, range(-5, 0), chunksize=3)) == [5, 4, 3, 2, 1]


def test_map_reraises_a_job_exception_at_iteration(executor):
    ex = executor(2)
    results = ex.map(lambda x: 10 // x, [5, 0, 2])
    assert next(results) == 2
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout_raises_timeout_error(executor):
    ex = executor(1)
    release = gate()
    results = ex.map(release.wait, [WAIT, WAIT], timeout=0.05)
    with pytest.raises(TimeoutError):
        next(results)
    release.set()


def test_map_after_shutdown_raises_at_once(executor):
    ex = executor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.map(abs, [1])


class Dummy:
    """What a job returns, for a test to see when it is freed."""


@pytest.mark.parametrize(
    "options",
    [{}, {"timeout": WAIT}, {"buffersize": 2}],
    ids=["plain", "timeout", "buffersize"],
)
def test_map_keeps_no_reference_to_a_result_it_has_yielded(executor, options):
    # CPython's test_free_reference (bpo-14406): once the caller drops a result, it is freed.
    ex = executor(1)
    freed = []
    for obj in ex.map(lambda _i: Dummy(), range(5), **options):
        ref = weakref.ref(obj)
        del obj
        # One worker: this job runs after every map job queued so far has returned, so no
        # worker still holds the result either.
        assert ex.submit(abs, -1).result(WAIT) == 1
        gc.collect()
        freed.append(ref() is None)
    assert freed == [True] * 5
    shut_down_and_joined(ex)


def test_closing_map_cancels_what_has_not_started(executor):
    ex = executor(1)
    release = gate()
    ran = Recorder()

    def job(x: int) -> int:
        ran(x)
        if x == 1:
            release.wait(WAIT)
        return x

    results = ex.map(job, range(4))
    assert next(results) == 0
    ran.wait_for_count(2)  # job 1 runs, 2 and 3 are queued behind it
    results.close()
    release.set()
    ex.shutdown(wait=True)
    assert ran.items == [0, 1]


@pytest.mark.parametrize("bad", [0, -1])
def test_map_buffersize_must_be_positive(executor, bad):
    with pytest.raises(ValueError, match="buffersize"):
        executor(1).map(abs, [1], buffersize=bad)


@pytest.mark.parametrize("bad", [1.5, "2"])
def test_map_buffersize_must_be_an_int(executor, bad):
    with pytest.raises(TypeError, match="buffersize"):
        executor(1).map(abs, [1], buffersize=bad)


def test_map_with_buffersize_reads_an_infinite_input_lazily(executor):
    ex = executor(3)
    read: list[int] = []

    def numbers() -> Iterator[int]:
        for i in itertools.count():
            read.append(i)
            yield i

    results = ex.map(lambda x: x * x, numbers(), buffersize=2)
    assert len(read) == 2  # the first buffer, read by the call itself
    for taken, (i, square) in enumerate(zip(range(10), results, strict=False), 1):
        assert square == i * i
        assert len(read) - taken <= 2, "more than buffersize jobs in flight"
    assert list(itertools.islice(results, 3)) == [100, 121, 144]
    assert len(read) <= 13 + 2
    results.close()


def test_map_with_buffersize_does_not_keep_the_executor_alive(core):
    ex = oddjob.Executor(2)
    threads_of = ex._threads
    results = ex.map(abs, itertools.count(-3), buffersize=2)
    assert next(results) == 3
    del ex
    gc.collect()
    # The executor is gone: the iterator yields the two in flight, then stops.
    assert list(results) == [2, 1]
    join_all(threads_of)


# -- shutdown -------------------------------------------------------------------------------


def test_shutdown_waits_for_queued_jobs_and_joins_the_threads(executor):
    ex = executor(2)
    ran = Recorder()

    def job(i: int) -> None:
        time.sleep(0.01)
        ran(i)

    for i in range(6):
        ex.submit(job, i)
    ex.shutdown(wait=True)
    assert sorted(ran.items) == list(range(6))
    assert ex._threads
    assert not any(t.is_alive() for t in ex._threads)


def test_shutdown_without_wait_returns_at_once(executor):
    ex = executor(1)
    release = gate()
    (blocker,) = started(ex, release)
    queued = ex.submit(abs, -5)
    ex.shutdown(wait=False)
    assert not blocker.done()
    release.set()
    assert queued.result(WAIT) == 5  # queued jobs still run


def test_shutdown_cancel_futures_cancels_the_queued_ones(executor):
    ex = executor(1)
    release = gate()
    (blocker,) = started(ex, release)
    ran = Recorder()
    queued = [ex.submit(ran, i) for i in range(5)]
    mapped = ex.map(ran, range(5, 8))
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.set()
    assert blocker.result(WAIT) is True  # the running one finishes
    ex.shutdown(wait=True)
    with pytest.raises(cf.CancelledError):
        next(mapped)
    assert ran.items == []


def test_futures_cancelled_by_shutdown_reach_a_waiting_wait(executor):
    ex = executor(1)
    release = gate()
    started(ex, release)
    queued = ex.submit(abs, 1)
    seen: list[set[cf.Future[int]]] = []
    waiter = threading.Thread(target=lambda: seen.append(cf.wait([queued], timeout=WAIT).done))
    waiter.start()
    ex.shutdown(wait=False, cancel_futures=True)
    release.set()
    join_all([waiter])
    assert seen == [{queued}]  # ThreadPoolExecutor leaves wait() to time out here
    assert queued.cancelled()


def test_submit_after_shutdown_raises_runtime_error(executor):
    ex = executor(2)
    ex.shutdown()
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        ex.submit(abs, 1)
    ex.shutdown()  # again: nothing happens


def test_context_manager_shuts_down_and_joins(core):
    with oddjob.Executor(2) as ex:
        futures = [ex.submit(time.sleep, 0.01) for _ in range(4)]
    assert all(f.done() for f in futures)
    assert ex._shutdown
    assert not any(t.is_alive() for t in ex._threads)


def test_shutdown_from_one_of_its_own_jobs_does_not_deadlock(executor):
    ex = executor(2)
    future = ex.submit(lambda: ex.shutdown(wait=True))
    assert future.result(WAIT) is None


def test_a_collected_executor_lets_its_threads_exit(core):
    ex = oddjob.Executor(2)
    futures = [ex.submit(time.sleep, 0.01) for _ in range(4)]
    threads = list(ex._threads)
    del ex
    gc.collect()
    join_all(threads)  # they drained the queue first
    assert all(f.done() for f in futures)


# -- initializer ----------------------------------------------------------------------------


def test_initializer_runs_once_in_each_worker_with_initargs(executor):
    calls = Recorder()

    def init(*args: object) -> None:
        calls((threading.current_thread().name, args))

    ex = executor(3, initializer=init, initargs=("a", 1))
    barrier = threading.Barrier(3, timeout=WAIT)
    # Three jobs that wait for each other need three workers.
    meet = [ex.submit(barrier.wait) for _ in range(3)]
    assert sorted(f.result(WAIT) for f in meet) == [0, 1, 2]
    for _ in range(20):
        ex.submit(abs, 1).result(WAIT)
    ex.shutdown(wait=True)
    assert sorted(calls.items) == sorted((t.name, ("a", 1)) for t in ex._threads)
    assert len(calls) == 3


def test_initializer_failure_breaks_the_executor(executor, caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    release = gate()
    ran = Recorder()

    def init() -> None:
        release.wait(WAIT)
        raise OSError("no connection")

    ex = executor(2, initializer=init)
    pending = [ex.submit(ran, i) for i in range(4)]
    release.set()
    for future in pending:
        assert isinstance(future.exception(WAIT), BrokenThreadPool)
    assert ran.items == []
    assert ex._broken
    with pytest.raises(BrokenThreadPool, match="initializer failed"):
        ex.submit(ran, "later")
    with pytest.raises(BrokenThreadPool):
        ex.map(ran, [1])
    ex.shutdown(wait=True)
    with pytest.raises(BrokenThreadPool):  # broken wins over shut down, as in CPython
        ex.submit(ran, "after shutdown")
    assert ran.items == []
    assert any(
        r.levelno == logging.CRITICAL and "initializer" in r.getMessage() for r in caplog.records
    )


# -- stress ---------------------------------------------------------------------------------


def test_many_submitters_every_future_resolved_once_with_its_value(executor):
    ex = executor(4)
    submitters, per_submitter, mapped = 4, 10_000, 2_000
    ran = Recorder()
    resolved: dict[tuple[int, int], int] = {}
    lock = threading.Lock()

    def on_done(future: cf.Future[tuple[int, int]]) -> None:
        key = future.result()
        with lock:
            resolved[key] = resolved.get(key, 0) + 1

    def job(t: int, i: int) -> tuple[int, int]:
        ran((t, i))
        return (t, i)

    def submitter(t: int) -> None:
        futures = []
        for i in range(per_submitter):
            future = ex.submit(job, t, i)
            future.add_done_callback(on_done)
            futures.append(future)
        start = per_submitter
        batch = ex.map(job, [t] * mapped, range(start, start + mapped))
        assert list(batch) == [(t, i) for i in range(start, start + mapped)]
        assert [f.result(WAIT) for f in futures] == [(t, i) for i in range(per_submitter)]

    run_threads(submitter, submitters, timeout=60)
    ex.shutdown(wait=True)
    every = [(t, i) for t in range(submitters) for i in range(per_submitter + mapped)]
    assert sorted(ran.items) == every  # each job ran exactly once
    submitted = [(t, i) for t in range(submitters) for i in range(per_submitter)]
    assert resolved == dict.fromkeys(submitted, 1)  # each future resolved exactly once


# -- process lifecycle ----------------------------------------------------------------------


def test_interpreter_exit_joins_the_threads_and_drains_the_queue(core):
    result = run_child(
        core,
        """
        import sys, time, oddjob
        ex = oddjob.Executor(1)
        def job(i):
            time.sleep(0.3 if i == 0 else 0.01)
            sys.stdout.write(f"ran {i}\\n")
            sys.stdout.flush()
        for i in range(3):
            ex.submit(job, i)
        print("main done", flush=True)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["main done", "ran 0", "ran 1", "ran 2"]


def test_submit_during_interpreter_exit_is_refused(core):
    result = run_child(
        core,
        """
        import threading, oddjob
        def at_exit():
            try:
                ex.submit(abs, 1)
            except RuntimeError as exc:
                print(exc, flush=True)
        # Exit hooks run last-registered first: this one runs after the executor's own.
        threading._register_atexit(at_exit)
        ex = oddjob.Executor(1)
        ex.submit(abs, 1).result(10)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cannot schedule new futures after interpreter shutdown"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_gets_fresh_threads_and_nothing_runs_twice(core):
    result = run_child(
        core,
        """
        import os, sys, threading, warnings, oddjob
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        ex = oddjob.Executor(1, thread_name_prefix="fork")
        gate = threading.Event()
        blocker = ex.submit(gate.wait, 30)
        queued = ex.submit(os.getpid)  # queued behind the blocker at the fork
        pid = os.fork()
        if pid == 0:
            try:
                assert ex.submit(os.getpid).result(10) == os.getpid()
                assert not queued.done()  # it runs in the parent only
                ex.shutdown(wait=True)
                assert [t.name for t in ex._threads] == ["fork_0"]
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        gate.set()
        assert queued.result(10) == os.getpid()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child failed"
        ex.shutdown()
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
