"""A pool's worker supervisor: it starts the worker threads and replaces them.

    WorkerSupervisor.start() --> pool_size threads, each running queue.work(worker)
    a job raises  --> work() returns the crash --> the thread is replaced by a fresh one
    more than max_restarts crashes within max_seconds --> every worker is retired (it
        finishes its current job first) and replaced; the queue and its jobs stay put

Replacements start only as the threads they replace exit, so a pool never runs more
than pool_size jobs at once, not even while it restarts. Worker threads hold only a
weak reference to their supervisor (as concurrent.futures' workers do to their pool).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from typing import Any

from .config import PoolOptions

__all__ = ["WorkerSupervisor"]

logger = logging.getLogger("oddjob")


def _worker_main(supervisor_ref: weakref.ref[WorkerSupervisor], queue: Any, worker: Any) -> None:
    outcome = queue.work(worker)
    if outcome is not None:
        exc, fn, is_async = outcome
        if not is_async:  # nobody awaits a fire-and-forget job: its failure is logged
            logger.error(
                "job %r in pool %r raised; replacing its worker",
                fn,
                queue.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        del exc, fn, outcome  # the traceback holds this frame: break the cycle early
        crashed = True
    else:
        crashed = False
    supervisor = supervisor_ref()
    if supervisor is not None:
        supervisor._exited(worker, crashed)


class WorkerSupervisor:
    """Supervises the worker threads of one pool (``oddjob.supervisor(name)``).

    Attributes:
        id: ``"<pool>_pool_sup"``.
        pool: the pool's name.
        options: the pool's options (size and restart intensity).
        restarts: how many times the whole worker set was restarted.
        crashes: how many workers crashed in all.
    """

    def __init__(self, pool: str, queue: Any, core: Any, options: PoolOptions) -> None:
        self.id = f"{pool}_pool_sup"
        self.pool = pool
        self.options = options
        self.restarts = 0
        self.crashes = 0
        self._queue = queue
        self._core = core
        self._lock = threading.Lock()
        self._threads: dict[Any, threading.Thread] = {}  # Worker -> its thread
        self._recent: deque[float] = deque()  # monotonic times of crashes in the window
        self._spawned = 0

    def start(self) -> None:
        with self._lock:
            for _ in range(self.options.pool_size):
                self._spawn_locked()

    def _spawn_locked(self) -> None:
        worker = self._core.Worker(f"oddjob-{self.pool}-{self._spawned}")
        self._spawned += 1
        thread = threading.Thread(
            target=_worker_main,
            args=(weakref.ref(self), self._queue, worker),
            name=worker.name,
            daemon=True,  # interpreter exit drains pools itself, within a bound
        )
        worker.thread = thread
        self._threads[worker] = thread
        thread.start()

    def _needed(self) -> bool:
        # A closed queue still needs workers while it drains.
        return not self._queue.closed or len(self._queue) > 0

    def _exited(self, worker: Any, crashed: bool) -> None:
        """Called on a worker's thread as it leaves: replace it if the pool needs it."""
        restart_all = False
        with self._lock:
            self._threads.pop(worker, None)
            if crashed:
                self.crashes += 1
                restart_all = self._count_crash_locked()
            if restart_all:
                self.restarts += 1
                retiring = list(self._threads)
            if (crashed or worker.retired) and self._needed():
                self._spawn_locked()
        if restart_all:
            logger.warning(
                "pool %r: more than %d crashes within %s seconds; restarting all its workers",
                self.pool,
                self.options.max_restarts,
                self.options.max_seconds,
            )
            for other in retiring:
                # Each finishes its current job, exits, and _exited starts its successor.
                self._queue.retire(other)

    def _count_crash_locked(self) -> bool:
        """Record a crash; True when the restart intensity is exceeded."""
        now = time.monotonic()
        window = self._recent
        window.append(now)
        while window and now - window[0] > self.options.max_seconds:
            window.popleft()
        if len(window) > self.options.max_restarts:
            window.clear()
            return True
        return False

    def threads(self) -> list[threading.Thread]:
        """The live worker threads, oldest first."""
        with self._lock:
            return [t for t in self._threads.values() if t.is_alive()]

    def workers(self) -> list[Any]:
        """The core Worker objects of the live threads (they say whether they are busy)."""
        with self._lock:
            return [w for w, t in self._threads.items() if t.is_alive()]

    def join(self, deadline: float | None) -> None:
        """Wait until every worker thread has exited (replacements included).

        Raises:
            TimeoutError: some are still running at ``deadline`` (a monotonic time).
        """
        current = threading.current_thread()
        while True:
            with self._lock:
                threads = [t for t in self._threads.values() if t is not current]
            threads = [t for t in threads if t.is_alive()]
            if not threads:
                return
            for thread in threads:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"pool {self.pool!r}: {len(threads)} workers still running")
                thread.join(left)

    def forget_threads(self) -> None:
        """After fork: the workers did not survive; forget them."""
        self._lock = threading.Lock()
        self._threads.clear()

    def __repr__(self) -> str:
        return (
            f"<WorkerSupervisor {self.id!r} workers={len(self._threads)} "
            f"crashes={self.crashes} restarts={self.restarts}>"
        )
