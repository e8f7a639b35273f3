"""Regression tests for the failure paths a hostile test run found (issue 9): fork in
the middle of a job, huge timeouts, hostile arguments, Supervisor.stop timing out,
re-read failures, uninitialised Jobs. (Resource limits: test_resource_limits.py.)"""

from __future__ import annotations

import math
import os
import threading
import time
from datetime import timedelta

import pytest

import oddjob
import support
from support import WAIT, Recorder, block_workers, frame_names, gate, run_child

HUGE_TIMEOUTS = [math.inf, 1e10, timedelta.max, 10**12, 10**400]


# -- 1. a job running when the process forks -------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_job_running_at_fork_fails_in_the_child_instead_of_hanging(core):
    result = run_child(
        core,
        """
        import os, signal, sys, threading, warnings, oddjob
        assert oddjob._backend.core.IMPLEMENTATION == os.environ["EXPECT_CORE"]
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        oddjob.start_link("p", pool_size=2)
        started, release = threading.Event(), threading.Event()
        def job():
            started.set()
            release.wait(30)
            return "done in the parent"
        running = oddjob.async_perform("p", job)
        assert started.wait(10)
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # a hang ends the child with SIGALRM
            try:
                oddjob.await_(running, None)
            except oddjob.WorkerCrashedError as exc:
                # One write each: the two processes share the pipe.
                os.write(1, f"child: {type(exc).__name__} {'fork' in str(exc)}\\n".encode())
                os._exit(0)
            except BaseException as exc:
                os.write(1, f"child: unexpected {exc!r}\\n".encode())
            os._exit(1)
        release.set()
        os.write(1, f"parent: {oddjob.await_(running, 10)}\\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, f"child status: {status}\\n".encode())
        """,
        EXPECT_CORE=core.IMPLEMENTATION,
    )
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines == [
        "child status: 0",
        "child: WorkerCrashedError True",
        "parent: done in the parent",
    ]


# -- 5. huge timeouts mean forever -------------------------------------------------------------


def finish_soon(release: threading.Event) -> threading.Timer:
    timer = threading.Timer(0.05, release.set)
    timer.start()
    return timer


def _done_when_set(release: threading.Event) -> str:
    assert release.wait(WAIT)
    return "done"


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_huge_timeouts_wait_for_the_job(make_pool, timeout):
    pool = make_pool(1)
    for wait in (
        lambda job: oddjob.await_(job, timeout),
        lambda job: job.result(timeout),
        lambda job: job.exception(timeout) or "done",
        lambda job: oddjob.await_many([job], timeout)[0],
    ):
        release = threading.Event()
        job = oddjob.async_perform(pool, _done_when_set, release)
        timer = finish_soon(release)
        assert wait(job) == "done"
        timer.join(WAIT)


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_stop_with_a_huge_timeout_joins_the_pool(timeout):
    name = support.new_name()
    oddjob.start_link(name, pool_size=2)
    workers = oddjob.workers(name)
    release = threading.Event()
    ran = Recorder()
    oddjob.perform(name, lambda: ran(release.wait(WAIT)))
    timer = finish_soon(release)
    oddjob.stop(name, timeout=timeout)  # waits for the drain, without OverflowError
    assert ran.items == [True]
    assert not any(t.is_alive() for t in workers)
    assert oddjob.whereis(name) is None
    timer.join(WAIT)


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_huge_durations_configure_forever(make_pool, timeout):
    pool = make_pool(1, max_seconds=timeout, restart_on_error=True, max_restarts=0)
    assert oddjob.whereis(pool).options.max_seconds >= 1e10  # type: ignore[union-attr]
    oddjob.configure(exit_timeout=timeout)
    assert oddjob._config.settings().exit_timeout >= 1e10
    oddjob._config.reset()
    with pytest.raises(ZeroDivisionError):  # the window never ends: a crash restarts all
        oddjob.await_(oddjob.async_perform(pool, lambda: 1 / 0), WAIT)
    assert oddjob.await_(oddjob.async_perform(pool, abs, -1), WAIT) == 1


def test_supervisor_stop_takes_a_huge_timeout():
    names = [support.new_name() for _ in range(2)]
    with oddjob.Supervisor(names) as sup:
        assert len(sup.children) == 2
    sup.start()
    sup.stop(timeout=math.inf)
    assert all(oddjob.whereis(n) is None for n in names)


# -- 6. every argument is validated before anything changes -----------------------------------


class HostileBool:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth value here")


