"""Timers: perform_after, perform_at, the perform_many_* forms, cancel_timer, read_timer.

Firing windows are generous (a timer must not fire early, and fires within LATE seconds
of its due time), so that a loaded machine never fails a correct implementation. To show
that a job never ran, a later timer on the same one-worker pool serves as a sentinel:
timers fire in due order and one worker runs jobs in FIFO order, so once the sentinel has
run, any earlier job would have run before it.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest

import oddjob
from oddjob import _scheduler as scheduler
from support import WAIT, Recorder, block_workers, gate, join_all, new_name

# A timer fires at most this long after its due time on a loaded machine.
LATE = 3.0
# How far the time-of-day tests may stray from the expected delay (the test's own work).
CLOCK_SLACK = 60.0
HOUR = 3600.0


def pending() -> int:
    return scheduler._scheduler.pending


def scheduler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == scheduler.THREAD_NAME]


def wait_fired(ref: oddjob.TimerRef, timeout: float = WAIT) -> None:
    """Wait until the timer has fired: its job is queued, maybe not run yet."""
    deadline = time.monotonic() + timeout
    while ref.remaining() is not False:
        assert time.monotonic() < deadline, f"{ref!r} did not fire within {timeout}s"
        time.sleep(0.002)


@contextmanager
def schedules_nothing() -> Iterator[None]:
    before = pending()
    yield
    assert pending() == before


class Clocked:
    """A job that records its arguments with time.monotonic() and time.time()."""

    def __init__(self) -> None:
        self.calls = Recorder()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls((time.monotonic(), time.time(), args, kwargs))

    def wait(self, n: int = 1) -> list[tuple[float, float, tuple[Any, ...], dict[str, Any]]]:
        return self.calls.wait_for_count(n)


# -- each call form fires once, not early and not much late ------------------------------


@pytest.mark.parametrize("delay", [0.2, timedelta(milliseconds=200)])
def test_perform_after_queues_the_job_after_the_delay(make_pool, delay):
    pool = make_pool(1)
    job = Clocked()
    start = time.monotonic()
    ref = oddjob.perform_after(delay, pool, job, 1, 2, key="value")
    assert isinstance(ref, oddjob.TimerRef)
    [(ran_at, _, args, kwargs)] = job.wait()
    assert 0.2 <= ran_at - start < 0.2 + LATE
    assert (args, kwargs) == ((1, 2), {"key": "value"})
    assert oddjob.read_timer(ref) is False


def test_perform_after_zero_queues_the_job_at_once(make_pool):
    pool = make_pool(1)
    job = Clocked()
    start = time.monotonic()
    oddjob.perform_after(0, pool, job, "now")
    [(ran_at, _, args, _)] = job.wait()
    assert ran_at - start < LATE
    assert args == ("now",)


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=-7)), None])
def test_perform_at_a_datetime_queues_the_job_at_that_time(make_pool, zone):
    pool = make_pool(1)
    job = Clocked()
    when = datetime.now(zone) + timedelta(seconds=0.2)  # zone None: naive, local time
    oddjob.perform_at(when, pool, job, "at", key=1)
    [(_, ran_wall, args, kwargs)] = job.wait()
    assert when.timestamp() <= ran_wall < when.timestamp() + LATE
    assert (args, kwargs) == (("at",), {"key": 1})


def test_perform_many_after_is_one_timer_and_runs_each_item_in_order(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    items = [1, 2, 3]
    before = pending()
    ref = oddjob.perform_many_after(0.05, pool, items, ran)
    assert pending() == before + 1
    items.append(4)  # the batch was read when the timer was set
    assert ran.wait_for_count(3) == [1, 2, 3]
    assert oddjob.read_timer(ref) is False


def test_perform_many_at_reads_a_generator_when_the_timer_is_set(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_many_at(
        datetime.now(UTC) + timedelta(seconds=0.05), pool, (i * i for i in range(4)), ran
    )
    assert isinstance(ref, oddjob.TimerRef)
    assert ran.wait_for_count(4) == [0, 1, 4, 9]


def test_an_empty_batch_is_a_timer_that_queues_nothing(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_many_after(0, pool, [], ran)
    sentinel = oddjob.perform_after(0.05, pool, ran, "sentinel")
    assert ran.wait_for_count(1) == ["sentinel"]
    assert ref.remaining() is False and sentinel.remaining() is False


# Rounds of the batch-contention test: one round catches a batch pushed item by item
# about half the time; five rounds almost always, in well under a second.
BATCH_ROUNDS = 5


def test_a_fired_batch_enters_the_queue_at_once(make_pool):
    # One blocked worker; another thread queues jobs as fast as it can while the batch
    # timer fires, with thread switches forced often. None of its jobs may land between
    # the members of the batch.
    pool = make_pool(1)
    batch = [("batch", i) for i in range(2000)]
    for _ in range(BATCH_ROUNDS):
        release = gate()
        block_workers(pool, 1, release)
        order: list[object] = []
        ref = oddjob.perform_many_after(0.02, pool, batch, order.append)
        fired = threading.Event()

        def other_caller(order: list[object] = order, fired: threading.Event = fired) -> None:
            for n in range(200_000):  # a bound, should the timer never fire
                if fired.is_set():
                    break
                oddjob.perform(pool, order.append, ("other", n))

        caller = threading.Thread(target=other_caller)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        caller.start()
        try:
            wait_fired(ref)
        finally:
            fired.set()
            sys.setswitchinterval(switch_interval)
            join_all([caller])
        release.set()
        oddjob.await_(oddjob.async_perform(pool, order.append, "last"), timeout=WAIT)
        first = order.index(("batch", 0))
        assert order[first : first + len(batch)] == batch


def test_a_configured_pool_starts_lazily_for_a_timer():
    assert oddjob.whereis("job") is None
    ran = Recorder()
    oddjob.perform_after(0, "job", ran, "default pool")
    assert ran.wait_for_count(1) == ["default pool"]


def test_a_fired_job_waits_behind_busy_workers(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    ref = oddjob.perform_after(0, pool, ran, "queued")
    wait_fired(ref)
    assert len(ran) == 0  # queued behind the blocker, not run beside it
    release.set()
    assert ran.wait_for_count(1) == ["queued"]


def test_once_a_timer_has_fired_its_job_is_in_the_queue(make_pool):
    # So a job queued after read_timer() returned False runs after the timer's job.
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    for n in range(20):
        ref = oddjob.perform_after(0, pool, ran, ("timer", n))
        wait_fired(ref)
        oddjob.perform(pool, ran, ("after", n))
    release.set()
    assert ran.wait_for_count(40) == [
        job for n in range(20) for job in (("timer", n), ("after", n))
    ]


def test_a_timer_survives_the_thread_that_set_it(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    setter = threading.Thread(target=oddjob.perform_after, args=(0.1, pool, ran, "orphan"))
    setter.start()
    join_all([setter])
    assert ran.wait_for_count(1) == ["orphan"]


# -- bad input raises and schedules nothing ---------------------------------------------


def never(*_: object) -> None:
    raise AssertionError("a job of a call that raised ran")


BAD_CALLS: dict[str, tuple[type[Exception], Callable[[str], object]]] = {
    "negative delay": (ValueError, lambda p: oddjob.perform_after(-0.001, p, never)),
    "negative timedelta": (
        ValueError,
        lambda p: oddjob.perform_after(timedelta(seconds=-1), p, never),
    ),
    "nan delay": (ValueError, lambda p: oddjob.perform_after(float("nan"), p, never)),
    "bool delay": (TypeError, lambda p: oddjob.perform_after(True, p, never)),
    "str delay": (TypeError, lambda p: oddjob.perform_after("1", p, never)),  # type: ignore[arg-type]
    "None delay": (TypeError, lambda p: oddjob.perform_after(None, p, never)),  # type: ignore[arg-type]
    "fn not callable": (TypeError, lambda p: oddjob.perform_after(0, p, 42)),  # type: ignore[arg-type]
    "pool not a str": (TypeError, lambda p: oddjob.perform_after(0, 42, never)),  # type: ignore[arg-type]
    "unknown pool": (
        oddjob.PoolNotFoundError,
        lambda p: oddjob.perform_after(0, "no-such-pool", never),
    ),
    "datetime in the past": (
        ValueError,
        lambda p: oddjob.perform_at(datetime.now() - timedelta(seconds=1), p, never),
    ),
    "aware datetime in the past": (
        ValueError,
        lambda p: oddjob.perform_at(datetime.now(UTC) - timedelta(seconds=1), p, never),
    ),
    "a date": (TypeError, lambda p: oddjob.perform_at(date.today(), p, never)),  # type: ignore[arg-type]
    "seconds for perform_at": (TypeError, lambda p: oddjob.perform_at(5, p, never)),  # type: ignore[arg-type]
    "perform_at fn not callable": (
        TypeError,
        lambda p: oddjob.perform_at(datetime.now() + timedelta(hours=1), p, None),  # type: ignore[arg-type]
    ),
    "batch not iterable": (TypeError, lambda p: oddjob.perform_many_after(0, p, 42, never)),  # type: ignore[arg-type]
    "batch negative delay": (ValueError, lambda p: oddjob.perform_many_after(-1, p, [1], never)),
    "batch fn not callable": (
        TypeError,
        lambda p: oddjob.perform_many_after(0, p, [1], "never"),  # type: ignore[arg-type]
    ),
    "batch unknown pool": (
        oddjob.PoolNotFoundError,
        lambda p: oddjob.perform_many_at(datetime.now() + timedelta(hours=1), "nope", [1], never),
    ),
    "batch at in the past": (
        ValueError,
        lambda p: oddjob.perform_many_at(datetime.now() - timedelta(hours=1), p, [1], never),
    ),
}


def failing_items():
    yield 1
    raise RuntimeError("the iterator failed")


@pytest.mark.parametrize("case", BAD_CALLS)
def test_a_bad_call_raises_and_schedules_nothing(make_pool, case):
    pool = make_pool(1)
    error, call = BAD_CALLS[case]
    with schedules_nothing(), pytest.raises(error):
        call(pool)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: oddjob.perform_many_after(0, p, failing_items(), never),
        lambda p: oddjob.perform_many_at(
            datetime.now() + timedelta(hours=1), p, failing_items(), never
        ),
    ],
)
def test_a_failing_batch_iterator_raises_and_schedules_nothing(make_pool, call):
    pool = make_pool(1)
    with schedules_nothing(), pytest.raises(RuntimeError, match="the iterator failed"):
        call(pool)


def test_a_bad_call_does_not_start_a_configured_pool():
    with schedules_nothing():
        with pytest.raises(ValueError):
            oddjob.perform_after(-1, "job", never)
        with pytest.raises(TypeError):
            oddjob.perform_many_after(0, "job", 42, never)  # type: ignore[arg-type]
    assert oddjob.whereis("job") is None


def test_cancel_and_read_take_only_a_timer_ref():
    with pytest.raises(TypeError):
        oddjob.cancel_timer("ref")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        oddjob.read_timer(None)  # type: ignore[arg-type]


# -- cancel and read --------------------------------------------------------------------


def test_cancel_before_firing_returns_the_seconds_left_and_the_job_never_runs(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_after(0.1, pool, ran, "cancelled")
    sentinel = oddjob.perform_after(0.2, pool, ran, "sentinel")
    left = oddjob.cancel_timer(ref)
    assert left is not False and 0.0 < left <= 0.1
    assert oddjob.cancel_timer(ref) is False
    assert oddjob.read_timer(ref) is False
    assert ran.wait_for_count(1) == ["sentinel"]
    assert sentinel.remaining() is False


def test_read_timer_counts_down_and_leaves_the_timer_alone(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_after(0.3, pool, ran, "read")
    first = oddjob.read_timer(ref)
    assert first is not False and 0.0 < first <= 0.3
    time.sleep(0.05)
    second = oddjob.read_timer(ref)
    assert second is not False and second < first
    assert ran.wait_for_count(1) == ["read"]
    assert oddjob.read_timer(ref) is False


def test_cancel_and_read_after_firing_return_false(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_after(0, pool, ran, "fired")
    ran.wait_for_count(1)
    assert oddjob.cancel_timer(ref) is False
    assert oddjob.read_timer(ref) is False
    assert ran.items == ["fired"]


def test_a_cancelled_batch_timer_queues_none_of_its_items(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    ref = oddjob.perform_many_after(0.05, pool, range(5), ran)
    oddjob.perform_after(0.1, pool, ran, "sentinel")
    assert ref.cancel() is not False
    assert ran.wait_for_count(1) == ["sentinel"]


def test_timer_ref_methods_hash_and_repr(make_pool):
    pool = make_pool(1)
    ran = Recorder()

    def send_report() -> None:
        ran("report")

    ref = oddjob.perform_after(HOUR, pool, send_report)
    other = oddjob.perform_after(HOUR, pool, send_report)
    assert len({ref, other, ref}) == 2
    assert {ref: 1}[ref] == 1
    assert ref.pool == pool and ref.function is send_report
    left = ref.remaining()
    assert left is not False and HOUR - CLOCK_SLACK < left <= HOUR
    assert "send_report" in repr(ref) and repr(pool) in repr(ref) and "due in" in repr(ref)
    assert ref.cancel() is not False
    assert ref.remaining() is False and ref.cancel() is False
    assert "cancelled" in repr(ref)
    assert other.cancel() is not False
    fired = oddjob.perform_after(0, pool, send_report)
    ran.wait_for_count(1)
    assert "fired" in repr(fired)


# -- time of day ------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=5, minutes=30))])
def test_an_aware_time_already_passed_today_is_due_tomorrow(make_pool, zone):
    pool = make_pool(1)
    now = datetime.now(zone)
    passed = oddjob.perform_at((now - timedelta(hours=1)).timetz(), pool, never)
    ahead = oddjob.perform_at((now + timedelta(hours=1)).timetz(), pool, never)
    passed_left, ahead_left = passed.remaining(), ahead.remaining()
    assert passed_left is not False and abs(passed_left - 23 * HOUR) < CLOCK_SLACK
    assert ahead_left is not False and abs(ahead_left - HOUR) < CLOCK_SLACK
    assert passed.cancel() is not False and ahead.cancel() is not False


def test_a_naive_time_is_local_time(make_pool):
    pool = make_pool(1)
    now = datetime.now()
    passed = oddjob.perform_at((now - timedelta(hours=1)).time(), pool, never)
    ahead = oddjob.perform_at((now + timedelta(hours=1)).time(), pool, never)
    passed_left, ahead_left = passed.remaining(), ahead.remaining()
    # A daylight-saving change within the day moves local times by up to an hour.
    assert passed_left is not False and abs(passed_left - 23 * HOUR) < HOUR + CLOCK_SLACK
    assert ahead_left is not False and abs(ahead_left - HOUR) < HOUR + CLOCK_SLACK
    assert passed.cancel() is not False and ahead.cancel() is not False


def test_an_aware_datetime_is_read_in_its_own_zone(make_pool):
    pool = make_pool(1)
    when = datetime.now(timezone(timedelta(hours=-9))) + timedelta(hours=2)
    ref = oddjob.perform_at(when, pool, never)
    left = ref.remaining()
    assert left is not False and abs(left - 2 * HOUR) < CLOCK_SLACK
    assert ref.cancel() is not False


# -- timers belong to their pool --------------------------------------------------------


def test_stopping_a_pool_cancels_its_timers_and_only_its_own(make_pool):
    pool, other = make_pool(1), make_pool(1)
    ran = Recorder()
    refs = [
        oddjob.perform_after(0.05, pool, ran, "after"),
        oddjob.perform_at(datetime.now() + timedelta(seconds=0.05), pool, ran, "at"),
        oddjob.perform_many_after(0.05, pool, ["many"], ran),
    ]
    kept = oddjob.perform_after(HOUR, other, ran, "other pool")
    before = pending()
    oddjob.stop(pool)
    assert pending() == before - len(refs)
    assert all(ref.remaining() is False and ref.cancel() is False for ref in refs)
    assert "cancelled" in repr(refs[0])
    assert kept.remaining() is not False
    assert kept.cancel() is not False


def test_a_pool_restarted_under_the_same_name_does_not_get_the_old_timers():
    name = new_name()
    oddjob.start_link(name, pool_size=1)
    ran = Recorder()
    old = oddjob.perform_after(0.05, name, ran, "old pool's timer")
    oddjob.stop(name)
    oddjob.start_link(name, pool_size=1)
    oddjob.perform_after(0.1, name, ran, "sentinel")
    assert ran.wait_for_count(1) == ["sentinel"]
    assert old.remaining() is False


def test_a_timer_set_on_a_pool_object_belongs_to_that_pool():
    with oddjob.Pool(new_name(), pool_size=1) as pool:
        ran = Recorder()
        ref = oddjob.perform_after(0, pool, ran, "pool object")
        assert ran.wait_for_count(1) == ["pool object"]
        assert ref.pool == pool.name
        late = oddjob.perform_after(HOUR, pool, ran, "never")
    assert late.remaining() is False


# -- the scheduling thread --------------------------------------------------------------


def test_one_thread_serves_every_timer_and_exits_when_none_is_left(make_pool):
    pool = make_pool(2)
    ran = Recorder()
    refs = [oddjob.perform_after(i * 0.001, pool, ran, i) for i in range(200)]
    refs += [oddjob.perform_at(datetime.now() + timedelta(hours=1), pool, ran, "at")]
    assert len(scheduler_threads()) == 1
    assert refs[-1].cancel() is not False
    assert sorted(ran.wait_for_count(200)) == list(range(200))
    # Nothing is pending: the thread exits on its own, without a pool stop.
    join_all(scheduler_threads())


def test_the_thread_starts_again_for_a_new_timer(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    oddjob.perform_after(0, pool, ran, 1)
    ran.wait_for_count(1)
    join_all(scheduler_threads())
    oddjob.perform_after(0, pool, ran, 2)
    assert ran.wait_for_count(2) == [1, 2]


def test_a_pool_stop_lets_the_idle_thread_go_at_once(make_pool, monkeypatch):
    # Left idle, the thread would linger for a minute; the pool stop lets it go.
    monkeypatch.setattr(scheduler, "IDLE_LINGER", 60.0)
    pool = make_pool(1)
    ref = oddjob.perform_after(HOUR, pool, never)
    [thread] = scheduler_threads()
    oddjob.stop(pool)
    join_all([thread])
    assert ref.remaining() is False


def test_a_job_fired_at_a_stopped_pool_is_dropped_silently(make_pool, caplog):
    # A pool unregisters a moment before its stop hook cancels its timers: one that fires
    # in between finds the pool stopping, and its job is dropped without a fuss.
    caplog.set_level(logging.DEBUG, logger="oddjob")
    pool = oddjob.whereis(make_pool(1))
    assert pool is not None
    oddjob.stop(pool)
    scheduler._fire(pool, never, (), {}, None, None)
    scheduler._fire(pool, never, (), {}, [1, 2], None)
    assert [r for r in caplog.records if r.name == "oddjob"] == []


# -- fork -------------------------------------------------------------------------------


def run_child(core: ModuleType, code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ODDJOB_NO_EXTENSIONS", None)
    if core.IMPLEMENTATION == "python":
        env["ODDJOB_NO_EXTENSIONS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_has_a_fresh_scheduler_and_no_timer_fires_twice(core):
    result = run_child(
        core,
        """
        import os, sys, threading, time, warnings, oddjob
        from oddjob import _scheduler as scheduler
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        ran = []
        done = threading.Event()
        oddjob.start_link("p", pool_size=1)
        inherited = oddjob.perform_after(0.3, "p", lambda: (ran.append("p"), done.set()))
        assert oddjob.perform_after(60, "p", ran.append, "x").cancel()  # a dead heap entry
        pid = os.fork()
        if pid == 0:
            try:
                assert oddjob.read_timer(inherited) is False
                assert oddjob.cancel_timer(inherited) is False
                assert scheduler._scheduler.pending == 0
                oddjob.start_link("p", pool_size=1)
                child = threading.Event()
                oddjob.perform_after(0.01, "p", child.set)
                assert child.wait(10), "the child's own timer did not fire"
                time.sleep(0.5)  # past the inherited timer's due time
                assert ran == [], ran
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        assert done.wait(10), "the parent's timer did not fire"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child failed"
        oddjob.stop("p", timeout=10)
        assert ran == ["p"], ran
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Exception ignored" not in result.stderr, result.stderr  # in an at-fork hook


@pytest.mark.parametrize("delay", [math.inf, 10**400, 1e300, timedelta.max], ids=repr)
def test_a_delay_beyond_any_clock_means_a_timer_that_never_fires(make_pool, delay):
    pool = make_pool(1)
    ref = oddjob.perform_after(delay, pool, never)
    ran = Recorder()
    oddjob.perform_after(0, pool, ran, "due now")  # fires while the other one waits on
    ran.wait_for_count(1)
    left = oddjob.read_timer(ref)
    assert left is not False and left > 1e9
    cancelled = oddjob.cancel_timer(ref)
    assert cancelled is not False and cancelled > 1e9
    assert oddjob.read_timer(ref) is False
