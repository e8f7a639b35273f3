"""Queue.stats() of both cores: exact counters as jobs move through a pool, sampled
latency histograms, and core.Histogram's bounded error.

A fire-and-forget job is counted when its worker comes back for the next one, an async
job before its result is published. So counters are read once the pool is quiet: after
awaiting async jobs, after `quiesce` (every worker has come back for a job), or from a
stopped pool whose workers have exited (`stop_and_read`).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass
from types import ModuleType
from typing import Any, NamedTuple

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import oddjob
import support
from oddjob import _backend
from support import WAIT, Recorder, block_workers, in_thread_that_exits, join_all, run_threads


@dataclass(frozen=True)
class Latency:
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


class Stats(NamedTuple):
    queued: int
    running: int
    submitted: int
    started: int
    completed: int
    failed: int
    cancelled: int
    dropped: int
    expired: int
    retried: int
    rejected: int
    queue_wait: Latency
    run_time: Latency


def pool_of(name: str) -> oddjob.Pool:
    pool = oddjob.whereis(name)
    assert pool is not None, f"pool {name!r} is not running"
    return pool


def read(pool: str | oddjob.Pool) -> Stats:
    """The pool's Queue.stats(), named (works on a stopped Pool object too)."""
    found = pool_of(pool) if isinstance(pool, str) else pool
    raw = found._queue.stats()
    assert type(raw) is tuple and len(raw) == 13, raw
    return Stats._make([*raw[:11], Latency(*raw[11]), Latency(*raw[12])])


def quiesce(name: str, size: int) -> None:
    """Return once each of the pool's `size` workers has come back for a job after
    everything queued before this call (so each has counted the job it ran before,
    fire-and-forget jobs included): `size` async jobs that meet at a barrier occupy all
    the workers at once. They count as `size` more completed jobs."""
    barrier = threading.Barrier(size, timeout=WAIT)
    jobs = [oddjob.async_perform(name, barrier.wait) for _ in range(size)]
    oddjob.await_many(jobs, timeout=WAIT)


def stop_and_read(name: str) -> Stats:
    """Stop the pool, draining its queue and joining its workers; its final stats."""
    pool = pool_of(name)
    oddjob.stop(name, timeout=WAIT)
    return read(pool)


def settled_total(s: Stats) -> int:
    return s.queued + s.running + s.completed + s.failed + s.cancelled + s.dropped + s.expired


def assert_settled(s: Stats) -> None:
    assert (s.queued, s.running) == (0, 0), s
    assert s.submitted == settled_total(s), s
    assert s.started == s.completed + s.failed, s
    assert (s.expired, s.retried) == (0, 0), s


def noop(*args: Any) -> None:
    pass


# ----------------------------------------------------------------------------
# core.Histogram

# The last bucket holds every value from 2**47 + 15 * 2**43 up (values of 2**48 ns and
# more count in it); its midpoint is what a percentile that falls there reads.
TOP_LOW = 2**47 + 15 * 2**43
TOP_MIDPOINT = TOP_LOW + (2**43 - 1) / 2


