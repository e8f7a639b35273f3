"""The v2 public API, "Waiting on many jobs" (as_completed, wait) and "Observability"
(stats, telemetry) in API.md, as a user types it: checked, never run, by mypy --strict
and pyright (strict), as check_public_api.py is. oddjob.aio has its own file,
check_v2_aio.py.

Not a test module: pytest collects ``test_*.py`` only, so it never imports this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, assert_type

import oddjob
from oddjob import Job


def square(x: int) -> int:
    return x * x


def waiting(jobs: list[Job[int]]) -> None:
    assert_type(oddjob.as_completed(jobs), Iterator[Job[int]])
    assert_type(oddjob.as_completed(jobs, timeout=1.0), Iterator[Job[int]])
    for job in oddjob.as_completed(iter(jobs), timeout=timedelta(seconds=1)):
        assert_type(job, Job[int])
        assert_type(job.result(), int)

    done, not_done = oddjob.wait(jobs)
    assert_type(done, set[Job[int]])
    assert_type(not_done, set[Job[int]])
    assert_type(
        oddjob.wait(jobs, timeout=None, return_when=oddjob.FIRST_COMPLETED),
        tuple[set[Job[int]], set[Job[int]]],
    )
    assert_type(oddjob.wait(jobs, 0.5, oddjob.FIRST_EXCEPTION), tuple[set[Job[int]], set[Job[int]]])
    assert_type(
        oddjob.wait(jobs, return_when=oddjob.ALL_COMPLETED), tuple[set[Job[int]], set[Job[int]]]
    )
    oddjob.as_completed([square])  # type: ignore[arg-type]


def on_event(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    print(event, measurements.get("duration"), metadata["pool"])


def observing(pool: oddjob.Pool) -> None:
    snapshot = oddjob.stats("job")
    assert_type(snapshot, oddjob.PoolStats)
    assert_type(oddjob.stats(pool), oddjob.PoolStats)
    assert_type(pool.stats(), oddjob.PoolStats)
    assert_type(snapshot.pool, str)
    assert_type(snapshot.queued, int)
    assert_type(snapshot.rejected, int)
    assert_type(snapshot.queue_wait, oddjob.Latency)
    assert_type(snapshot.run_time.count, int)
    assert_type(snapshot.run_time.p99, float)
    oddjob.stats(1)  # type: ignore[arg-type]

    oddjob.telemetry.attach("metrics", ["job.stop", "job.exception"], on_event)
    oddjob.telemetry.attach(("metrics", 2), "pool.start", lambda e, m, md: None)
    assert_type(oddjob.telemetry.detach("metrics"), bool)
    for info in oddjob.telemetry.handlers():
        assert_type(info.events, tuple[str, ...])
    assert_type(oddjob.telemetry.EVENTS, frozenset[str])
    oddjob.telemetry.attach("bad", "job.stop", square)  # type: ignore[arg-type]


def external_services() -> None:
    """ "Calling external services": rate_limit, retry, max_queue_time, Job.attempts."""
    policy = oddjob.Retry(attempts=5, on=(ConnectionError, TimeoutError), backoff=0.2)
    assert_type(policy.attempts, int)
    assert_type(policy.on, tuple[type[Exception], ...])
    assert_type(policy.delay(2), float)
    oddjob.Retry(on=ConnectionError, backoff=timedelta(milliseconds=50), jitter=False)
    with oddjob.Pool(
        "api", pool_size=4, rate_limit=(100, 1.0), retry=policy, max_queue_time=30.0
    ) as pool:
        job = pool.async_perform(square, 3)
        assert_type(job.attempts, int)
        try:
            job.result(timeout=5.0)
        except oddjob.JobExpiredError as exc:
            assert_type(exc, oddjob.JobExpiredError)
            assert isinstance(exc, TimeoutError)
    oddjob.configure(rate_limit=(10, timedelta(seconds=1)), retry=3, max_queue_time=None)
