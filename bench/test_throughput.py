"""Throughput of the job calls on no-op jobs (pytest-benchmark; not part of the tests).

    python -m pytest bench --benchmark-only

`python -m oddjob bench` prints the same workloads beside ThreadPoolExecutor.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

import oddjob

JOBS = 20_000


def noop(*_args: object) -> None:
    pass


@pytest.fixture
def pool(core: ModuleType) -> Iterator[str]:
    oddjob.start_link("bench", pool_size=5)
    yield "bench"
    oddjob.stop("bench")


def _drain(pool: str) -> None:
    # The queue is FIFO, so once these markers are done every earlier job has started
    # (and, being a no-op, finished): a cheap barrier for these workloads.
    oddjob.await_many(oddjob.async_perform_many(pool, range(5), noop), timeout=60)


def test_perform(benchmark: pytest.FixtureRequest, pool: str) -> None:
    def run() -> None:
        for _ in range(JOBS):
            oddjob.perform(pool, noop)
        _drain(pool)

    benchmark(run)  # type: ignore[operator]


def test_perform_many(benchmark: pytest.FixtureRequest, pool: str) -> None:
    def run() -> None:
        oddjob.perform_many(pool, range(JOBS), noop)
        _drain(pool)

    benchmark(run)  # type: ignore[operator]


def test_async_perform_many_await_many(benchmark: pytest.FixtureRequest, pool: str) -> None:
    def run() -> None:
        oddjob.await_many(oddjob.async_perform_many(pool, range(JOBS), noop), timeout=60)

    benchmark(run)  # type: ignore[operator]