def order_statistic(values: list[int], q: float) -> int:
    """The value of rank ceil(q * count) (1-based) among values, negatives as 0."""
    ordered = sorted(max(v, 0) for v in values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def summarize(core: ModuleType, values: list[int]) -> Latency:
    h = core.Histogram()
    for v in values:
        h.record(v)
    return Latency(*h.summary())


def assert_summary_of(summary: Latency, values: list[int]) -> None:
    """count, mean and max exact; p50/p90/p99 within 1/32 of the order statistic (the
    midpoint of its log-linear bucket); values of 2**48 ns and more read as the top
    bucket's midpoint (never above the maximum)."""
    clamped = [max(v, 0) for v in values]
    assert type(summary.count) is int
    assert summary.count == len(values)
    # Exact where the total fits a double's mantissa; within rounding beyond.
    exact_mean = sum(clamped) / len(clamped) / 1e9
    if sum(clamped) < 2**53:
        assert summary.mean == exact_mean
    else:
        assert summary.mean == pytest.approx(exact_mean, rel=1e-15)
    assert summary.max == max(clamped) / 1e9
    for q, got in ((0.50, summary.p50), (0.90, summary.p90), (0.99, summary.p99)):
        exact = order_statistic(values, q)
        got_ns = got * 1e9
        assert got_ns <= max(clamped) * (1 + 1e-12), (q, got, summary)
        if exact >= TOP_LOW:
            assert got_ns == pytest.approx(min(TOP_MIDPOINT, max(clamped)), rel=1e-12)
        else:
            assert abs(got_ns - exact) <= exact / 32 * (1 + 1e-9) + 1e-6, (q, exact, got)


def compiled_core() -> ModuleType:
    module = _backend.compiled()
    if module is None:
        pytest.skip("the compiled core is not built here")
    return module


def test_an_empty_histogram_reads_all_zeros(core):
    assert core.Histogram().summary() == (0, 0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([7] * 100, id="constant small"),
        pytest.param([20_000_000] * 33, id="constant 20ms"),
        pytest.param(list(range(1, 1001)), id="uniform 1..1000 ns"),
        pytest.param([random.Random(1).randrange(10**9) for _ in range(5000)], id="uniform 1s"),
        pytest.param(
            [int(random.Random(2).lognormvariate(11, 2.5)) for _ in range(5000)], id="lognormal"
        ),
        pytest.param([0, 0, 0, 5, 15, 16, 17, 31, 32, 33], id="around the linear range"),
        pytest.param([-5, -1, 0, 3, -(2**40)], id="negatives count as 0"),
        pytest.param([1] * 99 + [2**52], id="one huge outlier"),
        pytest.param([2**48 - 1, 2**48, 2**48 + 12345, 2**50, 2**60, 2**62], id="beyond 2**48"),
        pytest.param([2**47 + 1, 2**47 + 2**44, 2**48 - 2**40], id="top power of two"),
        pytest.param([42], id="a single value"),
    ],
)
def test_histogram_summaries_are_exact_or_within_the_bucket_error(core, values):
    assert_summary_of(summarize(core, values), values)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.one_of(
            st.integers(min_value=-100, max_value=2**30),
            st.integers(min_value=0, max_value=2**49),
            st.floats(min_value=0, max_value=40).map(lambda x: int(math.exp(x))),
        ),
        min_size=1,
        max_size=300,
    )
)
def test_histogram_summaries_of_arbitrary_values(core, values):
    assert_summary_of(summarize(core, values), values)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.one_of(
            st.integers(min_value=-(2**20), max_value=2**44),
            st.floats(min_value=0, max_value=30).map(lambda x: int(math.exp(x))),
        ),
        min_size=0,
        max_size=400,
    )
)
def test_both_cores_summarize_the_same_values_identically(core, values):
    from oddjob import _core_py

    assert summarize(compiled_core(), values) == summarize(_core_py, values)


# Both round the total to a double before dividing: beyond 2**53 ns (104 days) an exact
# integer division would differ in the last bit.
def test_both_cores_agree_on_the_mean_of_a_total_beyond_2_to_the_53(core):
    from oddjob import _core_py

    values = [13706978483665989, 17421202287345817, 29379568289828407]  # ~7 months in all
    compiled, twin = summarize(compiled_core(), values), summarize(_core_py, values)
    assert compiled.mean == twin.mean
    assert compiled == twin


def test_both_cores_agree_once_the_total_wraps_at_2_to_the_64(core):
    from oddjob import _core_py

    values = [2**62 + 12345] * 5  # 730 years in all: the 64-bit total wraps
    compiled, twin = summarize(compiled_core(), values), summarize(_core_py, values)
    assert compiled == twin
    assert (compiled.count, compiled.max) == (5, (2**62 + 12345) / 1e9)


# ----------------------------------------------------------------------------
# Counters


def test_a_fresh_pool_reads_all_zeros(core, make_pool):
    s = read(make_pool(2))
    nothing = Latency(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert s == Stats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, nothing, nothing)
    assert all(type(x) is int for x in s[:11])
    for latency in (s.queue_wait, s.run_time):
        assert type(latency.count) is int
        assert all(type(x) is float for x in astuple(latency)[1:])


def sometimes_raises(i: int) -> int:
    if i % 10 == 3:
        raise ValueError(f"job {i} fails")
    return i * 2


SUBMISSIONS = ["perform", "perform_many", "async_perform", "async_perform_many", "batches"]


