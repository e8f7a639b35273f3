"""perform_this: submits the decorated function at once and binds its name to the result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

import oddjob
from oddjob import _scheduler as scheduler
from support import WAIT, Recorder


def test_the_default_mode_performs_the_function_and_binds_none(make_pool):
    pool = make_pool(1)
    ran = Recorder()

    @oddjob.perform_this(pool)
    def cleanup() -> None:
        ran("cleanup")

    assert cleanup is None
    assert ran.wait_for_count(1) == ["cleanup"]


def test_async_mode_binds_the_job(make_pool, core):
    pool = make_pool(1)

    @oddjob.perform_this(pool, "async")
    def answer() -> int:
        return 42

    assert isinstance(answer, core.Job)
    assert oddjob.await_(answer, timeout=WAIT) == 42


def test_at_binds_a_timer_ref(make_pool):
    pool = make_pool(1)
    ran = Recorder()

    @oddjob.perform_this(pool, at=datetime.now() + timedelta(seconds=0.05))
    def report() -> None:
        ran("report")

    assert isinstance(report, oddjob.TimerRef)
    assert ran.wait_for_count(1) == ["report"]
    assert report.remaining() is False


@pytest.mark.parametrize("after", [0, 0.05, timedelta(milliseconds=50)])
def test_after_binds_a_timer_ref(make_pool, after):
    pool = make_pool(1)
    ran = Recorder()

    @oddjob.perform_this(pool, after=after)
    def retry() -> None:
        ran("retry")

    assert isinstance(retry, oddjob.TimerRef)
    assert ran.wait_for_count(1) == ["retry"]


def test_a_pool_object_and_the_default_pool_work_too(make_pool):
    pool = oddjob.whereis(make_pool(1))
    assert pool is not None

    @oddjob.perform_this(pool, "async")
    def on_object() -> str:
        return "object"

    @oddjob.perform_this("job", "async")
    def on_default() -> str:
        return "default"

    assert oddjob.await_many([on_object, on_default], timeout=WAIT) == ["object", "default"]


BAD_DECORATIONS: dict[str, dict[str, Any]] = {
    "unknown mode": dict(mode="sync"),
    "mode in capitals": dict(mode="ASYNC"),
    "async and at": dict(mode="async", at=datetime.now() + timedelta(hours=1)),
    "async and after": dict(mode="async", after=1),
    "at and after": dict(at=datetime.now() + timedelta(hours=1), after=0),
    "all three": dict(mode="async", at=datetime.now() + timedelta(hours=1), after=1),
}


@pytest.mark.parametrize("case", BAD_DECORATIONS)
def test_a_bad_combination_raises_value_error_before_anything_is_queued(make_pool, case):
    pool = make_pool(1)
    ran = Recorder()
    before = scheduler._scheduler.pending
    with pytest.raises(ValueError, match="perform_this"):

        @oddjob.perform_this(pool, **BAD_DECORATIONS[case])
        def never() -> None:
            ran("never")

    assert scheduler._scheduler.pending == before
    oddjob.await_(oddjob.async_perform(pool, ran, "sentinel"), timeout=WAIT)
    assert ran.items == ["sentinel"]


@pytest.mark.parametrize(
    ("error", "options"),
    [
        (ValueError, dict(after=-1)),
        (TypeError, dict(after="soon")),
        (ValueError, dict(at=datetime.now() - timedelta(hours=1))),
    ],
)
def test_what_the_underlying_call_rejects_raises_at_decoration_time(make_pool, error, options):
    pool = make_pool(1)
    before = scheduler._scheduler.pending
    with pytest.raises(error):

        @oddjob.perform_this(pool, **options)
        def never() -> None:
            raise AssertionError("queued by a call that raised")

    assert scheduler._scheduler.pending == before


def test_an_unknown_pool_raises_at_decoration_time():
    with pytest.raises(oddjob.PoolNotFoundError):

        @oddjob.perform_this("no-such-pool")
        def never() -> None:
            raise AssertionError("queued by a call that raised")
