"""as_completed and wait: jobs in finishing order, deadlines that cancel nothing, the
three return_when modes, bad input, and many threads waiting on the same jobs."""

from __future__ import annotations

import concurrent.futures
import gc
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

import oddjob
from oddjob import _backend, _core_py, _waiting
from support import SETTLE, WAIT, block_workers, gate, new_name, run_threads


class Boom(Exception):
    pass


def gated(pool, n, *, fail=()):
    """n jobs on `pool` (which needs n workers), job i returning i (raising Boom(i) for
    i in fail) once its own gate is opened. Returns (jobs, gates)."""
    gates = [gate() for _ in range(n)]

    def step(i):
        assert gates[i].wait(WAIT), f"gate {i} never opened"
        if i in fail:
            raise Boom(i)
        return i

    return [oddjob.async_perform(pool, step, i) for i in range(n)], gates


def finish(job, job_gate):
    """Open the job's gate and wait until the job is done (without reading it)."""
    job_gate.set()
    done = threading.Event()
    job.add_done_callback(lambda _job: done.set())
    assert done.wait(WAIT), f"{job!r} did not finish"


def in_thread(call):
    """Run call() in a thread; returns (thread, outcome list that gets its result)."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run, name="test-waiter")
    t.start()
    return t, outcome


def joined(t, outcome):
    t.join(WAIT)
    assert not t.is_alive(), "the waiting call did not return"
    (value,) = outcome
    if isinstance(value, BaseException):
        raise value
    return value


# ----------------------------------------------------------------------------
# as_completed


def test_as_completed_yields_jobs_in_the_order_they_finish_not_input_order(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3)
    it = oddjob.as_completed(jobs, timeout=WAIT)
    for i in (2, 0, 1):
        gates[i].set()
        assert next(it) is jobs[i]  # the only job whose gate is open
    with pytest.raises(StopIteration):
        next(it)
    assert [job.result(0) for job in jobs] == [0, 1, 2]


def test_as_completed_keeps_the_finishing_order_of_jobs_that_finish_unread(make_pool):
    # All three finish after the call and before the first next(): the order they come
    # out in is the order they finished in.
    pool = make_pool(3)
    jobs, gates = gated(pool, 3)
    it = oddjob.as_completed(jobs, timeout=WAIT)
    for i in (1, 2, 0):
        finish(jobs[i], gates[i])
    assert list(it) == [jobs[1], jobs[2], jobs[0]]


def test_jobs_already_done_come_first_in_input_order(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3)
    finish(jobs[2], gates[2])
    finish(jobs[1], gates[1])
    it = oddjob.as_completed([jobs[0], jobs[2], jobs[1]], timeout=WAIT)
    assert next(it) is jobs[2]
    assert next(it) is jobs[1]
    assert not jobs[0].done()
    gates[0].set()
    assert next(it) is jobs[0]
    assert list(it) == []


def test_failed_and_cancelled_jobs_are_yielded_unread(make_pool):
    pool = make_pool(2)
    release = gate()
    (blocker,) = block_workers(pool, 1, release)
    (failing,), failing_gates = gated(pool, 1, fail={0})
    queued = oddjob.async_perform(pool, lambda: "never runs")  # both workers are busy
    it = oddjob.as_completed([blocker, failing, queued], timeout=WAIT)
    assert queued.cancel()
    assert next(it) is queued
    assert queued.cancelled()
    failing_gates[0].set()
    assert next(it) is failing
    release.set()
    assert next(it) is blocker
    assert list(it) == []
    # Nothing was read or cancelled on the way: each outcome is still there.
    assert isinstance(failing.exception(0), Boom)
    with pytest.raises(Boom):
        failing.result(0)
    assert blocker.result(0) == "blocker 0"
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(0)


def test_as_completed_times_out_and_the_jobs_left_stay_collectable(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[0], gates[0])
    it = oddjob.as_completed(jobs, timeout=0.2)
    assert next(it) is jobs[0]
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="1 of 2 jobs"):
        next(it)
    assert time.monotonic() - t0 >= 0.15
    assert not jobs[1].done()
    assert not jobs[1].cancelled()
    gates[1].set()
    assert oddjob.await_(jobs[1], timeout=WAIT) == 1
    assert list(oddjob.as_completed(jobs, timeout=WAIT)) == jobs


def test_as_completed_deadline_runs_from_the_call_and_takes_a_timedelta(make_pool):
    pool = make_pool(1)
    (job,), _gates = gated(pool, 1)
    t0 = time.monotonic()
    it = oddjob.as_completed([job], timeout=timedelta(seconds=0.2))
    with pytest.raises(TimeoutError):
        next(it)
    assert time.monotonic() - t0 >= 0.15
    assert not job.done()


def test_as_completed_with_timeout_zero_yields_what_is_done_then_times_out(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[1], gates[1])
    it = oddjob.as_completed(jobs, timeout=0)
    assert next(it) is jobs[1]
    with pytest.raises(TimeoutError):
        next(it)
    gates[0].set()
    assert jobs[0].result(WAIT) == 0


def test_as_completed_yields_a_job_given_more_than_once_once(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3)
    finish(jobs[0], gates[0])
    a, b, c = jobs
    it = oddjob.as_completed([a, b, a, c, b, a], timeout=WAIT)
    gates[2].set()
    gates[1].set()
    got = list(it)
    assert Counter(got) == Counter({a: 1, b: 1, c: 1})
    assert got[0] is a


def test_as_completed_of_nothing_yields_nothing():
    assert list(oddjob.as_completed([])) == []
    assert list(oddjob.as_completed(iter(()), timeout=0)) == []


def test_as_completed_takes_any_iterable_of_jobs(make_pool):
    pool = make_pool(2)
    jobs = [oddjob.async_perform(pool, int, i) for i in range(4)]
    got = list(oddjob.as_completed((job for job in jobs), timeout=WAIT))
    assert sorted(got, key=jobs.index) == jobs
    assert [job.result(0) for job in jobs] == [0, 1, 2, 3]


def test_as_completed_rejects_a_non_job_naming_its_index_when_called(make_pool):
    pool = make_pool(1)
    (job,), _gates = gated(pool, 1)
    t0 = time.monotonic()
    with pytest.raises(TypeError, match="index 2"):
        # Raises at the call, before any next().
        oddjob.as_completed([job, job, "not a job"], timeout=WAIT)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="index 0"):
        oddjob.as_completed("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        oddjob.as_completed(42)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < WAIT / 2  # nothing was waited on
    assert not job.done()


@pytest.mark.parametrize("call", ["as_completed", "wait"])
def test_bad_timeouts_are_rejected_before_waiting(make_pool, call):
    pool = make_pool(1)
    (job,), _gates = gated(pool, 1)
    fn = getattr(oddjob, call)
    with pytest.raises(ValueError, match="timeout"):
        fn([job], timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        fn([job], timeout=timedelta(seconds=-1))
    with pytest.raises(ValueError):
        fn([job], timeout=float("nan"))
    with pytest.raises(TypeError, match="timeout"):
        fn([job], timeout="soon")
    assert not job.done()


@pytest.mark.parametrize(
    "huge", [1e300, 10**400, float("inf"), timedelta.max], ids=["1e300", "10**400", "inf", "max"]
)
def test_huge_timeouts_mean_forever(make_pool, huge):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[0], gates[0])
    it = oddjob.as_completed(jobs, timeout=huge)
    assert next(it) is jobs[0]
    gates[1].set()
    assert next(it) is jobs[1]
    more, more_gates = gated(pool, 2)
    more_gates[0].set()
    done, not_done = oddjob.wait(more, timeout=huge, return_when=oddjob.FIRST_COMPLETED)
    assert done == {more[0]}
    assert not_done == {more[1]}


def test_a_callback_left_on_a_job_after_the_call_is_harmless(make_pool, oddjob_log, caplog):
    pool = make_pool(1)
    (job,), gates = gated(pool, 1)
    it = oddjob.as_completed([job], timeout=0.05)
    with pytest.raises(TimeoutError):
        next(it)
    assert oddjob.wait([job], timeout=0.05) == (set(), {job})
    del it
    gc.collect()
    # The job holds both callbacks, and they hold their calls' state only weakly.
    assert not [o for o in gc.get_objects() if type(o) is _waiting._Collector]
    gates[0].set()
    assert job.result(WAIT) == 0
    # Both done callbacks ran (the job has finished) and found their call over.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ----------------------------------------------------------------------------
# wait


def test_wait_all_completed_returns_once_every_job_is_done(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3, fail={1})
    t, outcome = in_thread(lambda: oddjob.wait(jobs, timeout=WAIT))
    for i in (0, 1):
        finish(jobs[i], gates[i])
    t.join(SETTLE)
    assert t.is_alive(), "wait returned with a job still running"
    gates[2].set()
    result = joined(t, outcome)
    assert result == (set(jobs), set())
    assert result.done == set(jobs)
    assert result.not_done == set()
    assert jobs[1].exception(0) is not None


def test_wait_all_completed_is_the_default_and_the_constants_are_concurrent_futures(make_pool):
    assert oddjob.FIRST_COMPLETED is concurrent.futures.FIRST_COMPLETED
    assert oddjob.FIRST_EXCEPTION is concurrent.futures.FIRST_EXCEPTION
    assert oddjob.ALL_COMPLETED is concurrent.futures.ALL_COMPLETED
    pool = make_pool(2)
    jobs = [oddjob.async_perform(pool, int, i) for i in range(5)]
    assert oddjob.wait(jobs) == (set(jobs), set())


def test_wait_first_completed_returns_when_one_job_finishes(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3)
    t, outcome = in_thread(
        lambda: oddjob.wait(jobs, timeout=WAIT, return_when=oddjob.FIRST_COMPLETED)
    )
    t.join(SETTLE)
    assert t.is_alive(), "wait returned with no job done"
    gates[1].set()
    done, not_done = joined(t, outcome)
    assert done == {jobs[1]}
    assert not_done == {jobs[0], jobs[2]}


def test_wait_first_completed_with_a_job_already_done_returns_at_once(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[0], gates[0])
    done, not_done = oddjob.wait(jobs, timeout=WAIT, return_when="FIRST_COMPLETED")
    assert done == {jobs[0]}
    assert not_done == {jobs[1]}
    assert not jobs[1].done()


def test_wait_first_exception_returns_when_a_job_raises(make_pool):
    pool = make_pool(3)
    jobs, gates = gated(pool, 3, fail={1})
    t, outcome = in_thread(
        lambda: oddjob.wait(jobs, timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION)
    )
    finish(jobs[0], gates[0])  # a result is not an exception: wait goes on
    t.join(SETTLE)
    assert t.is_alive(), "FIRST_EXCEPTION returned on a job that did not raise"
    gates[1].set()
    done, not_done = joined(t, outcome)
    assert done == {jobs[0], jobs[1]}
    assert not_done == {jobs[2]}
    assert isinstance(jobs[1].exception(0), Boom)


def test_wait_first_exception_does_not_count_a_cancel_as_an_exception(make_pool):
    pool = make_pool(2)
    release = gate()
    (blocker,) = block_workers(pool, 1, release)
    (failing,), failing_gates = gated(pool, 1, fail={0})
    queued = oddjob.async_perform(pool, lambda: "never runs")
    t, outcome = in_thread(
        lambda: oddjob.wait(
            [blocker, failing, queued], timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION
        )
    )
    assert queued.cancel()
    t.join(SETTLE)
    assert t.is_alive(), "FIRST_EXCEPTION returned on a cancelled job"
    failing_gates[0].set()
    done, not_done = joined(t, outcome)
    assert done == {queued, failing}
    assert not_done == {blocker}
    # A cancelled job already done at the call does not count either.
    done, not_done = oddjob.wait([queued, blocker], timeout=0, return_when="FIRST_EXCEPTION")
    assert (done, not_done) == ({queued}, {blocker})


def test_wait_first_exception_with_no_failure_waits_for_all(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    t, outcome = in_thread(
        lambda: oddjob.wait(jobs, timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION)
    )
    finish(jobs[1], gates[1])
    t.join(SETTLE)
    assert t.is_alive()
    gates[0].set()
    assert joined(t, outcome) == (set(jobs), set())


def test_wait_first_exception_with_a_failure_already_done_returns_at_once(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2, fail={0})
    finish(jobs[0], gates[0])
    done, not_done = oddjob.wait(jobs, timeout=WAIT, return_when=oddjob.FIRST_EXCEPTION)
    assert (done, not_done) == ({jobs[0]}, {jobs[1]})


def test_wait_returns_on_timeout_and_every_job_stays_collectable(make_pool):
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[0], gates[0])
    for return_when in (oddjob.ALL_COMPLETED, oddjob.FIRST_EXCEPTION):
        t0 = time.monotonic()
        done, not_done = oddjob.wait(jobs, timeout=0.2, return_when=return_when)
        assert time.monotonic() - t0 >= 0.15
        assert (done, not_done) == ({jobs[0]}, {jobs[1]})
    done, not_done = oddjob.wait([jobs[1]], timeout=0, return_when=oddjob.FIRST_COMPLETED)
    assert (done, not_done) == (set(), {jobs[1]})
    assert not jobs[1].cancelled()
    gates[1].set()
    assert oddjob.await_many(jobs, timeout=WAIT) == [0, 1]


def test_wait_counts_a_job_given_more_than_once_once_and_takes_nothing(make_pool):
    assert oddjob.wait([]) == (set(), set())
    pool = make_pool(2)
    jobs, gates = gated(pool, 2)
    finish(jobs[0], gates[0])
    a, b = jobs
    done, not_done = oddjob.wait(iter([a, b, a, b]), timeout=0)
    assert (done, not_done) == ({a}, {b})
    gates[1].set()
    assert oddjob.wait([b, b, a], timeout=WAIT) == ({a, b}, set())


def test_wait_rejects_bad_return_when_and_non_jobs_before_waiting(make_pool):
    pool = make_pool(1)
    (job,), _gates = gated(pool, 1)
    for bad in ("first", None, 1, "first_completed"):
        with pytest.raises(ValueError, match="return_when"):
            oddjob.wait([job], timeout=WAIT, return_when=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="index 1"):
        oddjob.wait([job, object()], timeout=WAIT)  # type: ignore[list-item]
    assert not job.done()


def test_jobs_of_both_cores_can_be_waited_on_together():
    compiled = _backend.compiled()
    if compiled is None:
        pytest.skip("the compiled core is not built here")
    pools, jobs, gates = [], [], []
    for module in (compiled, _core_py):
        with _backend.use(module):
            name = new_name()
            oddjob.start_link(name, pool_size=1)
        more, more_gates = gated(name, 1)
        pools.append(name)
        jobs += more
        gates += more_gates
    assert type(jobs[0]) is not type(jobs[1])
    it = oddjob.as_completed(jobs, timeout=WAIT)
    gates[1].set()
    assert next(it) is jobs[1]
    gates[0].set()
    assert next(it) is jobs[0]
    assert oddjob.wait(jobs, timeout=WAIT) == (set(jobs), set())


# ----------------------------------------------------------------------------
# stress

STRESS_JOBS = 400
STRESS_THREADS = 8


def test_many_threads_waiting_on_shared_jobs_see_each_job_exactly_once_per_call(make_pool):
    pool = make_pool(4)
    go = gate()

    def work(i):
        assert go.wait(WAIT)
        if i % 7 == 0:
            raise Boom(i)
        time.sleep(random.random() * 0.001)
        return i

    jobs = [oddjob.async_perform(pool, work, i) for i in range(STRESS_JOBS)]
    expected = set(jobs)
    everyone = threading.Barrier(STRESS_THREADS + 1)
    problems = []

    def waiter(n):
        rng = random.Random(n)
        mine = jobs + rng.sample(jobs, 50)  # with duplicates
        rng.shuffle(mine)
        everyone.wait(WAIT)
        for round_ in range(3):
            if (n + round_) % 3 == 0:
                seen = Counter(oddjob.as_completed(mine, timeout=WAIT))
                if set(seen) != expected or set(seen.values()) != {1}:
                    problems.append(f"as_completed in thread {n}: {len(seen)} jobs, {seen}")
            elif (n + round_) % 3 == 1:
                done, not_done = oddjob.wait(mine, timeout=WAIT)
                if done != expected or not_done:
                    problems.append(f"wait in thread {n}: {len(done)} done, {len(not_done)}")
            else:
                pending, seen_list = set(mine), list[Any]()
                while pending:
                    done, pending = oddjob.wait(
                        pending, timeout=WAIT, return_when=oddjob.FIRST_COMPLETED
                    )
                    if not done:
                        problems.append(f"FIRST_COMPLETED in thread {n} timed out")
                        break
                    seen_list += done
                if Counter(seen_list) != Counter(expected):
                    problems.append(f"FIRST_COMPLETED in thread {n}: {len(seen_list)} jobs")

    def opener():
        everyone.wait(WAIT)
        for job in jobs[::10]:  # cancel what is still queued while the waiters start
            job.cancel()
        go.set()

    threads = [threading.Thread(target=opener, name="test-opener")]
    threads[0].start()
    run_threads(waiter, STRESS_THREADS, timeout=4 * WAIT)
    threads[0].join(WAIT)
    assert not problems, problems[:5]
    outcomes = Counter[str]()
    for i, job in enumerate(jobs):
        if job.cancelled():
            outcomes["cancelled"] += 1
        elif i % 7 == 0:
            assert isinstance(job.exception(0), Boom)
            outcomes["failed"] += 1
        else:
            assert job.result(0) == i
            outcomes["ok"] += 1
    assert outcomes["cancelled"] > 0
    assert outcomes["failed"] > 0
