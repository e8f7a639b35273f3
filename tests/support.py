"""Helpers shared by the oddjob tests: pool names, gates, recorders and bounded waits.

Every wait here has a bound: a test that would hang on a broken implementation fails
instead, with a message, long before pytest-timeout fires.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import oddjob

# How long a test waits for something that should happen almost at once. Generous, so
# that a loaded CI machine never fails a correct implementation.
WAIT = 10.0

# A short pause that gives a wrong implementation the chance to misbehave (run a job
# it should not, start one worker too many). Never used to synchronise.
SETTLE = 0.05

# Whether the Ray backend is tested here: where Ray is installed (CI installs it and sets
# ODDJOB_REQUIRE_RAY=1, so that a failed install fails the run instead of leaving the
# Ray tests out).
RAY = importlib.util.find_spec("ray") is not None
if os.environ.get("ODDJOB_REQUIRE_RAY") == "1" and not RAY:
    raise RuntimeError("ODDJOB_REQUIRE_RAY=1, but ray cannot be imported")

_counter = itertools.count()
_names: list[str] = []
_gates: list[threading.Event] = []
_teardown = False  # open_all_gates() ran: the test is being torn down


def new_name(prefix: str = "test") -> str:
    """A pool name no other test uses; the `core` fixture stops it after the test."""
    name = f"{prefix}-{next(_counter)}"
    _names.append(name)
    return name


def track(name: str) -> str:
    """Have the `core` fixture stop the pool `name` after the test."""
    if name not in _names:
        _names.append(name)
    return name


def take_names() -> list[str]:
    names = list(_names)
    _names.clear()
    return names


def gate() -> threading.Event:
    """An Event that jobs block on; the `core` fixture sets it after the test (one made
    during the teardown, by a job that starts as its pool drains, is made open)."""
    event = threading.Event()
    if _teardown:
        event.set()
    else:
        _gates.append(event)
    return event


def open_all_gates() -> None:
    """Open every gate, and every gate made from now until close_gates()."""
    global _teardown
    _teardown = True
    for event in _gates:
        event.set()
    _gates.clear()


def close_gates() -> None:
    """A test begins: gates made from now on stay shut until open_all_gates()."""
    global _teardown
    _teardown = False


class Recorder:
    """A thread-safe list that jobs append to, with a bounded wait for its length."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def __call__(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def wait_for_count(self, n: int, timeout: float = WAIT) -> list[Any]:
        """Wait until at least n items are recorded; fail the test if that takes too long."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._items) >= n, timeout)
            items = list(self._items)
        assert ok, f"expected {n} recorded items within {timeout}s, got {len(items)}: {items!r}"
        return items


def block_workers(pool: Any, n: int, release: threading.Event) -> list[Any]:
    """Occupy n workers of `pool` with jobs that wait for `release`; return their Jobs
    once all n are running (so that later jobs are certain to queue behind them)."""
    started = Recorder()

    def blocker(i: int) -> str:
        started(i)
        release.wait(WAIT)
        return f"blocker {i}"

    jobs = [oddjob.async_perform(pool, blocker, i) for i in range(n)]
    started.wait_for_count(n)
    return jobs


class LogWatcher(logging.Handler):
    """Lets a test wait for log records that worker threads emit some time after the job
    that caused them. Installed on the "oddjob" logger, it wakes the waiting test; the
    records themselves are read from pytest's caplog, whose handler on the root logger
    sees each record just after this one does (hence the short re-checks)."""

    def __init__(self, caplog: Any) -> None:
        super().__init__(logging.DEBUG)
        self._cond = threading.Condition()
        self._caplog = caplog

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[logging.LogRecord], bool], timeout: float = WAIT
    ) -> list[logging.LogRecord]:
        """caplog's records that match predicate, once there is at least one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self._caplog.records if predicate(r)]
            left = deadline - time.monotonic()
            if found or left <= 0:
                break
            with self._cond:
                self._cond.wait(min(left, 0.01))
        assert found, f"no matching log record within {timeout}s: {self._caplog.records!r}"
        return found


def frame_names(exc: BaseException) -> list[str]:
    """Names of the functions in an exception's traceback, outermost first."""
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def join_all(threads: Iterable[threading.Thread], timeout: float = WAIT) -> None:
    """Join threads with a bound; fail the test naming any that are still alive."""
    threads = list(threads)
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still alive after {timeout}s: {alive}"


def in_thread_that_exits(fn: Callable[[], Any]) -> Any:
    """Run fn in a fresh thread, wait for that thread to end, return what fn returned
    (the thread is then a dead owner: its queued async jobs are dropped)."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), name="test-owner")
    t.start()
    join_all([t])
    assert out, "the owner thread failed"
    return out[0]


def run_threads(target: Callable[[int], Any], n: int, timeout: float = WAIT) -> None:
    """Run target(0) .. target(n - 1) in n threads at once; join them with a bound and
    re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"test-thread-{i}") for i in range(n)]
    for t in threads:
        t.start()
    join_all(threads, timeout)
    if errors:
        raise errors[0]


# How long a child interpreter gets to run its script.
CHILD_TIMEOUT = 60.0


def child_env(core: ModuleType, **extra: str) -> dict[str, str]:
    """The environment of a child interpreter that runs on ``core`` (a core module)."""
    env = dict(os.environ)
    env.pop("ODDJOB_NO_EXTENSIONS", None)
    if core.IMPLEMENTATION == "python":
        env["ODDJOB_NO_EXTENSIONS"] = "1"
    env.update(extra)
    return env


def run_child(core: ModuleType, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a child interpreter on ``core``, with a timeout."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=child_env(core, **env),
    )


# -- pools under test: polling, stats, flaky jobs, rate windows, telemetry ---------------


