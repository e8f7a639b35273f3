"""Helpers shared by the oddjob tests: pool names, gates, recorders and bounded waits.

Every wait here has a bound: a test that would hang on a broken implementation fails
instead, with a message, long before pytest-timeout fires.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
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

_counter = itertools.count()
_names: list[str] = []
_gates: list[threading.Event] = []


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
    """An Event that jobs block on; the `core` fixture sets it after the test."""
    event = threading.Event()
    _gates.append(event)
    return event


def open_all_gates() -> None:
    for event in _gates:
        event.set()
    _gates.clear()


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
