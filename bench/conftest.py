"""Benchmarks run over both cores, like the tests: ``python -m pytest bench``.

The workloads are those of ``python -m oddjob bench`` (``oddjob._bench.make_workloads``),
with fewer jobs: no-op jobs, ~10 µs of pure-Python CPU work, ~1 ms of I/O (a sleep).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest

import oddjob
from oddjob import _backend, _core_py
from oddjob._bench import WORKLOAD_KEYS, Workload, make_workloads
from oddjob._bench_peers import PRESTART_TIMEOUT, Rendezvous

# Workers per pool, as in `python -m oddjob bench`.
POOL_SIZE = 5
# No-op jobs per round (CPU jobs are a fifth of it, sleeping jobs a hundredth, as in the
# harness): enough to dwarf a pool's start and stop, few enough for a quick suite.
JOBS = 20_000

_numbers = itertools.count()


@pytest.fixture(scope="session")
def workloads() -> dict[str, Workload]:
    return {w.key: w for w in make_workloads(WORKLOAD_KEYS, JOBS)}


@pytest.fixture(params=WORKLOAD_KEYS)
def workload(request: pytest.FixtureRequest, workloads: dict[str, Workload]) -> Workload:
    return workloads[request.param]


@pytest.fixture(params=["compiled", "python"] if _backend.compiled() else ["python"])
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    module = _core_py if request.param == "python" else _backend.compiled()
    assert module is not None
    with _backend.use(module):
        yield module


@pytest.fixture
def fresh_pool(core: ModuleType) -> Iterator[Callable[[], str]]:
    """fresh_pool() starts a pool with all its workers running and returns its name;
    every pool it started is stopped by the end of the test."""
    pools: list[oddjob.Pool] = []

    def start() -> str:
        name = f"bench-{next(_numbers)}"
        pools.append(oddjob.Pool(name, pool_size=POOL_SIZE).start())
        rendezvous = Rendezvous(POOL_SIZE)
        jobs = [oddjob.async_perform(name, rendezvous) for _ in range(POOL_SIZE)]
        oddjob.await_many(jobs, timeout=PRESTART_TIMEOUT)
        return name

    yield start
    for pool in pools:
        if pool.running:
            pool.stop(cancel_pending=True)


@pytest.fixture
def fresh_executor() -> Iterator[Callable[[], ThreadPoolExecutor]]:
    """fresh_executor() makes a ThreadPoolExecutor with all its threads started; every
    executor it made is shut down by the end of the test."""
    executors: list[ThreadPoolExecutor] = []

    def make() -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="bench-executor")
        executors.append(executor)
        rendezvous = Rendezvous(POOL_SIZE)
        for future in [executor.submit(rendezvous) for _ in range(POOL_SIZE)]:
            future.result(PRESTART_TIMEOUT)
        return executor

    yield make
    for executor in executors:
        executor.shutdown(wait=True, cancel_futures=True)