def until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll predicate until it is true; fail the test, saying what, after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.001)


def settled(
    pool: str | oddjob.Pool, predicate: Callable[[Any], bool], timeout: float = WAIT
) -> oddjob.PoolStats:
    """The pool's stats once ``predicate(stats)`` holds. Counters of a job are updated
    around the moment its result is published, so a test that has just seen a result
    waits (with a bound) for the counters to catch up. A Pool may have stopped."""
    deadline = time.monotonic() + timeout
    while True:
        stats = pool.stats() if isinstance(pool, oddjob.Pool) else oddjob.stats(pool)
        if predicate(stats):
            return stats
        assert time.monotonic() < deadline, f"stats never settled: {stats}"
        time.sleep(0.002)


def accounted(stats: oddjob.PoolStats) -> int:
    """What the contract's invariant says ``submitted`` equals once the pool is idle."""
    return (
        stats.queued
        + stats.running
        + stats.completed
        + stats.failed
        + stats.cancelled
        + stats.dropped
        + stats.expired
    )


class Flaky:
    """A job that raises ``error(f"{key} run {n}")`` on its first failures(key) runs of
    each key, then returns f"{key} ok". Records (key, run, time.monotonic()) as its
    first line, and keeps every exception it raised."""

    def __init__(
        self, failures: int | Callable[[Any], int], error: type[Exception] = ConnectionError
    ) -> None:
        self._failures = failures
        self._error = error
        self.runs = Recorder()
        self._lock = threading.Lock()
        self._counts: Counter[Any] = Counter()
        self._raised: dict[Any, list[Exception]] = {}

    def failures(self, key: Any) -> int:
        return self._failures(key) if callable(self._failures) else self._failures

    def __call__(self, key: Any = "job") -> str:
        at = time.monotonic()
        with self._lock:
            self._counts[key] += 1
            n = self._counts[key]
        self.runs((key, n, at))
        if n <= self.failures(key):
            exc = self._error(f"{key} run {n}")
            with self._lock:
                self._raised.setdefault(key, []).append(exc)
            raise exc
        return f"{key} ok"

    def count(self, key: Any = "job") -> int:
        with self._lock:
            return self._counts[key]

    def raised(self, key: Any = "job") -> list[Exception]:
        with self._lock:
            return list(self._raised.get(key, []))

    def times(self, key: Any = "job") -> list[float]:
        return [t for k, _n, t in self.runs.items if k == key]


# A start is recorded by the job's first line, a little after the rate limiter granted
# it (not always equally late: on a loaded 2-core machine the worker may be descheduled in
# between, seen as 2.3 ms on 3.13t under CI load): a window is checked over
# per - GRANT_SLACK. A broken limiter lets count more through at once (spans near 0).
GRANT_SLACK = 0.010


def assert_window(starts: list[float], count: int, per: float) -> None:
    """No window of per seconds holds more than count of these start times: sorted, any
    count + 1 consecutive starts span at least per (less the grant slack)."""
    s = sorted(starts)
    spans = [s[i + count] - s[i] for i in range(len(s) - count)]
    assert spans, f"too few starts ({len(s)}) to check windows of {count}"
    worst = min(spans)
    at = spans.index(worst)
    assert worst >= per - GRANT_SLACK, (
        f"{count + 1} starts within {worst:.4f}s (rate_limit {count} per {per}s): "
        f"{[round(t - s[0], 4) for t in s[at : at + count + 1]]}"
    )


class Event:
    """One call of a handler: what it was given and the thread it ran on."""

    def __init__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.event = event
        self.measurements = measurements
        self.metadata = metadata
        self.thread = threading.current_thread()
        self.worker = oddjob.current_worker()

    def __repr__(self) -> str:
        return f"<{self.event} {self.measurements} {self.metadata} on {self.thread.name}>"


class Events(Recorder):
    """A handler that records the events of one pool; waits are bounded."""

    def __init__(self, pool: str) -> None:
        super().__init__()
        self.pool = pool

    def handler(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        if metadata.get("pool") == self.pool:
            self(Event(event, measurements, metadata))

    def named(self, *names: str) -> list[Event]:
        return [e for e in self.items if e.event in names]

    def wait_for(self, name: str, n: int = 1, timeout: float = WAIT) -> list[Event]:
        """Wait until at least n events called ``name`` are recorded; return them."""
        deadline = time.monotonic() + timeout
        while True:
            # One snapshot for both the check and the count waited past: an event that
            # lands in between must end the wait, not be waited for again.
            seen = list(self.items)
            found = [e for e in seen if e.event == name]
            if len(found) >= n:
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"expected {n} {name} events within {timeout}s, got {seen}"
            self.wait_for_count(len(seen) + 1, left)


class HostileError(RuntimeError):
    """Raised by Hostile: a validator must not call what raises it."""


class Hostile:
    """A value whose truth, equality, hash and numeric conversions all raise."""

    def __bool__(self) -> bool:
        raise HostileError("__bool__")

    def __eq__(self, other: object) -> bool:
        raise HostileError("__eq__")

    def __hash__(self) -> int:
        raise HostileError("__hash__")

    def __index__(self) -> int:
        raise HostileError("__index__")

    def __float__(self) -> float:
        raise HostileError("__float__")

    def __len__(self) -> int:
        raise HostileError("__len__")

    def __repr__(self) -> str:
        return "<Hostile>"


def remove_ray_pools(pools: Iterable[oddjob.Pool], timeout: float = 30.0) -> None:
    """Stop Ray pools and remove their slots from the cluster (they outlive a pool)."""
    from oddjob import _ray_worker

    for pool in pools:
        if oddjob.whereis(pool.name) is pool:
            pool.stop(timeout=timeout)
        _ray_worker.remove_slots(pool.name)
