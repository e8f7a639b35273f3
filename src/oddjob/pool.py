"""A named pool: its core queue, its worker threads and their replacement on crashes.

    Pool.perform(...) --> core Queue.push --> Worker thread: Queue.work() --> fn(...)
                                                   |  a job raised: work() returns
                                                   v
                                     _worker_main logs it, Pool replaces the thread

Worker threads hold only a weak reference to their Pool (as concurrent.futures
does), so a forgotten, unstarted or stopped Pool can be collected.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _backend, registry
from .config import PoolOptions
from .errors import PoolNotFoundError

__all__ = ["Pool"]

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")

logger = logging.getLogger("oddjob")

# States of a Pool object.
_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


def _as_list(iterable: Iterable[Any]) -> list[Any]:
    """Materialise a batch before it is queued, so that a failing iterator queues nothing."""
    if type(iterable) is list:
        return iterable
    try:
        iterator = iter(iterable)
    except TypeError:
        raise TypeError(f"a batch must be iterable, not {type(iterable).__name__}") from None
    return list(iterator)


def _worker_main(pool_ref: weakref.ref[Pool], queue: Any, worker: Any) -> None:
    outcome = queue.work(worker)
    if outcome is None:  # queue closed and drained, or worker retired
        return
    exc, fn, is_async = outcome
    if not is_async:  # nobody awaits a fire-and-forget job: its failure is logged
        logger.error(
            "job %r in pool %r raised", fn, queue.name, exc_info=(type(exc), exc, exc.__traceback__)
        )
    del exc, outcome  # the traceback holds this frame: break the cycle early
    pool = pool_ref()
    if pool is not None:
        pool._replace(worker)


class Pool:
    """A named pool of worker threads that runs jobs in FIFO order.

    ``Pool(name, **options)`` makes the pool; ``start()`` (or ``with Pool(...)``, or
    ``oddjob.start_link``) starts and registers it under its name; ``stop()`` (or leaving
    the ``with`` block) drains what is queued and stops it.

    Args:
        name: the pool's name, unique among running pools.
        pool_size: number of worker threads (default 5).
        max_restarts, max_seconds: restart intensity of the pool's supervisor.

    Raises:
        TypeError: name is not a str.
        ConfigError: an option is unknown or its value is out of range.
    """

    def __init__(self, name: str, **options: Any) -> None:
        if type(name) is not str:
            raise TypeError(f"a pool name must be a str, not {type(name).__name__}")
        self.name = name
        self.options = PoolOptions.build(**options)
        self._lock = threading.Lock()
        self._state = _NEW
        self._queue: Any = None
        self._workers: dict[Any, threading.Thread] = {}
        self._spawned = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Pool:
        """Start the workers and register the pool under its name.

        Raises:
            PoolAlreadyStartedError: a pool of this name is already running.
            OddJobError: this Pool object was started before (make a new one).
        """
        registry.register(self, self._start)
        return self

    def _start(self) -> None:
        # Called by the registry with its lock held, once the name is known to be free.
        from .errors import OddJobError

        with self._lock:
            if self._state != _NEW:
                raise OddJobError(
                    f"pool {self.name!r} was already started once; "
                    "make a new Pool to start it again"
                )
            self._queue = _backend.core.Queue(self.name)
            self._state = _RUNNING
            for _ in range(self.options.pool_size):
                self._spawn_locked()

    def _spawn_locked(self) -> None:
        worker = _backend.core.Worker(f"oddjob-{self.name}-{self._spawned}")
        self._spawned += 1
        thread = threading.Thread(
            target=_worker_main,
            args=(weakref.ref(self), self._queue, worker),
            name=worker.name,
            daemon=True,  # interpreter exit drains pools itself, with a bound
        )
        worker.thread = thread
        self._workers[worker] = thread
        thread.start()

    def _replace(self, worker: Any) -> None:
        """A worker crashed: start a fresh thread in its place (fresh thread-locals)."""
        with self._lock:
            self._workers.pop(worker, None)
            # A closed queue still needs workers while it drains.
            if self._queue is not None and (not self._queue.closed or len(self._queue)):
                self._spawn_locked()

    def stop(
        self,
        *,
        wait: bool = True,
        timeout: float | timedelta | None = None,
        cancel_pending: bool = False,
    ) -> None:
        """Stop the pool: accept no more jobs, run what is queued (or cancel it with
        ``cancel_pending=True``), and join the workers.

        Args:
            wait: join the worker threads before returning.
            timeout: at most this many seconds to wait (None: until drained).
            cancel_pending: drop queued jobs; queued async jobs are marked cancelled.

        Raises:
            PoolNotFoundError: the pool is not running.
            TimeoutError: the workers did not finish within ``timeout`` (the pool is
                stopped all the same; its workers exit once their jobs end).
        """
        limit = _backend.core.seconds(timeout)
        registry.unregister(self)
        with self._lock:
            queue = self._queue
            self._state = _STOPPED
        queue.close(cancel_pending)
        if wait:
            self._join(None if limit < 0 else time.monotonic() + limit)

    def _join(self, deadline: float | None) -> None:
        current = threading.current_thread()
        while True:
            with self._lock:
                threads = [t for t in self._workers.values() if t is not current]
            threads = [t for t in threads if t.is_alive()]
            if not threads:
                return
            for thread in threads:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"pool {self.name!r}: {len(threads)} workers still running")
                thread.join(left)
            with self._lock:  # crashed workers may have been replaced meanwhile
                for worker, thread in list(self._workers.items()):
                    if not thread.is_alive():
                        del self._workers[worker]

    def _after_fork_in_child(self) -> None:
        # The workers did not survive the fork: the inherited pool is dead.
        self._lock = threading.Lock()
        self._state = _STOPPED
        self._workers.clear()

    def __enter__(self) -> Pool:
        if self._state == _NEW:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == _RUNNING:
            self.stop(wait=True)

    # -- introspection -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == _RUNNING

    @property
    def queue(self) -> Any:
        """The pool's core queue (internal)."""
        if self._state != _RUNNING:
            raise PoolNotFoundError(f"pool {self.name!r} is not running")
        return self._queue

    def workers(self) -> list[threading.Thread]:
        """The pool's worker threads."""
        with self._lock:
            return [t for t in self._workers.values() if t.is_alive()]

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} {self._state} pool_size={self.options.pool_size}>"

    # -- sending work ----------------------------------------------------------------

    def perform(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` on a worker; fire and forget."""
        self.queue.push(fn, args, kwargs)

    def perform_many(self, iterable: Iterable[Item], fn: Callable[[Item], Any]) -> None:
        """Run ``fn(item)`` for each item; the batch enters the queue at once, in order."""
        self.queue.push_many(fn, _as_list(iterable))

    def async_perform(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` on a worker and return its Job."""
        return self.queue.push_async(fn, args, kwargs)

    def async_perform_many(self, iterable: Iterable[Item], fn: Callable[[Item], T]) -> list[Any]:
        """The batch form of async_perform: one Job per item, in input order."""
        return self.queue.push_async_many(fn, _as_list(iterable))  # type: ignore[no-any-return]
