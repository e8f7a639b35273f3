"""oddjob's job calls over the harness's workloads, beside ThreadPoolExecutor (pytest-benchmark;
not part of the tests).

    python -m pytest bench                          # both cores, grouped by workload and mode
    python -m pytest bench --benchmark-autosave     # keep a run; --benchmark-compare later

Each round of a throughput benchmark gets a fresh pool whose workers all run before the
clock starts; "done" is the pool's draining stop for fire-and-forget modes and the last
result for the others, as in ``python -m oddjob bench``, which measures the same workloads
beside more peers in one table.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import oddjob
from oddjob._bench import Workload
from oddjob._bench_peers import Job, exhaust

# Collections would pause runs at moments that depend on the heap, not on the pool.
pytestmark = pytest.mark.benchmark(disable_gc=True)

MODES = ["perform", "perform_many", "async_many"]
# Timed rounds per throughput benchmark, after one warm-up round: enough for a median,
# and the whole suite stays well under a minute.
ROUNDS = 5
# Round trips thrown away before timing, to warm the wake-up paths of the workers.
ROUND_TRIP_WARMUP = 20


# -- oddjob -----------------------------------------------------------------------------------


def oddjob_perform(name: str, job: Job, n: int) -> None:
    perform = oddjob.perform
    for i in range(n):
        perform(name, job, i)
    oddjob.stop(name)  # drains the queue: every job has run


def oddjob_perform_many(name: str, job: Job, n: int) -> None:
    oddjob.perform_many(name, range(n), job)
    oddjob.stop(name)


def oddjob_async_many(name: str, job: Job, n: int) -> None:
    oddjob.await_many(oddjob.async_perform_many(name, range(n), job), timeout=None)


ODDJOB_RUNS: dict[str, Callable[[str, Job, int], None]] = {
    "perform": oddjob_perform,
    "perform_many": oddjob_perform_many,
    "async_many": oddjob_async_many,
}


def stop_if_running(name: str, job: Job, n: int) -> None:
    if oddjob.whereis(name) is not None:
        oddjob.stop(name)


@pytest.mark.parametrize("mode", MODES)
def test_oddjob(
    benchmark: BenchmarkFixture, fresh_pool: Callable[[], str], workload: Workload, mode: str
) -> None:
    benchmark.group = f"{workload.key} {mode}"
    benchmark.pedantic(
        ODDJOB_RUNS[mode],
        setup=lambda: ((fresh_pool(), workload.job, workload.jobs), {}),
        teardown=stop_if_running,
        rounds=ROUNDS,
        warmup_rounds=1,
    )


def test_oddjob_round_trip(
    benchmark: BenchmarkFixture, fresh_pool: Callable[[], str], workload: Workload
) -> None:
    benchmark.group = f"{workload.key} round trip"
    name, job = fresh_pool(), workload.job
    async_perform, await_ = oddjob.async_perform, oddjob.await_
    benchmark.pedantic(
        lambda: await_(async_perform(name, job, 0), None),
        rounds=workload.round_trips,
        warmup_rounds=ROUND_TRIP_WARMUP,
    )


# -- ThreadPoolExecutor, the reference ---------------------------------------------------------


def executor_submit(executor: ThreadPoolExecutor, job: Job, n: int) -> None:
    submit = executor.submit
    for i in range(n):
        submit(job, i)
    executor.shutdown(wait=True)


def executor_map(executor: ThreadPoolExecutor, job: Job, n: int) -> None:
    exhaust(executor.map(job, range(n)))


def executor_submit_result(executor: ThreadPoolExecutor, job: Job, n: int) -> None:
    submit = executor.submit
    for future in [submit(job, i) for i in range(n)]:
        future.result()


EXECUTOR_RUNS: dict[str, Callable[[ThreadPoolExecutor, Job, int], None]] = {
    "perform": executor_submit,
    "perform_many": executor_map,
    "async_many": executor_submit_result,
}


def shut_down(executor: ThreadPoolExecutor, job: Job, n: int) -> None:
    executor.shutdown(wait=True)


@pytest.mark.parametrize("mode", MODES)
def test_thread_pool_executor(
    benchmark: BenchmarkFixture,
    fresh_executor: Callable[[], ThreadPoolExecutor],
    workload: Workload,
    mode: str,
) -> None:
    benchmark.group = f"{workload.key} {mode}"
    benchmark.pedantic(
        EXECUTOR_RUNS[mode],
        setup=lambda: ((fresh_executor(), workload.job, workload.jobs), {}),
        teardown=shut_down,
        rounds=ROUNDS,
        warmup_rounds=1,
    )


def test_thread_pool_executor_round_trip(
    benchmark: BenchmarkFixture,
    fresh_executor: Callable[[], ThreadPoolExecutor],
    workload: Workload,
) -> None:
    benchmark.group = f"{workload.key} round trip"
    submit, job = fresh_executor().submit, workload.job
    benchmark.pedantic(
        lambda: submit(job, 0).result(),
        rounds=workload.round_trips,
        warmup_rounds=ROUND_TRIP_WARMUP,
    )