@pytest.mark.parametrize("argument", ["cancel_pending", "wait"])
def test_stop_with_a_hostile_flag_raises_and_leaves_the_pool_running(make_pool, argument):
    pool = make_pool(2)
    workers = oddjob.workers(pool)
    with pytest.raises(TypeError, match=argument):
        oddjob.stop(pool, **{argument: HostileBool()})  # type: ignore[arg-type]
    assert oddjob.whereis(pool) is not None
    assert oddjob.await_(oddjob.async_perform(pool, abs, -3), WAIT) == 3
    assert oddjob.workers(pool) == workers
    oddjob.stop(pool, timeout=WAIT)
    assert not any(t.is_alive() for t in workers)


@pytest.mark.parametrize("timeout", [-1, "5", math.nan, object()], ids=repr)
def test_stop_with_a_bad_timeout_raises_and_leaves_the_pool_running(make_pool, timeout):
    pool = make_pool(1)
    with pytest.raises((TypeError, ValueError)):
        oddjob.stop(pool, timeout=timeout)
    assert oddjob.await_(oddjob.async_perform(pool, abs, -3), WAIT) == 3


# -- 7. Supervisor.stop stops every child, then reports ----------------------------------------


def test_supervisor_stop_timing_out_still_stops_every_child():
    stuck, other, last = (support.new_name() for _ in range(3))
    release = gate()
    sup = oddjob.Supervisor([other, last, stuck]).start()  # stopped in reverse: stuck first
    block_workers(stuck, 1, release)
    workers = {name: oddjob.workers(name) for name in (stuck, other, last)}
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=repr(stuck)) as caught:
        sup.stop(timeout=0.3)
    assert time.monotonic() - started < WAIT
    assert repr(other) not in str(caught.value)
    assert [oddjob.whereis(n) for n in (stuck, other, last)] == [None, None, None]
    support.join_all(workers[other] + workers[last])
    assert any(t.is_alive() for t in workers[stuck])  # one is still finishing its job
    release.set()
    support.join_all(workers[stuck])


# -- 8. a failure read many times keeps its traceback ------------------------------------------


def test_rereading_a_failure_never_grows_its_traceback(make_pool):
    pool = make_pool(1)

    def failing_job() -> None:
        raise ValueError("read me again")

    job = oddjob.async_perform(pool, failing_job)
    lengths = set()
    for read in range(1000):
        reader = (oddjob.await_, lambda j: j.result(WAIT), lambda j: oddjob.await_many([j]))[
            read % 3
        ]
        with pytest.raises(ValueError) as caught:
            reader(job)
        names = frame_names(caught.value)
        assert "failing_job" in names
        lengths.add((read % 3, len(names)))
    assert len(lengths) == 3, f"one traceback length per way of reading it: {lengths}"
    assert job.exception(0) is caught.value


# -- 9. hostile pool arguments are refused alike everywhere ------------------------------------


class HostileHash:
    def __hash__(self) -> int:
        raise RuntimeError("no hash for you")


class PassesForJob:
    """Hashes and compares equal to "job": must not reach the pool named "job"."""

    def __hash__(self) -> int:
        return hash("job")

    def __eq__(self, other: object) -> bool:
        return True


class NameSubclass(str):
    pass


@pytest.mark.parametrize(
    "pool", [HostileHash(), PassesForJob(), NameSubclass("job"), 3], ids=lambda p: type(p).__name__
)
def test_every_entry_point_refuses_a_hostile_pool_argument_with_type_error(pool):
    oddjob.start_link("job").perform(abs, 1)  # the real "job" pool is running
    support.track("job")
    ran = Recorder()
    calls = [
        lambda: oddjob.perform(pool, ran, 1),
        lambda: oddjob.async_perform(pool, ran, 1),
        lambda: oddjob.perform_many(pool, [1], ran),
        lambda: oddjob.async_perform_many(pool, [1], ran),
        lambda: oddjob.perform_after(0, pool, ran, 1),
        lambda: oddjob.stop(pool),
        lambda: oddjob.pool(pool),
        lambda: oddjob.workers(pool),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="str"):
            call()
    oddjob.await_(oddjob.async_perform("job", abs, 1), WAIT)  # drains what "job" had
    assert ran.items == []


# -- 10. an uninitialised Job -------------------------------------------------------------------


def test_an_uninitialised_job_raises_type_error_and_touches_nothing(core):
    job = core.Job.__new__(core.Job)
    for call in (
        job.cancel,
        lambda: job.add_done_callback(print),
        lambda: job.result(0),
        lambda: job.exception(0),
        lambda: oddjob.await_(job, 0),
    ):
        with pytest.raises(TypeError, match="never initialised"):
            call()
    assert job.ref == 0
