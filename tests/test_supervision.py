"""Supervision (contract v2): a job that raises an Exception fails and its worker lives on;
a worker crashes on a BaseException that is not an Exception, or on any exception with
restart_on_error=True, and is replaced by a fresh thread; too many crashes in a window
restart the whole worker set while the queue survives."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate


def wait_until(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def boom() -> None:
    raise RuntimeError("boom")


def test_a_failing_job_keeps_its_worker_and_is_logged_with_pool_function_and_args(
    make_pool, oddjob_log
):
    name = make_pool(2)
    before = set(oddjob.workers(name))

    def fails(user_id: int, payload: str, *, retry: bool) -> None:
        raise RuntimeError("the API said no")

    oddjob.perform(name, fails, 42, "x" * 10_000, retry=False)
    (record,) = oddjob_log.wait_for(lambda r: r.levelno == logging.ERROR)
    message = record.getMessage()
    assert repr(name) in message
    assert "fails" in message
    assert "42" in message and "retry=False" in message
    assert len(message) < 500, "the arguments are shown short, as reprlib shows them"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the API said no"
    # The same workers, still alive, run the next jobs; nothing counted as a crash.
    assert oddjob.await_many(oddjob.async_perform_many(name, range(4), abs), WAIT) == [0, 1, 2, 3]
    assert set(oddjob.workers(name)) == before
    assert all(t.is_alive() for t in before)
    assert oddjob.supervisor(name).crashes == 0


def thread_local_probe() -> tuple[Callable[[], None], Callable[[], object]]:
    """Two jobs: put() leaves a value in its worker thread's thread-locals, get()
    returns what the worker running it finds there (None if nothing)."""
    local = threading.local()

    def put() -> None:
        local.value = "left by an earlier job"

    def get() -> object:
        return getattr(local, "value", None)

    return put, get


def test_an_async_failure_keeps_its_worker_and_its_thread_locals(make_pool):
    name = make_pool(1)
    (first,) = oddjob.workers(name)
    put, get = thread_local_probe()

    oddjob.await_(oddjob.async_perform(name, put), WAIT)
    with pytest.raises(RuntimeError, match="boom"):
        oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    assert oddjob.await_(oddjob.async_perform(name, get), WAIT) == "left by an earlier job"
    assert oddjob.await_(oddjob.async_perform(name, threading.current_thread), WAIT) is first
    assert oddjob.supervisor(name).crashes == 0


def test_with_restart_on_error_a_failing_job_replaces_its_worker(make_pool, oddjob_log):
    name = make_pool(2, restart_on_error=True)
    before = set(oddjob.workers(name))
    oddjob.perform(name, boom)
    (record,) = oddjob_log.wait_for(lambda r: r.levelno == logging.ERROR)
    assert "replacing its worker" in record.getMessage()
    wait_until(lambda: oddjob.supervisor(name).crashes == 1, what="the crash to count")
    wait_until(lambda: len(oddjob.workers(name)) == 2, what="the replacement")
    after = set(oddjob.workers(name))
    assert len(after & before) == 1  # one thread replaced, the other kept
    assert oddjob.await_(oddjob.async_perform(name, lambda: "still works"), WAIT) == "still works"


def test_with_restart_on_error_an_async_failure_replaces_the_worker_too(make_pool):
    name = make_pool(1, restart_on_error=True)
    (first,) = oddjob.workers(name)
    with pytest.raises(RuntimeError, match="boom"):
        oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    first.join(WAIT)  # the crashed worker's thread is gone ...
    assert not first.is_alive()
    # ... and a fresh one runs the next job.
    assert oddjob.await_(oddjob.async_perform(name, threading.current_thread), WAIT) is not first


def test_with_restart_on_error_the_replacement_has_fresh_thread_locals(make_pool):
    name = make_pool(1, restart_on_error=True)
    put, get = thread_local_probe()

    oddjob.await_(oddjob.async_perform(name, put), WAIT)
    assert oddjob.await_(oddjob.async_perform(name, get), WAIT) == "left by an earlier job"
    with pytest.raises(RuntimeError):
        oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    assert oddjob.await_(oddjob.async_perform(name, get), WAIT) is None


@pytest.mark.parametrize("restart_on_error", [False, True])
def test_a_failure_keeps_the_queue_and_its_order(make_pool, oddjob_log, restart_on_error):
    name = make_pool(1, restart_on_error=restart_on_error)
    release = gate()
    block_workers(name, 1, release)
    ran = Recorder()
    oddjob.perform(name, boom)
    oddjob.perform_many(name, range(20), ran)
    release.set()
    assert ran.wait_for_count(20) == list(range(20))
    assert len(oddjob.workers(name)) == 1


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_in_a_job_crashes_only_its_worker(make_pool, oddjob_log, exc_type):
    name = make_pool(2)  # restart_on_error=False: a BaseException crashes the worker anyway

    def bail() -> None:
        raise exc_type("raised inside a job")

    oddjob.perform(name, bail)
    records = oddjob_log.wait_for(lambda r: r.levelno == logging.ERROR and r.exc_info is not None)
    assert records[0].exc_info[0] is exc_type
    wait_until(lambda: oddjob.supervisor(name).crashes == 1)
    wait_until(lambda: len(oddjob.workers(name)) == 2)
    assert oddjob.await_many(oddjob.async_perform_many(name, range(4), abs), WAIT) == [0, 1, 2, 3]


def test_crashes_within_the_intensity_replace_only_the_crashed_workers(make_pool):
    name = make_pool(2, max_restarts=3, max_seconds=60, restart_on_error=True)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    wait_until(lambda: oddjob.supervisor(name).crashes == 3)
    assert oddjob.supervisor(name).restarts == 0


def test_exceeding_the_restart_intensity_replaces_every_worker_and_keeps_the_queue(
    make_pool, oddjob_log
):
    name = make_pool(3, max_restarts=1, max_seconds=60, restart_on_error=True)
    original = set(oddjob.workers(name))
    release = gate()
    blocked = block_workers(name, 1, release)  # a running job: it must finish first
    running_now = Recorder()
    lock = threading.Lock()
    active = [0, 0]  # running now, most ever

    def tracked(i: int) -> int:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.002)
        with lock:
            active[0] -= 1
        running_now(i)
        return i

    for _ in range(2):  # 2 crashes > max_restarts=1
        with pytest.raises(RuntimeError):
            oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    oddjob_log.wait_for(lambda r: r.levelno == logging.WARNING and "restart" in r.getMessage())
    assert oddjob.supervisor(name).restarts == 1
    jobs = oddjob.async_perform_many(name, range(30), tracked)
    assert not blocked[0].done()  # the running job was not interrupted
    release.set()
    assert oddjob.await_(blocked[0], WAIT) == "blocker 0"
    assert oddjob.await_many(jobs, WAIT) == list(range(30))
    assert sorted(running_now.items) == list(range(30))  # each ran exactly once
    wait_until(lambda: len(oddjob.workers(name)) == 3, what="a full worker set")
    assert not (set(oddjob.workers(name)) & original), "every original worker was replaced"
    assert active[1] <= 3, "never more jobs at once than the pool size"


@pytest.mark.parametrize("restart_on_error", [False, True])
def test_a_failure_while_the_pool_drains_at_stop_still_runs_the_rest(
    make_pool, oddjob_log, restart_on_error
):
    name = make_pool(1, restart_on_error=restart_on_error)
    release = gate()
    block_workers(name, 1, release)
    ran = Recorder()
    oddjob.perform(name, boom)
    oddjob.perform_many(name, range(5), ran)
    stopper = threading.Thread(target=oddjob.stop, args=(name,), kwargs={"timeout": WAIT})
    stopper.start()
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert ran.items == list(range(5))
    assert oddjob.whereis(name) is None


def test_base_exception_crashes_count_toward_the_restart_intensity(make_pool, oddjob_log):
    name = make_pool(2, max_restarts=1, max_seconds=60)
    original = set(oddjob.workers(name))

    def bail() -> None:
        raise SystemExit("raised inside a job")

    for _ in range(2):  # 2 crashes > max_restarts=1, with restart_on_error=False
        oddjob.perform(name, bail)
    oddjob_log.wait_for(lambda r: r.levelno == logging.WARNING and "restart" in r.getMessage())
    assert oddjob.supervisor(name).restarts == 1
    wait_until(lambda: len(oddjob.workers(name)) == 2, what="a full worker set")
    wait_until(lambda: not any(t.is_alive() for t in original), what="the old workers to go")
    assert oddjob.await_many(oddjob.async_perform_many(name, range(3), abs), WAIT) == [0, 1, 2]


def test_failures_without_restart_on_error_never_count_toward_the_intensity(make_pool):
    name = make_pool(1, max_restarts=0, max_seconds=60)
    (worker,) = oddjob.workers(name)
    jobs = oddjob.async_perform_many(name, range(20), lambda i: 1 / 0)
    for job in jobs:
        with pytest.raises(ZeroDivisionError):
            oddjob.await_(job, WAIT)
    assert oddjob.await_(oddjob.async_perform(name, threading.current_thread), WAIT) is worker
    sup = oddjob.supervisor(name)
    assert (sup.crashes, sup.restarts) == (0, 0)
