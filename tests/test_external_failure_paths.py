"""Failure paths of rate limits, retries and queue deadlines, over both cores: a backoff
timer that cannot be set, a hostile ``__instancecheck__``, a fork while a retry waits,
a pool that breaks or is stopped with retries waiting (driven on the core Queue itself),
and the rate waiter woken by retire()."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest

import oddjob
import support
from oddjob import Retry
from support import WAIT, run_child

NOW = Retry(attempts=3, backoff=0.0, jitter=False)


class Flaky:
    """Raises ConnectionError on every run; counts the runs."""

    def __init__(self) -> None:
        self.runs = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self._lock:
            self.runs += 1
            n = self.runs
        raise ConnectionError(f"run {n}")


def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- the backoff timer cannot be set -------------------------------------------------------


def test_a_retry_whose_timer_cannot_be_set_fails_with_its_own_error(core, monkeypatch, caplog):
    from oddjob import _scheduler

    def refuse(*args: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_scheduler, "call_later", refuse)
    flaky = Flaky()
    caplog.set_level(logging.ERROR, logger="oddjob")
    with oddjob.Pool(support.new_name(), pool_size=1, retry=NOW) as pool:
        job = pool.async_perform(flaky)
        with pytest.raises(ConnectionError, match="run 1"):
            job.result(timeout=WAIT)
        assert job.attempts == 1
        pool.perform(flaky, "ff")
        until(lambda: pool.stats().failed == 2, "the fire-and-forget job to fail")
        stats = pool.stats()
        # Neither was a retry: no timer was ever set.
        assert (stats.retried, stats.queued, stats.running) == (0, 0, 0)
        assert pool.queue.retries_waiting() == 0
    assert flaky.runs == 2
    refused = [r for r in caplog.records if "could not schedule the retry" in r.getMessage()]
    assert len(refused) == 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in refused)
    ff = [r for r in caplog.records if "raised ConnectionError" in r.getMessage()]
    assert len(ff) == 1  # the fire-and-forget job's own failure, logged once


# -- a hostile __instancecheck__ -----------------------------------------------------------


class _Hostile(type):
    def __instancecheck__(cls, instance: object) -> bool:
        raise RuntimeError("hostile __instancecheck__")


class Picky(Exception, metaclass=_Hostile):
    pass


def test_a_hostile_instancecheck_fails_the_job_once_and_keeps_the_worker(core):
    flaky = Flaky()
    with oddjob.Pool(support.new_name(), pool_size=1, retry=Retry(on=Picky)) as pool:
        worker = pool.workers()[0]
        job = pool.async_perform(flaky)
        with pytest.raises(ConnectionError):
            job.result(timeout=WAIT)
        assert job.attempts == 1
        assert pool.async_perform(lambda: "still here").result(timeout=WAIT) == "still here"
        assert pool.workers() == [worker]
        assert pool.stats().retried == 0


# -- fork while a retry waits ----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_retry_waiting_at_fork_is_settled_in_the_child_and_runs_in_the_parent(core):
    result = run_child(
        core,
        """
        import os, signal, threading, time, warnings, oddjob
        assert oddjob._backend.core.IMPLEMENTATION == os.environ["EXPECT_CORE"]
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        from concurrent.futures import CancelledError
        pool = oddjob.start_link("p", pool_size=1,
                                 retry=oddjob.Retry(attempts=2, backoff=0.5, jitter=False))
        runs = []
        def flaky():
            runs.append(os.getpid())
            if len(runs) == 1:
                raise ConnectionError("first run")
            return "second run"
        job = oddjob.async_perform("p", flaky)
        deadline = time.monotonic() + 10
        while pool.queue.retries_waiting() != 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # a hang ends the child with SIGALRM
            try:
                oddjob.await_(job, None)
            except CancelledError:
                os.write(1, f"child: cancelled, runs here {runs.count(os.getpid())}\\n".encode())
                os._exit(0)
            except BaseException as exc:
                os.write(1, f"child: unexpected {exc!r}\\n".encode())
            os._exit(1)
        os.write(1, f"parent: {oddjob.await_(job, 10)} after {job.attempts}\\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, f"child status: {status}\\n".encode())
        """,
        EXPECT_CORE=core.IMPLEMENTATION,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "child status: 0",
        "child: cancelled, runs here 0",
        "parent: second run after 2",
    ]


# -- the core Queue: close() with retries waiting ----------------------------------------------


class Later:
    """A retry_later hook that keeps what the core hands it (the scheduler's part is
    tested through pools; here the test decides when a backoff is over)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.ready = threading.Event()

    def __call__(
        self, queue: Any, item: object, attempt: int, exc: BaseException, fn: Any, ref: Any
    ) -> None:
        self.calls.append((item, attempt, exc, fn, ref))
        self.ready.set()


def fail(*args: Any) -> None:
    raise ConnectionError("always")


def worker_thread(core: Any, queue: Any) -> threading.Thread:
    worker = core.Worker("oddjob-test-worker")
    thread = threading.Thread(target=queue.work, args=(worker,), name="oddjob-test-worker")
    thread.start()
    return thread


def retry_queue(core: Any, later: Later) -> Any:
    return core.Queue(
        support.new_name(), retry_attempts=3, retry_on=(ConnectionError,), retry_later=later
    )


@pytest.mark.parametrize("async_", [True, False], ids=["async", "fire-and-forget"])
def test_close_waits_for_a_retry_and_runs_it(core, async_):
    later = Later()
    queue = retry_queue(core, later)
    thread = worker_thread(core, queue)
    job = queue.push_async(fail, (), None) if async_ else queue.push(fail, (), None)
    assert later.ready.wait(WAIT)
    queue.close()
    time.sleep(0.05)
    assert thread.is_alive()  # a closed queue with a retry waiting keeps its worker
    item, attempt, exc, fn, ref = later.calls[0]
    assert (attempt, type(exc), fn) == (1, ConnectionError, fail)
    assert (ref is None) is (not async_)
    later.ready.clear()
    assert queue.requeue(item) is True
    assert later.ready.wait(WAIT)  # the second run failed too: another retry
    assert queue.requeue(later.calls[1][0]) is True
    thread.join(WAIT)
    assert not thread.is_alive()  # the third run was the last: the queue drained
    stats = queue.stats()
    assert (stats[3], stats[5], stats[9]) == (3, 1, 2)  # started, failed, retried
    if async_:
        assert job.attempts == 3 and type(job.exception(0)) is ConnectionError


@pytest.mark.parametrize("async_", [True, False], ids=["async", "fire-and-forget"])
def test_close_cancel_pending_settles_a_waiting_retry(core, async_, caplog):
    later = Later()
    queue = retry_queue(core, later)
    thread = worker_thread(core, queue)
    job = queue.push_async(fail, (), None) if async_ else queue.push(fail, (), None)
    assert later.ready.wait(WAIT)
    caplog.set_level(logging.ERROR, logger="oddjob")
    assert queue.close(True) == 1
    thread.join(WAIT)
    assert not thread.is_alive()
    assert queue.requeue(later.calls[0][0]) is False  # settled: the timer finds nothing
    stats = queue.stats()
    assert (stats[0], stats[6]) == (0, 1)  # queued, cancelled
    if async_:
        assert job.cancelled()
    else:  # the fire-and-forget job's last error is not lost
        [record] = [r for r in caplog.records if "retry was cancelled" in r.getMessage()]
        assert "raised ConnectionError" in record.getMessage()


def test_a_broken_queue_fails_a_waiting_retry_with_pool_broken_error(core):
    later = Later()
    queue = retry_queue(core, later)
    thread = worker_thread(core, queue)
    job = queue.push_async(fail, (), None)
    assert later.ready.wait(WAIT)
    cause = RuntimeError("initializer failed")
    queue.close(False, cause)
    thread.join(WAIT)
    assert not thread.is_alive()
    with pytest.raises(oddjob.PoolBrokenError) as caught:
        job.result(timeout=0)
    assert caught.value.__cause__ is cause
    assert queue.requeue(later.calls[0][0]) is False
    assert queue.stats()[5] == 1  # failed


def test_requeue_refuses_what_is_not_a_waiting_retry(core):
    queue = retry_queue(core, Later())
    with pytest.raises(TypeError, match="requeue takes a job waiting for its retry"):
        queue.requeue("job")
    job = queue.push_async(fail, (), None)
    assert queue.requeue(job) is False  # queued, not waiting for a retry
    assert len(queue) == 1
    queue.close(True)


# -- retire() wakes the rate waiter -------------------------------------------------------------


def test_retire_wakes_the_worker_waiting_for_the_rate(core):
    queue = core.Queue(support.new_name(), rate_limit=(1, 60.0))
    ran = support.Recorder()
    worker = core.Worker("oddjob-test-rate")
    thread = threading.Thread(target=queue.work, args=(worker,), name="oddjob-test-rate")
    thread.start()
    queue.push(ran, ("first",), None)
    queue.push(ran, ("second",), None)  # not for another 60 s
    ran.wait_for_count(1)
    time.sleep(0.05)  # the worker is asleep until its turn
    began = time.monotonic()
    queue.retire(worker)
    thread.join(WAIT)
    assert not thread.is_alive() and time.monotonic() - began < 5
    assert ran.items == ["first"] and len(queue) == 1
    queue.close(True)
