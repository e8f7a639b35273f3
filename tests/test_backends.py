"""The contract's calls, each over every worker backend (threads, processes and, where
Ray is installed, Ray on the session's local cluster) and both cores: the same test, the
same expectations, whatever a worker is.

Jobs are process_jobs' module-level functions; what a fire-and-forget job did is seen in
files it leaves under tmp_path (a worker process shares no memory with the test).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import oddjob
import process_jobs as jobs
import support
from oddjob import aio

WAIT = 30.0
BACKENDS = ["threads"]
if "forkserver" in multiprocessing.get_all_start_methods():
    BACKENDS.append("processes")
if support.RAY:
    BACKENDS.append("ray")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return str(request.param)


@pytest.fixture
def pool_of(backend: str) -> Iterator[Callable[..., oddjob.Pool]]:
    """pool_of(size, **options): a started pool of this backend, under a fresh name."""
    made: list[oddjob.Pool] = []

    def make(size: int = 1, **options: Any) -> oddjob.Pool:
        if backend == "processes":
            options.setdefault("start_method", "forkserver")
        pool = oddjob.Pool(support.new_name(backend), backend=backend, pool_size=size, **options)
        made.append(pool)
        return pool.start()

    yield make
    if backend == "ray":  # the slots outlive the pool on the cluster: remove them
        support.remove_ray_pools(made)


def ran(path: Path, name: str) -> list[Path]:
    return sorted(path.glob(f"{name}.*"))


def runs_in_order(path: Path) -> list[str]:
    """The names of the jobs that touched files under path, in the order they ran."""
    found = [(int(p.name.rsplit(".", 1)[1]), p.name.split(".", 1)[0]) for p in path.iterdir()]
    return [name for _, name in sorted(found)]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    """A directory the jobs leave their traces in."""
    yield tmp_path


def test_perform_runs_a_fire_and_forget_job(pool_of: Any, spool: Path) -> None:
    pool = pool_of(2)
    assert pool.perform(jobs.touch, str(spool), "ff") is None
    support.until(lambda: len(ran(spool, "ff")) == 1, "the job ran", timeout=WAIT)


def test_async_perform_returns_the_result_and_await_waits_for_it(pool_of: Any) -> None:
    pool = pool_of(2)
    job = pool.async_perform(jobs.add, 2, b=40)
    assert oddjob.await_(job, WAIT) == 42
    assert job.done() and not job.cancelled() and job.attempts == 1


def test_module_level_calls_take_the_pool_s_name(pool_of: Any) -> None:
    pool = pool_of(1)
    assert oddjob.await_(oddjob.async_perform(pool.name, jobs.square, 7), WAIT) == 49
    batch = oddjob.async_perform_many(pool.name, [1, 2, 3], jobs.square)
    assert oddjob.await_many(batch, WAIT) == [1, 4, 9]


def test_perform_many_runs_each_item(pool_of: Any, spool: Path) -> None:
    pool = pool_of(2)
    pool.perform_many([str(spool)] * 5, jobs.touch_item)
    support.until(lambda: len(ran(spool, "item")) == 5, "the batch ran", timeout=WAIT)


def test_a_pool_of_one_runs_jobs_in_fifo_order(pool_of: Any, spool: Path) -> None:
    pool = pool_of(1)
    names = [f"j{i:02d}" for i in range(20)]
    for name in names:
        pool.perform(jobs.touch, str(spool), name)
    support.until(lambda: len(list(spool.iterdir())) == 20, "every job ran", timeout=WAIT)
    assert runs_in_order(spool) == names


def test_a_failing_job_fails_its_caller_and_the_worker_runs_the_next(pool_of: Any) -> None:
    pool = pool_of(1)
    with pytest.raises(ValueError, match="nope"):
        oddjob.await_(pool.async_perform(jobs.fail, "nope"), WAIT)
    assert oddjob.await_(pool.async_perform(jobs.add, 1, 1), WAIT) == 2
    assert pool.supervisor.crashes == 0


def test_await_many_and_as_completed(pool_of: Any) -> None:
    pool = pool_of(2)
    batch = pool.async_perform_many(range(20), jobs.square)
    assert oddjob.await_many(batch, WAIT) == [x * x for x in range(20)]
    slow, fast = pool.async_perform(jobs.sleep, 0.4), pool.async_perform(jobs.sleep, 0.0)
    assert list(oddjob.as_completed([slow, fast], WAIT)) == [fast, slow]


def test_wait_first_exception(pool_of: Any) -> None:
    pool = pool_of(2)
    failing = pool.async_perform(jobs.fail, "first")
    slow = pool.async_perform(jobs.sleep, 1.0)
    done, pending = oddjob.wait([failing, slow], WAIT, return_when=oddjob.FIRST_EXCEPTION)
    assert failing in done
    assert slow.result(WAIT) == 1.0
    del pending


def test_cancel_a_queued_job_and_it_never_runs(pool_of: Any, spool: Path) -> None:
    pool = pool_of(1)
    blocker = pool.async_perform(jobs.sleep, 0.5)
    support.until(lambda: pool.stats().running == 1, "the blocker running")
    queued = pool.async_perform(jobs.touch, str(spool), "cancelled")
    assert queued.cancel() and queued.cancelled()
    after = pool.async_perform(jobs.touch, str(spool), "after")
    assert blocker.result(WAIT) == 0.5 and after.result(WAIT) is None
    assert ran(spool, "cancelled") == []


def test_timers_and_cancel_timer(pool_of: Any, spool: Path) -> None:
    pool = pool_of(1)
    ref = pool.perform_after(30, jobs.touch, str(spool), "never")
    pool.perform_after(0.05, jobs.touch, str(spool), "soon")
    assert oddjob.cancel_timer(ref) is not False
    support.until(lambda: len(ran(spool, "soon")) == 1, "the timer's job ran", timeout=WAIT)
    assert ran(spool, "never") == []


def test_stop_drains_the_queue(pool_of: Any, spool: Path) -> None:
    pool = pool_of(2)
    for i in range(10):
        pool.perform(jobs.record_then_sleep, str(spool), f"d{i}", 0.01)
    pool.stop(timeout=WAIT)
    assert len(list(spool.iterdir())) == 10
    with pytest.raises(oddjob.PoolNotFoundError):
        pool.perform(jobs.noop)


def test_stop_with_cancel_pending_cancels_what_is_queued(pool_of: Any) -> None:
    pool = pool_of(1)
    running = pool.async_perform(jobs.sleep, 0.3)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    queued = pool.async_perform_many(range(5), jobs.square)
    pool.stop(timeout=WAIT, cancel_pending=True)
    assert running.result(0) == 0.3
    assert all(job.cancelled() for job in queued)


def test_stats_count_every_outcome(pool_of: Any) -> None:
    pool = pool_of(2)
    oddjob.await_many(pool.async_perform_many(range(6), jobs.square), WAIT)
    with pytest.raises(ValueError):
        pool.async_perform(jobs.fail, "x").result(WAIT)
    stats = support.settled(pool, lambda s: s.completed + s.failed == 7)
    assert (stats.submitted, stats.completed, stats.failed, stats.queued) == (7, 6, 1, 0)
    assert stats.run_time.count >= 1  # sampled: short jobs are not all timed


def test_telemetry_sees_each_job(pool_of: Any, record_events: Any) -> None:
    pool = pool_of(1)
    events = record_events(pool.name, ["job.start", "job.stop"])
    oddjob.await_many(pool.async_perform_many(range(3), jobs.square), WAIT)
    assert len(events.wait_for("job.stop", 3)) == 3
    assert len(events.named("job.start")) == 3


def test_a_bounded_queue_raises_when_full(pool_of: Any) -> None:
    pool = pool_of(1, max_queue=1, on_full="raise")
    running = pool.async_perform(jobs.sleep, 0.4)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    queued = pool.async_perform(jobs.noop)
    with pytest.raises(oddjob.QueueFullError):
        pool.async_perform(jobs.noop)
    assert running.result(WAIT) == 0.4 and queued.result(WAIT) is None


def test_a_bounded_queue_blocks_until_there_is_room(pool_of: Any) -> None:
    pool = pool_of(1, max_queue=1, block_timeout=WAIT)
    pool.async_perform(jobs.sleep, 0.3)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    pool.async_perform(jobs.noop)
    started = time.monotonic()
    last = pool.async_perform(jobs.add, 1, 2)  # waits for the running job to end
    assert time.monotonic() - started >= 0.1
    assert last.result(WAIT) == 3


def test_rate_limit_spaces_the_starts(pool_of: Any) -> None:
    pool = pool_of(2, rate_limit=(2, 0.5))
    started = time.monotonic()
    oddjob.await_many(pool.async_perform_many(range(6), jobs.square), WAIT)
    assert time.monotonic() - started >= 1.0 - support.GRANT_SLACK  # 6 starts, 2 per 0.5 s


def test_retry_runs_a_failing_job_again(pool_of: Any, spool: Path) -> None:
    pool = pool_of(1, retry=oddjob.Retry(attempts=3, on=(ValueError,), backoff=0.01))
    job = pool.async_perform(jobs.fails_twice, str(spool / "count"))
    assert job.result(WAIT) == 3 and job.attempts == 3


def test_max_queue_time_expires_a_stale_job(pool_of: Any) -> None:
    # Long enough for a worker process to start: the first job must not expire.
    pool = pool_of(1, max_queue_time=1.0)
    running = pool.async_perform(jobs.sleep, 1.6)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    stale = pool.async_perform(jobs.noop)
    with pytest.raises(oddjob.JobExpiredError):
        stale.result(WAIT)
    assert running.result(WAIT) == 1.6


def test_the_initializer_runs_in_each_worker(pool_of: Any, backend: str) -> None:
    if backend == "ray":  # a Ray task has no worker of its own: refused when made
        with pytest.raises(oddjob.ConfigError, match="initializer is not supported"):
            pool_of(2, initializer=jobs.init_resource, initargs=("ready",))
        with pytest.raises(oddjob.ConfigError, match="finalizer is not supported"):
            pool_of(2, finalizer=jobs.noop)
        return
    pool = pool_of(2, initializer=jobs.init_resource, initargs=("ready",))
    seen = oddjob.await_many([pool.async_perform(jobs.read_resource) for _ in range(4)], WAIT)
    assert {value for value, _, _ in seen} == {"ready"}
    assert all(init == job for _, init, job in seen)


def test_current_worker_names_the_pool(pool_of: Any, backend: str) -> None:
    pool = pool_of(1)
    info = pool.async_perform(jobs.worker_info).result(WAIT)
    if backend == "ray":  # the job runs in a Ray worker process, not in one of the pool's
        assert info is None
        return
    assert info is not None and info[0] == pool.name and info[2] == 0 and info[3] == 1


def test_introspection(pool_of: Any) -> None:
    pool = pool_of(2)
    state = oddjob.pool(pool.name)
    assert state.pool == pool.name and len(state.workers) == 2
    assert len(oddjob.workers(pool.name)) == 2
    assert oddjob.supervisor(pool.name) is pool.supervisor


def test_aio_run_and_await_many(pool_of: Any) -> None:
    pool = pool_of(2)

    async def main() -> tuple[int, list[int]]:
        one = await aio.run(pool, jobs.add, 20, b=22)
        many = await aio.await_many(pool.async_perform_many(range(4), jobs.square), WAIT)
        return one, many

    assert asyncio.run(main()) == (42, [0, 1, 4, 9])


def test_the_default_backend_is_threads_and_the_job_runs_here() -> None:
    with oddjob.Pool(support.new_name("default"), pool_size=1) as pool:
        assert pool.options.backend == "threads"
        assert pool.async_perform(os.getpid).result(WAIT) == os.getpid()


def test_no_job_is_lost_or_run_twice_under_many_submitting_threads(
    pool_of: Any, backend: str
) -> None:
    import threading

    pool = pool_of(2)
    per_thread, threads = {"processes": (100, 8), "ray": (20, 8)}.get(backend, (1000, 8))
    results: dict[int, list[int]] = {}

    def submit(t: int) -> None:
        # An async job is linked to its submitting thread: it waits for its own jobs.
        items = range(t * per_thread, (t + 1) * per_thread)
        batch = pool.async_perform_many(items, jobs.square)
        singles = [pool.async_perform(jobs.square, x) for x in items]
        results[t] = oddjob.await_many(batch, WAIT) + oddjob.await_many(singles, WAIT)

    workers = [threading.Thread(target=submit, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT)
        assert not w.is_alive()
    for t in range(threads):
        expected = [x * x for x in range(t * per_thread, (t + 1) * per_thread)]
        assert results[t] == expected + expected
    total = 2 * threads * per_thread
    stats = support.settled(pool, lambda s: s.completed == total)
    assert (stats.submitted, stats.completed, stats.failed, stats.queued) == (total, total, 0, 0)