def submit_100(name: str, how: str, ran: Recorder) -> list[oddjob.Job[int]]:
    """Ids 0..99, 10 of which raise, submitted `how`; the async jobs' Jobs."""

    def job(i: int) -> int:
        ran(i)
        return sometimes_raises(i)

    jobs: list[oddjob.Job[int]] = []
    if how == "perform":
        for i in range(100):
            oddjob.perform(name, job, i)
    elif how == "perform_many":
        oddjob.perform_many(name, range(100), job)
    elif how == "async_perform":
        jobs = [oddjob.async_perform(name, job, i) for i in range(100)]
    elif how == "async_perform_many":
        jobs = oddjob.async_perform_many(name, range(100), job)
    else:  # batches of 7, fire-and-forget and async in turn
        for start in range(0, 100, 7):
            chunk = range(start, min(start + 7, 100))
            if start % 2:
                jobs += oddjob.async_perform_many(name, chunk, job)
            else:
                oddjob.perform_many(name, chunk, job)
    return jobs


def settle_async(jobs: list[oddjob.Job[int]]) -> None:
    """Wait for each job and check its outcome (which marks a failure retrieved)."""
    for job in jobs:
        i = job.args[0]
        if i % 10 == 3:
            assert isinstance(job.exception(timeout=WAIT), ValueError)
        else:
            assert job.result(timeout=WAIT) == i * 2


@pytest.mark.parametrize("how", SUBMISSIONS)
def test_counters_of_100_jobs_of_which_10_raise(core, make_pool, how):
    name = make_pool(2)
    ran = Recorder()
    jobs = submit_100(name, how, ran)
    settle_async(jobs)
    s = stop_and_read(name)
    assert sorted(ran.items) == list(range(100))
    assert (s.submitted, s.started, s.completed, s.failed) == (100, 100, 90, 10)
    assert (s.cancelled, s.dropped, s.rejected) == (0, 0, 0)
    assert_settled(s)
    assert 0 < s.run_time.count <= 100
    assert 0 < s.queue_wait.count <= 100


@pytest.mark.parametrize("how", SUBMISSIONS)
def test_counters_of_a_live_pool_once_it_is_quiet(core, make_pool, how):
    name = make_pool(2)
    ran = Recorder()
    settle_async(submit_100(name, how, ran))
    ran.wait_for_count(100)
    quiesce(name, 2)  # two more completed jobs
    s = read(name)
    assert (s.submitted, s.started, s.completed, s.failed) == (102, 102, 92, 10)
    assert_settled(s)


def test_queued_and_running_while_the_workers_are_held(core, make_pool):
    name = make_pool(2)
    release = support.gate()
    blockers = block_workers(name, 2, release)
    s = read(name)
    assert (s.queued, s.running, s.submitted, s.started, s.completed) == (0, 2, 2, 2, 0)

    oddjob.perform(name, noop)
    oddjob.perform_many(name, [1, 2], noop)
    later = [oddjob.async_perform(name, noop), *oddjob.async_perform_many(name, [1, 2], noop)]
    s = read(name)
    assert (s.queued, s.running, s.submitted, s.started, s.completed) == (6, 2, 8, 2, 0)
    assert s.submitted == settled_total(s)  # the invariant holds at any quiet moment

    release.set()
    oddjob.await_many(blockers + later, timeout=WAIT)
    quiesce(name, 2)
    s = read(name)
    assert (s.submitted, s.started, s.completed) == (10, 10, 10)
    assert_settled(s)


def test_cancel_of_a_queued_job_is_counted_at_once_and_leaves_queued(core, make_pool):
    name = make_pool(1)
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    a, b, c = (oddjob.async_perform(name, noop, tag) for tag in "abc")
    assert b.cancel()
    s = read(name)
    # Still in the queue until the worker skips it (len counts it), but not "queued".
    assert len(pool_of(name).queue) == 3
    assert (s.queued, s.running, s.cancelled, s.submitted) == (2, 1, 1, 4)
    assert s.submitted == settled_total(s)

    assert b.cancel()  # cancelled already: not counted twice
    assert not blocker.cancel()  # running: not cancelled
    assert read(name).cancelled == 1

    release.set()
    oddjob.await_many([blocker, a, c], timeout=WAIT)  # FIFO: b was skipped before c ran
    s = read(name)
    assert (s.submitted, s.started, s.completed, s.cancelled) == (4, 3, 3, 1)
    assert_settled(s)


