"""Concurrency stress: many submitter threads, exactly-once accounting at the end.

The default sizes keep the whole suite within a few minutes on a 2-core machine for both
cores; the @pytest.mark.slow variants (``pytest -m slow``) send ten times as much.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import Counter
from concurrent.futures import CancelledError

import pytest

import oddjob
from support import WAIT, block_workers, join_all, run_threads

SUBMITTERS = 8
# Jobs each submitter sends in the default run (8 x 50,000 = 400,000 per core).
JOBS_PER_SUBMITTER = 50_000
SLOW_JOBS_PER_SUBMITTER = 250_000
# Bound on waiting for a whole stress run to finish (a hang fails, it does not stall CI);
# the slow variants send ten times as much, and under ThreadSanitizer the larger mixed
# run takes about 100 s on an idle 2-core machine: their bound is ten times longer.
STRESS_WAIT = 100.0
SLOW_STRESS_WAIT = 10 * STRESS_WAIT
MAX_BATCH = 64


def async_value(i):
    return i * 3 + 1


def run_mixed_submitters(pool, per_submitter, wait=STRESS_WAIT):
    """SUBMITTERS threads send ids 0 .. SUBMITTERS * per_submitter - 1, each id exactly
    once, by a random mix of perform, perform_many, async_perform and async_perform_many.
    Returns (ids as the jobs ran them, problems seen by the submitters)."""
    ran = []  # list.append is atomic: each job appends its own id
    problems = []

    def record_async(i):
        ran.append(i)
        return async_value(i)

    start = threading.Barrier(SUBMITTERS)

    def submit(t):
        rng = random.Random(t)
        i, end = t * per_submitter, (t + 1) * per_submitter
        jobs = []
        start.wait(WAIT)
        while i < end:
            kind = rng.randrange(4)
            n = min(rng.randint(1, MAX_BATCH), end - i) if kind in (1, 3) else 1
            if kind == 0:
                oddjob.perform(pool, ran.append, i)
            elif kind == 1:
                oddjob.perform_many(pool, range(i, i + n), ran.append)
            elif kind == 2:
                jobs.append(oddjob.async_perform(pool, record_async, i))
            else:
                jobs += oddjob.async_perform_many(pool, range(i, i + n), record_async)
            i += n
        # This thread owns its async jobs, so it stays alive until they are done.
        results = oddjob.await_many(jobs, timeout=wait)
        expected = [async_value(job.args[0]) for job in jobs]
        if results != expected:
            wrong = sum(r != e for r, e in zip(results, expected, strict=True))
            problems.append(f"submitter {t}: {wrong} of {len(jobs)} async results wrong")

    run_threads(submit, SUBMITTERS, timeout=wait)
    oddjob.stop(pool, timeout=wait)  # drains every fire-and-forget job
    return ran, problems


def assert_each_ran_exactly_once(ran, total):
    counts = Counter(ran)
    missing = total - len(counts)
    duplicated = {i: c for i, c in counts.items() if c > 1}
    strays = [i for i in counts if not 0 <= i < total]
    assert not strays, f"unknown ids ran: {strays[:10]}"
    assert not duplicated, f"{len(duplicated)} jobs ran more than once: {list(duplicated)[:10]}"
    assert missing == 0, f"{missing} of {total} jobs never ran"


@pytest.mark.parametrize("pool_size", [2, 4])
def test_mixed_submitters_every_job_runs_exactly_once_with_right_results(make_pool, pool_size):
    pool = make_pool(pool_size)
    ran, problems = run_mixed_submitters(pool, JOBS_PER_SUBMITTER // 2)
    assert not problems
    assert_each_ran_exactly_once(ran, SUBMITTERS * (JOBS_PER_SUBMITTER // 2))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mixed_submitters_exactly_once_at_a_larger_scale(make_pool):
    pool = make_pool(3)
    ran, problems = run_mixed_submitters(pool, SLOW_JOBS_PER_SUBMITTER, SLOW_STRESS_WAIT)
    assert not problems
    assert_each_ran_exactly_once(ran, SUBMITTERS * SLOW_JOBS_PER_SUBMITTER)


def run_cancel_race(pool, n, spin=0, wait=STRESS_WAIT):
    """The main thread queues n async jobs while another thread cancels every other one
    as soon as it exists, racing the workers that dispatch them. Jobs spin a little so
    that a backlog forms and cancels both win and lose."""
    ran = []
    attempts = {}
    handoff: queue.SimpleQueue[tuple[int, oddjob.Job[int]] | None] = queue.SimpleQueue()

    def job(i):
        ran.append(i)
        sum(range(spin))
        return i

    def canceller():
        while True:
            item = handoff.get(timeout=wait)
            if item is None:
                return
            i, j = item
            if i % 2 == 0:
                attempts[i] = j.cancel()

    t = threading.Thread(target=canceller, name="test-canceller")
    t.start()
    jobs = []
    try:
        for i in range(n):
            j = oddjob.async_perform(pool, job, i)
            jobs.append(j)
            handoff.put((i, j))
    finally:
        handoff.put(None)
        join_all([t], timeout=wait)
    oddjob.stop(pool, timeout=wait)  # every job is now run or dropped
    counts = Counter(ran)
    assert max(counts.values(), default=1) == 1, "a job ran more than once"
    for i, j in enumerate(jobs):
        assert j.done()
        if attempts.get(i) is True:
            assert counts[i] == 0, f"job {i} ran although cancel() returned True"
            assert j.cancelled()
            with pytest.raises(CancelledError):
                oddjob.await_(j, timeout=0)
        else:
            assert counts[i] == 1, f"job {i} never ran although nobody cancelled it"
            assert not j.cancelled()
            assert oddjob.await_(j, timeout=0) == i
    return sum(1 for ok in attempts.values() if ok)


def test_cancel_racing_dispatch_either_cancels_or_lets_run_never_both(make_pool):
    pool = make_pool(2)
    run_cancel_race(pool, 40_000, spin=200)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cancel_racing_dispatch_at_a_larger_scale(make_pool):
    pool = make_pool(4)
    run_cancel_race(pool, 400_000, wait=SLOW_STRESS_WAIT)


def test_cancel_racing_a_one_worker_pool_is_consistent(make_pool):
    pool = make_pool(1)
    run_cancel_race(pool, 20_000)


def run_await_races(pool, rounds):
    """Awaiter threads create small batches and await them with tiny timeouts, racing
    the jobs' completion: each call returns every result or raises TimeoutError, and a
    timed-out batch is collected in full by the next call."""
    problems = []
    timeouts = []

    def awaiter(t):
        rng = random.Random(t)
        for r in range(rounds):
            k = rng.randint(1, 20)

            def tagged(x: int, r: int = r) -> tuple[int, int]:
                return (r, x)

            jobs = oddjob.async_perform_many(pool, range(k), tagged)
            expected = [(r, x) for x in range(k)]
            try:
                got = oddjob.await_many(jobs, timeout=rng.choice([0, 1e-5, 1e-4, 1e-3]))
            except TimeoutError:
                timeouts.append(1)
                got = oddjob.await_many(jobs, timeout=WAIT)
            if got != expected:
                problems.append(f"awaiter {t} round {r}: {got!r} != {expected!r}")
            one = rng.choice(jobs)
            try:
                value = oddjob.await_(one, timeout=0)
            except TimeoutError:
                problems.append("await_ timed out on a job await_many had collected")
            else:
                if value != (r, one.args[0]):
                    problems.append(f"await_ gave {value!r} for {one.args!r}")

    run_threads(awaiter, 4, timeout=STRESS_WAIT)
    return problems, len(timeouts)


def test_await_many_timeouts_racing_completion_lose_no_results(make_pool):
    pool = make_pool(3)
    problems, _ = run_await_races(pool, 500)
    assert not problems, problems[:5]


def test_await_timeouts_racing_completion_on_single_jobs(make_pool):
    pool = make_pool(2)
    problems = []

    def awaiter(t):
        rng = random.Random(t)
        for r in range(2000):
            job = oddjob.async_perform(pool, async_value, r)
            try:
                value = oddjob.await_(job, timeout=rng.choice([0, 1e-6, 1e-5, 1e-4]))
            except TimeoutError:
                value = oddjob.await_(job, timeout=WAIT)
            if value != async_value(r) or oddjob.await_(job, timeout=0) != value:
                problems.append((t, r, value))

    run_threads(awaiter, 4, timeout=STRESS_WAIT)
    assert not problems, problems[:5]


@pytest.mark.parametrize("call", ["perform_many", "async_perform_many"])
def test_a_batch_list_resized_by_other_threads_while_it_is_queued(make_pool, call):
    """The caller's list may change while it is being queued (without the GIL, at any
    moment): each batch queues some consistent length of it, every queued item is one
    the list held, and nothing overruns the ring (this crashed the compiled core on
    free-threaded CPython, which read the length twice)."""
    pool = make_pool(1)
    release = threading.Event()
    block_workers(pool, 1, release)  # running, not queued: nothing else runs until the end
    shared = list(range(64))
    stop = threading.Event()

    def resize() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                shared.extend(range(1000, 1064))
            else:
                del shared[32:]

    resizers = [threading.Thread(target=resize) for _ in range(2)]
    for t in resizers:
        t.start()
    seen: list[int] = []
    queued = 0
    try:
        for _ in range(2000):
            before = len(oddjob.whereis(pool).queue)  # type: ignore[union-attr]
            getattr(oddjob, call)(pool, shared, seen.append)
            added = len(oddjob.whereis(pool).queue) - before  # type: ignore[union-attr]
            assert 0 <= added <= 64 * 3, added
            queued += added
    finally:
        stop.set()
        join_all(resizers)
    release.set()
    last = oddjob.async_perform(pool, len, seen)  # FIFO: it runs after every batch item
    assert oddjob.await_(last, STRESS_WAIT) == queued
    assert set(seen) <= set(range(64)) | set(range(1000, 1064))
