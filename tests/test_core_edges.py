"""Edge cases of the core's Queue found in review: lost wake-ups, None where a typed
argument is expected, and done callbacks that raise BaseException."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

import oddjob
from support import WAIT, Recorder, join_all

if TYPE_CHECKING:
    # Either core's Queue at run time; both have this API (_core.pyi stubs the compiled one).
    from oddjob._core_py import Queue


def park_workers(core: ModuleType, queue: Queue, n: int) -> list[tuple[object, threading.Thread]]:
    """Start n threads running queue.work(worker), each parked idle before the next starts
    (so the last one started is the top of the idle stack)."""
    started = []
    for i in range(n):
        worker = core.Worker(f"oddjob-edge-{i}")
        thread = threading.Thread(target=queue.work, args=(worker,), name=worker.name)
        thread.start()
        deadline = time.monotonic() + WAIT
        while queue.idle_count() < i + 1:
            assert time.monotonic() < deadline, "worker never went idle"
            time.sleep(0.001)
        started.append((worker, thread))
    return started


def test_a_worker_retired_just_after_a_push_woke_it_passes_the_wake_up_on(core):
    queue = core.Queue("edge")
    (_, first), (top, second) = park_workers(core, queue, 2)
    ran = Recorder()
    # push() picks the top idle worker and wakes it; retire() reaches it before it runs.
    queue.push(ran, ("job",), None)
    queue.retire(top)
    assert ran.wait_for_count(1) == ["job"]  # the other worker took the job
    join_all([second])
    queue.close()
    join_all([first])


def test_work_and_retire_refuse_none_for_a_worker(core):
    queue = core.Queue("edge")
    with pytest.raises(TypeError):
        queue.work(None)
    with pytest.raises(TypeError):
        queue.retire(None)
    queue.close()


def test_push_refuses_none_for_args_and_queues_nothing(core):
    queue = core.Queue("edge")
    with pytest.raises(TypeError):
        queue.push(print, None, None)
    with pytest.raises(TypeError):
        queue.push_async(print, None, None)
    assert len(queue) == 0
    queue.close()


def test_close_cancels_every_dropped_job_even_when_a_callback_raises_system_exit(core):
    queue = core.Queue("edge")
    jobs = [queue.push_async(print, (i,), None) for i in range(5)]

    def bail(_job: object) -> None:
        raise SystemExit("from a done callback")

    jobs[1].add_done_callback(bail)
    with pytest.raises(SystemExit):
        queue.close(cancel_pending=True)
    assert [job.cancelled() for job in jobs] == [True] * 5


def test_a_done_callback_raising_system_exit_crashes_only_its_worker(make_pool, oddjob_log):
    pool = make_pool(2)
    gate = threading.Event()
    blocker = oddjob.async_perform(pool, gate.wait, WAIT)
    job = oddjob.async_perform(pool, lambda: "value")
    oddjob.await_(job, timeout=WAIT)

    def bail(_job: object) -> None:
        raise SystemExit("from a done callback")

    queued = oddjob.async_perform(pool, gate.wait, WAIT)
    queued.add_done_callback(bail)
    gate.set()
    assert oddjob.await_many([blocker, queued], timeout=WAIT) == [True, True]
    oddjob_log.wait_for(lambda r: r.levelname == "ERROR" and r.exc_info is not None)
    # The crashed worker was replaced: the pool still runs jobs on two workers.
    deadline = time.monotonic() + WAIT
    while len(oddjob.workers(pool)) != 2:
        assert time.monotonic() < deadline, oddjob.workers(pool)
        time.sleep(0.01)
    assert oddjob.await_(oddjob.async_perform(pool, lambda: 42), timeout=WAIT) == 42


def test_dispatcher_queues_jobs_with_keywords_named_like_its_own_parameters(core):
    queue = core.Queue("edge")
    dispatcher = core.Dispatcher({"edge": queue}, lambda pool: queue)
    dispatcher.perform("edge", dict, 1, pool="p", fn="f")
    job = dispatcher.async_perform("edge", dict, pool="p", fn="f")
    ((fn, args, kwargs, _), (_, _, job_kwargs, queued)) = queue.snapshot()
    assert (fn, args, kwargs) == (dict, (1,), {"pool": "p", "fn": "f"})
    assert queued is job and job_kwargs == {"pool": "p", "fn": "f"}
    queue.close(cancel_pending=True)


def test_dispatcher_needs_a_pool_and_a_function(core):
    queue = core.Queue("edge")
    dispatcher = core.Dispatcher({}, lambda pool: queue)
    with pytest.raises(TypeError):
        dispatcher.perform("edge")
    with pytest.raises(TypeError):
        dispatcher.async_perform()
    assert len(queue) == 0
    queue.close()


def test_the_compiled_dispatcher_serves_queues_of_either_core(core):
    # oddjob.perform is the default core's Dispatcher, whichever core a pool runs on.
    queue = core.Queue("edge")
    dispatcher = oddjob._backend.core.Dispatcher({"edge": queue}, lambda pool: queue)
    dispatcher.perform("edge", print, "x")
    job = dispatcher.async_perform("edge", abs, -1)
    assert len(queue) == 2
    assert type(job) is core.Job
    queue.close(cancel_pending=True)


class Marker:
    """Something weakly referenceable to watch a reference cycle with."""


def test_a_finished_job_in_a_reference_cycle_is_collected(make_pool):
    pool = make_pool(1)

    def make() -> weakref.ref[Marker]:
        box: list[object] = [Marker()]
        cycle_made = threading.Event()

        def fn() -> int:
            cycle_made.wait(WAIT)  # without a GIL the job may start before the append
            return len(box)

        job = oddjob.async_perform(pool, fn)
        box.append(job)  # box -> job -> fn -> closure cell -> box
        cycle_made.set()
        assert oddjob.await_(job, timeout=WAIT) == 2
        return weakref.ref(box[0])  # type: ignore[arg-type]

    ref = make()
    # One worker: this job starts only once the worker has let go of the one before
    # (without a GIL, await_ may return while the worker still holds it to notify).
    assert oddjob.await_(oddjob.async_perform(pool, abs, -1), timeout=WAIT) == 1
    gc.collect()
    assert ref() is None


def test_a_queued_job_in_a_reference_cycle_is_kept_until_it_runs(make_pool):
    pool = make_pool(1)
    release = threading.Event()
    oddjob.perform(pool, release.wait, WAIT)
    ran = Recorder()

    def make() -> weakref.ref[Marker]:
        box: list[object] = [Marker()]

        def fn() -> None:
            ran(len(box))

        box.append(oddjob.async_perform(pool, fn))
        return weakref.ref(box[0])  # type: ignore[arg-type]

    ref = make()
    gc.collect()
    assert ref() is not None  # reachable from the queue
    release.set()
    assert ran.wait_for_count(1) == [2]
    deadline = time.monotonic() + WAIT
    while ref() is not None:  # once run, the cycle is garbage
        assert time.monotonic() < deadline, "the finished job's cycle was never collected"
        gc.collect()
        time.sleep(0.01)