def test_cancelled_jobs_skipped_after_many_cancels_leave_queued_at_zero(core, make_pool):
    name = make_pool(1)
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    jobs = oddjob.async_perform_many(name, range(20), noop)
    for job in jobs[::2]:
        assert job.cancel()
    assert (read(name).queued, read(name).cancelled) == (10, 10)
    release.set()
    oddjob.await_many([blocker, *jobs[1::2]], timeout=WAIT)
    s = read(name)
    assert (s.started, s.completed, s.cancelled) == (11, 11, 10)
    assert_settled(s)


def test_stop_cancel_pending_counts_fire_and_forget_and_async_jobs(core, make_pool):
    name = make_pool(2)
    pool = pool_of(name)
    release = support.gate()
    blockers = block_workers(name, 2, release)
    ran = Recorder()
    oddjob.perform(name, ran, "perform 0")
    oddjob.perform(name, ran, "perform 1")
    oddjob.perform_many(name, ["many 0", "many 1", "many 2"], ran)
    jobs = [oddjob.async_perform(name, ran, "async 0"), oddjob.async_perform(name, ran, "async 1")]
    jobs += oddjob.async_perform_many(name, ["async many 0", "async many 1", "async many 2"], ran)
    early = oddjob.async_perform(name, ran, "cancelled before the stop")
    assert early.cancel()
    assert read(pool).queued == 10

    pool.stop(wait=False, cancel_pending=True)
    s = read(pool)
    assert s.cancelled == 1 + 5 + 5  # the early one is not counted twice
    assert (s.queued, s.running, s.submitted) == (0, 2, 13)
    assert all(job.cancelled() for job in jobs)

    release.set()
    pool.join(time.monotonic() + WAIT)
    assert [oddjob.await_(b, timeout=WAIT) for b in blockers] == ["blocker 0", "blocker 1"]
    s = read(pool)
    assert ran.items == []
    assert (s.submitted, s.started, s.completed, s.cancelled) == (13, 2, 2, 11)
    assert_settled(s)


@pytest.fixture
def full_pool(make_pool) -> Callable[..., str]:
    """A pool of 1 whose worker is held and whose queue (max_queue) is full."""

    def make(max_queue: int = 2, **options: Any) -> str:
        name: str = make_pool(1, max_queue=max_queue, **options)
        block_workers(name, 1, support.gate())
        for _ in range(max_queue):
            oddjob.perform(name, noop)
        return name

    return make


def test_rejected_counts_every_job_of_each_refused_submit(core, make_pool):
    name = make_pool(1, max_queue=2, on_full="raise")
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    with pytest.raises(oddjob.QueueFullError):  # larger than max_queue: it never fits
        oddjob.perform_many(name, range(3), noop)
    with pytest.raises(oddjob.QueueFullError):
        oddjob.async_perform_many(name, range(5), noop)
    s = read(name)
    assert (s.rejected, s.queued, s.submitted) == (8, 0, 1)

    queued = Recorder()
    oddjob.perform(name, queued, 1)
    oddjob.perform(name, queued, 2)  # full now
    refusals: list[tuple[Callable[[], object], int]] = [
        (lambda: oddjob.perform(name, noop), 1),
        (lambda: oddjob.async_perform(name, noop), 1),
        (lambda: oddjob.perform_many(name, [1, 2], noop), 2),
        (lambda: oddjob.async_perform_many(name, [1, 2], noop), 2),
        (lambda: oddjob.perform_many(name, [1, 2, 3], noop), 3),
    ]
    rejected = 8
    for submit, n in refusals:
        with pytest.raises(oddjob.QueueFullError):
            submit()
        rejected += n
        s = read(name)
        assert (s.rejected, s.queued, s.submitted) == (rejected, 2, 3)

    release.set()
    oddjob.await_(blocker, timeout=WAIT)
    assert queued.wait_for_count(2) == [1, 2]  # taken out of the queue: room for quiesce
    quiesce(name, 1)
    s = read(name)
    assert (s.rejected, s.submitted, s.completed) == (rejected, 4, 4)
    assert_settled(s)


def test_rejected_counts_submits_that_waited_out_block_timeout(core, full_pool):
    name = full_pool(max_queue=1, on_full="block", block_timeout=0.05)
    submits: list[Callable[[], object]] = [
        lambda: oddjob.perform(name, noop),
        lambda: oddjob.async_perform(name, noop),
        lambda: oddjob.perform_many(name, [1], noop),
        lambda: oddjob.async_perform_many(name, [1], noop),
    ]
    for n, submit in enumerate(submits, 1):
        with pytest.raises(oddjob.QueueFullError, match="block_timeout"):
            submit()
        s = read(name)
        assert (s.rejected, s.queued, s.submitted) == (n, 1, 2)


def test_rejected_counts_a_worker_refused_a_wait_on_its_own_full_queue(core, make_pool):
    name = make_pool(1, max_queue=1, on_full="block")
    go = support.gate()
    started = threading.Event()

    def submits_to_its_own_pool() -> str:
        started.set()
        go.wait(WAIT)
        try:
            oddjob.perform(name, noop)
        except oddjob.QueueFullError:
            return "refused"
        return "queued"

    job = oddjob.async_perform(name, submits_to_its_own_pool)
    assert started.wait(WAIT)
    oddjob.perform(name, noop)  # the queue is full now
    go.set()
    assert oddjob.await_(job, timeout=WAIT) == "refused"
    quiesce(name, 1)
    s = read(name)
    assert (s.rejected, s.submitted, s.completed) == (1, 3, 3)
    assert_settled(s)


def test_dropped_counts_queued_async_jobs_of_an_owner_thread_that_died(core, make_pool):
    name = make_pool(1)
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    ran = Recorder()

    def create() -> list[oddjob.Job[None]]:
        jobs = [oddjob.async_perform(name, ran, ("single", i)) for i in range(3)]
        return jobs + oddjob.async_perform_many(name, [("batch", 0), ("batch", 1)], ran)

    orphans = in_thread_that_exits(create)
    mine = oddjob.async_perform(name, ran, "live owner")
    s = read(name)
    # Counted as the worker reaches them, not when their thread died.
    assert (s.queued, s.dropped, s.submitted) == (6, 0, 7)
    release.set()
    oddjob.await_many([blocker, mine], timeout=WAIT)  # FIFO: the orphans came first
    assert ran.items == ["live owner"]
    assert all(job.cancelled() for job in orphans)
    s = read(name)
    assert (s.dropped, s.cancelled, s.started, s.completed) == (5, 0, 2, 2)
    assert_settled(s)


def test_a_timer_push_is_submitted_even_into_a_full_queue_and_never_rejected(core, make_pool):
    name = make_pool(1, max_queue=1, on_full="raise")
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    oddjob.perform(name, noop)  # full now
    ran = Recorder()
    oddjob.perform_after(0, name, ran, "timer")
    queue = pool_of(name).queue
    deadline = time.monotonic() + WAIT
    while len(queue) < 2:  # the scheduler thread pushed the timer's job past the bound
        assert time.monotonic() < deadline, "the timer's job was not queued"
        time.sleep(0.001)
    s = read(name)
    assert (s.queued, s.submitted, s.rejected) == (2, 3, 0)
    release.set()
    assert ran.wait_for_count(1) == ["timer"]
    oddjob.await_(blocker, timeout=WAIT)
    quiesce(name, 1)
    s = read(name)
    assert (s.submitted, s.completed, s.rejected) == (4, 4, 0)
    assert_settled(s)


# ----------------------------------------------------------------------------
# Latencies


@pytest.fixture
def handlers(core: ModuleType) -> Iterator[Callable[..., None]]:
    """install(table) installs core telemetry handlers; the empty table before (no
    handler: jobs are sampled) and after the test."""
    errors: list[tuple[object, str, BaseException]] = []

    def install(table: dict[str, Any]) -> None:
        core.set_handlers(table, lambda *report: errors.append(report))

    core.set_handlers({}, lambda *a: None)
    try:
        yield install
    finally:
        core.set_handlers({}, lambda *a: None)
    assert not errors, errors


def sleep_20ms(i: int) -> int:
    time.sleep(0.02)
    return i


@pytest.mark.parametrize("how", ["async_perform", "perform_many", "async_perform_many"])
def test_every_slow_job_is_timed(core, make_pool, how):
    name = make_pool(1)
    n = 8
    # The first job holds the worker until all are queued: they are all pushed before
    # any run time is known.
    release = support.gate()
    started = threading.Event()

    def first() -> None:
        started.set()
        release.wait(WAIT)
        time.sleep(0.02)

    jobs: list[oddjob.Job[Any]] = [oddjob.async_perform(name, first)]
    assert started.wait(WAIT)
    if how == "async_perform":
        jobs += [oddjob.async_perform(name, sleep_20ms, i) for i in range(1, n)]
    elif how == "perform_many":
        oddjob.perform_many(name, range(1, n), sleep_20ms)
    else:
        jobs += oddjob.async_perform_many(name, range(1, n), sleep_20ms)
    release.set()
    oddjob.await_many(jobs, timeout=WAIT)
    s = stop_and_read(name)
    assert s.completed == n
    run, wait = s.run_time, s.queue_wait
    assert run.count == n
    assert 0.019 <= run.p50 <= 0.1
    assert 0.019 <= run.mean <= 0.1
    assert run.p50 <= run.p90 <= run.p99 <= run.max * (1 + 1e-9)
    assert wait.count == n
    # One worker: the k-th job waited for the k - 1 before it (some 20 ms each).
    assert wait.p99 > wait.p50 > 0
    assert wait.max >= 0.019 * (n - 1)


# Each job on an empty queue, the first ones on a fresh pool: a run-time estimate that
# started from 0 rather than from the first sample had every other one of them untimed.
def test_slow_jobs_submitted_one_at_a_time_are_all_timed(core, make_pool, handlers):
    name = make_pool(1)
    for i in range(6):
        assert oddjob.await_(oddjob.async_perform(name, sleep_20ms, i), timeout=WAIT) == i
    s = read(name)
    assert s.completed == 6
    assert s.run_time.count == 6


def test_no_op_jobs_are_sampled(core, make_pool, handlers):
    name = make_pool(2)
    for i in range(2000):
        oddjob.perform(name, noop, i)
    oddjob.perform_many(name, range(500), noop)
    oddjob.await_many(oddjob.async_perform_many(name, range(500), noop), timeout=WAIT)
    s = stop_and_read(name)
    assert s.completed == s.submitted == 3000
    assert 0 < s.run_time.count <= s.submitted
    assert 0 < s.queue_wait.count <= s.submitted
    assert s.run_time.max < WAIT


@pytest.mark.parametrize("event", ["job.start", "job.stop", "job.exception"])
def test_every_job_is_timed_while_a_job_event_handler_is_attached(core, make_pool, handlers, event):
    handlers({event: (("test", noop),)})
    name = make_pool(2)
    for i in range(200):
        oddjob.perform(name, noop, i)
    oddjob.perform_many(name, range(100), noop)
    jobs = [oddjob.async_perform(name, noop, i) for i in range(100)]
    jobs += oddjob.async_perform_many(name, range(100), noop)
    oddjob.await_many(jobs, timeout=WAIT)
    s = stop_and_read(name)
    assert s.completed == 500
    assert s.run_time.count == 500
    assert s.queue_wait.count == 500


# ----------------------------------------------------------------------------
# Stress: many submitters, exactly-once accounting, counters that agree with it

SUBMITTERS = 8


class Ledger:
    """What the submitters and the jobs saw, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: Counter[tuple[int, int]] = Counter()
        self.submitted: set[tuple[int, int]] = set()
        self.cancelled: set[tuple[int, int]] = set()
        self.rejected: set[tuple[int, int]] = set()
        self.problems: list[str] = []
        self.done = threading.Event()

    def run(self, key: tuple[int, int]) -> tuple[int, int]:
        with self.lock:
            self.ran[key] += 1
        if fails(key):
            raise ValueError(key)
        return key


def fails(key: tuple[int, int]) -> bool:
    return key[1] % 23 == 7


def run_stress(name: str, per_submitter: int, seed: int) -> Ledger:
    ledger = Ledger()
    start = threading.Barrier(SUBMITTERS, timeout=WAIT)

    def submit(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        jobs: list[oddjob.Job[tuple[int, int]]] = []
        k = 0
        start.wait()
        while k < per_submitter:
            kind = rng.randrange(4)
            n = min(rng.randint(1, 8) if kind in (1, 3) else 1, per_submitter - k)
            keys = [(t, k + i) for i in range(n)]
            k += n
            try:
                if kind == 0:
                    oddjob.perform(name, ledger.run, keys[0])
                elif kind == 1:
                    oddjob.perform_many(name, keys, ledger.run)
                elif kind == 2:
                    fresh = [oddjob.async_perform(name, ledger.run, keys[0])]
                else:
                    fresh = oddjob.async_perform_many(name, keys, ledger.run)
            except oddjob.QueueFullError:
                with ledger.lock:
                    ledger.rejected.update(keys)
                time.sleep(0.0005)  # let the workers catch up: not every submit refused
                continue
            with ledger.lock:
                ledger.submitted.update(keys)
            if kind < 2:
                continue
            jobs += fresh
            # Cancel some, of this push or of an earlier one: queued, running or done.
            while rng.random() < 0.3:
                victim = rng.choice(jobs[-16:])
                if victim.cancel():
                    with ledger.lock:
                        ledger.cancelled.add(victim.args[0])
        # This thread owns its async jobs: it stays alive until they are settled.
        for job in jobs:
            key = job.args[0]
            if job.cancelled():
                continue
            if fails(key):
                if not isinstance(job.exception(timeout=WAIT), ValueError):
                    ledger.problems.append(f"{key}: no ValueError")
            elif job.result(timeout=WAIT) != key:
                ledger.problems.append(f"{key}: wrong result")

    sampler = threading.Thread(target=sample, args=(name, ledger), name="test-sampler")
    sampler.start()
    try:
        run_threads(submit, SUBMITTERS, timeout=60.0)
    finally:
        ledger.done.set()
        join_all([sampler])
    return ledger


MONOTONIC = ("submitted", "started", "completed", "failed", "cancelled", "rejected")


def sample(name: str, ledger: Ledger) -> None:
    """While the submitters run, read stats() again and again: each reading is one
    consistent snapshot (the invariant holds at every instant, not only once settled),
    within the bound, and no counter ever goes back."""
    pool = pool_of(name)
    bound = pool.options.max_queue
    last = read(pool)
    readings = 0
    while not ledger.done.is_set() or readings < 10:
        s = read(pool)
        readings += 1
        problems = []
        if s.submitted != settled_total(s):
            problems.append("submitted != queued + running + completed + ...")
        if min(s[:11]) < 0 or (bound is not None and s.queued > bound):
            problems.append("a count out of range")
        problems += [
            f"{field} went back" for field in MONOTONIC if getattr(s, field) < getattr(last, field)
        ]
        if problems:
            ledger.problems.append(f"{problems}: {s}")
            return
        last = s
        time.sleep(0.0005)


def check_ledger(ledger: Ledger, s: Stats, per_submitter: int) -> None:
    assert not ledger.problems, ledger.problems[:10]
    everything = {(t, k) for t in range(SUBMITTERS) for k in range(per_submitter)}
    assert ledger.submitted | ledger.rejected == everything
    assert not ledger.submitted & ledger.rejected
    assert ledger.cancelled <= ledger.submitted
    twice = {key: n for key, n in ledger.ran.items() if n > 1}
    assert not twice, f"{len(twice)} jobs ran more than once: {list(twice)[:10]}"
    ran = set(ledger.ran)
    assert ran == ledger.submitted - ledger.cancelled, (
        f"never ran: {sorted(ledger.submitted - ledger.cancelled - ran)[:10]}; "
        f"ran though cancelled or refused: {sorted(ran - ledger.submitted)[:10]}"
        f"{sorted(ran & ledger.cancelled)[:10]}"
    )
    failed = sum(1 for key in ran if fails(key))
    assert s.submitted == len(ledger.submitted)
    assert s.rejected == len(ledger.rejected)
    assert s.cancelled == len(ledger.cancelled)
    assert (s.completed, s.failed) == (len(ran) - failed, failed)
    assert s.dropped == 0
    assert_settled(s)
    assert 0 < s.run_time.count <= s.started


STRESS_OPTIONS = [
    pytest.param({}, id="unbounded"),
    pytest.param({"max_queue": 16}, id="max_queue block"),
    pytest.param({"max_queue": 16, "on_full": "raise"}, id="max_queue raise"),
]


@pytest.mark.parametrize("options", STRESS_OPTIONS)
def test_stress_every_job_runs_once_or_is_cancelled_and_stats_agree(core, make_pool, options):
    name = make_pool(4, **options)
    per_submitter = 1000
    ledger = run_stress(name, per_submitter, seed=1)
    check_ledger(ledger, stop_and_read(name), per_submitter)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("options", STRESS_OPTIONS)
def test_stress_at_a_larger_scale(core, make_pool, options):
    for seed in range(5):
        name = make_pool(4, **options)
        per_submitter = 5000
        ledger = run_stress(name, per_submitter, seed)
        check_ledger(ledger, stop_and_read(name), per_submitter)
