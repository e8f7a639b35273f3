"""A named pool: its core queue, its worker supervisor and its job methods.

Pool.perform(...) --> core Queue.push --> worker thread: Queue.work() --> fn(...)
                                              (threads owned by WorkerSupervisor)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _backend, _config, _registry, _stats, telemetry
from ._errors import OddJobError, PoolNotFoundError
from ._stats import PoolStats
from ._supervision import WorkerSupervisor

if TYPE_CHECKING:  # scheduler imports the registry, which imports this module
    from ._core_py import Job
    from ._retry import Retry
    from ._scheduler import TimerRef, When

__all__ = ["Pool"]

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")

# States of a Pool object.
_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


def _flag(value: object, name: str) -> bool:
    """``bool(value)``, or a TypeError naming the argument if its ``__bool__`` raises."""
    try:
        return bool(value)
    except Exception as exc:
        raise TypeError(
            f"{name} must be true or false; bool() of the {type(value).__name__} given raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _retry_hook(policy: Retry) -> Callable[..., None]:
    """The core's retry_later for a pool with this policy: called on the worker after a
    failed run that is to be retried, it emits job.retry and sets the backoff timer,
    whose call puts the job back in the queue."""
    from . import _scheduler

    def retry_later(
        queue: Any, item: object, attempt: int, exc: BaseException, fn: Any, ref: int | None
    ) -> None:
        delay = policy.delay(attempt)
        telemetry._emit(
            "job.retry",
            {"attempt": attempt, "delay": delay},
            {"pool": queue.name, "function": fn, "ref": ref, "exception": exc},
            on_worker=True,
        )
        _scheduler.call_later(delay, queue.requeue, item, queue)

    return retry_later


def _forget_retry(queue: Any, job: object) -> None:
    """The core's retry_forget: a job no longer waits for its retry (cancelled, or settled
    by close()), so its backoff timer goes (it would keep the job, and the scheduling
    thread, until it was due)."""
    from . import _scheduler

    _scheduler.cancel_call(queue, job)


def _check_backend(name: str, options: _config.PoolOptions) -> _config.PoolOptions:
    """The options, if their backend can start a pool with them (ConfigError if not)."""
    if options.backend == "ray":
        from . import _ray_worker

        _ray_worker.check(name, options)
    return options


def _as_list(iterable: Iterable[Any]) -> list[Any]:
    """Materialise a batch before it is queued, so that a failing iterator queues nothing."""
    if type(iterable) is list:
        return iterable
    try:
        iterator = iter(iterable)
    except TypeError:
        raise TypeError(f"a batch must be iterable, not {type(iterable).__name__}") from None
    return list(iterator)


class Pool:
    """A named pool of workers (threads, or processes) that runs jobs in FIFO order.

    ``Pool(name, **options)`` makes the pool; ``start()`` (or ``with Pool(...)``, or
    ``oddjob.start_link``) starts and registers it under its name; ``stop()`` (or leaving
    the ``with`` block) drains what is queued and stops it. Options not given here come
    from ``configure()``, the environment and the config file, when the pool starts.

    Args:
        name: the pool's name, unique among running pools.
        pool_size: number of worker threads (default 5).
        max_restarts, max_seconds: restart intensity of the pool's worker supervisor.
        restart_on_error: a job that raises crashes its worker, which a fresh thread
            replaces (default False: the worker lives on and takes the next job).
        initializer, initargs: ``initializer(*initargs)`` runs in each worker before its
            first job (a callable or an import string ``"package.module:function"``).
        finalizer: runs in each worker as it leaves, if its initializer succeeded.
        max_queue: the most jobs queued at once (None, the default: no limit); a
            submit to a full queue waits for room (``on_full="block"``, at most
            ``block_timeout`` seconds) or raises QueueFullError (``on_full="raise"``).
        copy_context: run each job in a copy of its submitter's contextvars context
            (default True).
        rate_limit: ``(count, per)``: at most count job starts in any window of per
            seconds (a strict sliding window); workers wait for their turn asleep.
        retry: an ``oddjob.Retry``: a job raising one of its ``on`` exceptions runs
            again after a backoff (waiting on the scheduler, holding no worker), up to
            ``attempts`` runs in all; the caller sees the last outcome.
        max_queue_time: seconds a job may wait in the queue; one that waited longer when
            a worker reaches it is not run (JobExpiredError for an async job).
        backend: ``"threads"`` (default); ``"processes"``: each worker a child process
            (jobs, arguments, results and exceptions travel pickled; a worker process
            that dies fails its job with WorkerCrashedError and is replaced); or
            ``"ray"``: each job a Ray task, the pool_size slots held on the Ray cluster
            and shared by every program starting a pool of this name (no initializer
            or finalizer).
        start_method: how worker processes start: ``"spawn"`` (default),
            ``"forkserver"`` or ``"fork"``.
        job_timeout: seconds a job may run in a worker process or as a Ray task; an
            overdue job's process is killed (JobTimeoutError). Not with threads.
        max_jobs_per_worker: a worker process is replaced after that many jobs.
            Processes only.
        address: the Ray cluster, as ``ray.init`` takes it (None: a local Ray, or the
            connection the program made already). Ray only.

    Raises:
        TypeError: name is not a str.
        ConfigError: an option is unknown or its value is out of range.
    """

    def __init__(self, name: str, **options: Any) -> None:
        if type(name) is not str:
            raise TypeError(f"a pool name must be a str, not {type(name).__name__}")
        self.name = name
        self.id = f"{name}_pool"
        self._own_options = options
        # Resolved (and validated: bad options fail here, not at start()) now for repr
        # and introspection, and again at start(), which takes the configuration then.
        self.options = _config.pool_options(name, **options)
        self._lock = threading.Lock()
        self._state = _NEW
        self._queue: Any = None
        self._supervisor: WorkerSupervisor | None = None
        # The hot methods go straight to the compiled dispatcher, as oddjob.perform does
        # (a stopped pool raises PoolNotFoundError there); the defs below document them.
        self.perform = partial(_registry.dispatch.perform, self)  # type: ignore[method-assign]
        self.async_perform = partial(  # type: ignore[method-assign]
            _registry.dispatch.async_perform, self
        )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Pool:
        """Start the workers and register the pool under its name.

        Raises:
            PoolAlreadyStartedError: a pool of this name is already running.
            OddJobError: this Pool object was started before (make a new one).
            ConfigError: the initializer or finalizer names nothing importable.
            RuntimeError: the OS refused a worker thread; nothing is left running and
                the name stays free.
        """
        _registry.register(self, self._start)
        telemetry._emit("pool.start", {"pool_size": self.options.pool_size}, {"pool": self.name})
        return self

    def _start(self) -> None:
        # Called by the registry with its lock held, once the name is known to be free.
        with self._lock:
            if self._state != _NEW:
                raise OddJobError(
                    f"pool {self.name!r} was started once already; make a new Pool to restart it"
                )
            self.options = _check_backend(
                self.name, _config.pool_options(self.name, **self._own_options)
            )
            core = _backend.core
            options = self.options
            retry = options.retry
            queue = core.Queue(
                self.name,
                max_queue=options.max_queue,
                on_full=options.on_full,
                block_timeout=options.block_timeout,
                copy_context=options.copy_context,
                max_queue_time=options.max_queue_time,
                rate_limit=options.rate_limit,
                # Beyond 2**31 - 1 runs is forever in practice (the core counts in an int).
                retry_attempts=1 if retry is None else min(retry.attempts, 2**31 - 1),
                retry_on=() if retry is None else retry.on,
                retry_later=None if retry is None else _retry_hook(retry),
                retry_forget=None if retry is None else _forget_retry,
            )
            supervisor = WorkerSupervisor(self.name, queue, core, self.options)
            self._queue, self._supervisor = queue, supervisor
            try:
                supervisor.start()  # on failure it leaves nothing running
            except BaseException:
                self._state = _STOPPED
                raise
            self._state = _RUNNING

    def stop(
        self,
        *,
        wait: bool = True,
        timeout: float | timedelta | None = None,
        cancel_pending: bool = False,
    ) -> None:
        """Stop the pool: accept no more jobs, cancel its timers, run what is queued (or
        drop it with ``cancel_pending=True``), and join the workers.

        Args:
            wait: join the worker threads before returning.
            timeout: at most this many seconds to wait (None: until drained).
            cancel_pending: drop queued jobs; queued async jobs are marked cancelled.

        Raises:
            PoolNotFoundError: the pool is not running.
            TypeError, ValueError: a bad argument; the pool is left running as it was.
            TimeoutError: the workers did not finish within ``timeout`` (the pool is
                stopped all the same; its workers exit once their jobs end).
        """
        # Every argument is checked before anything changes: a call that raises here
        # leaves the pool running.
        end = _registry.deadline(timeout)
        wait = _flag(wait, "wait")
        cancel_pending = _flag(cancel_pending, "cancel_pending")
        _registry.unregister(self)
        with self._lock:
            self._state = _STOPPED
        self._queue.close(cancel_pending)
        if self._supervisor is not None:
            self._supervisor.stopping()
        try:
            if wait:
                self.join(end)
        finally:  # a join that timed out has stopped the pool all the same
            telemetry._emit("pool.stop", {}, {"pool": self.name})

    def join(self, deadline: float | None = None) -> None:
        """Wait for the workers of a stopped pool to exit (``deadline``: monotonic time)."""
        if self._supervisor is not None:
            self._supervisor.join(deadline)

    def _after_fork_in_child(self) -> None:
        # The workers did not survive the fork: the inherited pool is dead.
        self._lock = threading.Lock()
        self._state = _STOPPED
        if self._supervisor is not None:
            self._supervisor.forget_threads()

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
        """True from start() until stop(), broken or not."""
        return self._state == _RUNNING

    @property
    def broken(self) -> bool:
        """True once the workers' initializer failed too often (see PoolBrokenError):
        submits raise PoolBrokenError until the pool is stopped and started again."""
        return self._supervisor is not None and self._supervisor.broken is not None

    @property
    def queue(self) -> Any:
        """The pool's core queue (internal)."""
        if self._state != _RUNNING:
            raise PoolNotFoundError(f"pool {self.name!r} is not running")
        return self._queue

    @property
    def supervisor(self) -> WorkerSupervisor:
        """The pool's worker supervisor."""
        if self._supervisor is None:
            raise PoolNotFoundError(f"pool {self.name!r} was never started")
        return self._supervisor

    def workers(self) -> list[threading.Thread]:
        """The pool's live worker threads."""
        return [] if self._supervisor is None else self._supervisor.threads()

    def stats(self) -> PoolStats:
        """A snapshot of the pool's counters and latencies (see ``oddjob.stats``).

        Unlike ``oddjob.stats(pool)``, it also works once the pool has stopped: the
        final figures, workers still draining included.

        Raises:
            PoolNotFoundError: the pool was never started.
        """
        return _stats.snapshot(self)

    def __repr__(self) -> str:
        state = "broken" if self.broken and self.running else self._state
        return f"<Pool {self.name!r} {state} pool_size={self.options.pool_size}>"

    # -- sending work ----------------------------------------------------------------

    def perform(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` on a worker; fire and forget."""
        self.queue.push(fn, args, kwargs)

    def perform_many(self, iterable: Iterable[Item], fn: Callable[[Item], Any]) -> None:
        """Run ``fn(item)`` for each item; the batch enters the queue at once, in order."""
        self.queue.push_many(fn, _as_list(iterable))

    def async_perform(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]:
        """Run ``fn(*args, **kwargs)`` on a worker and return its Job."""
        job: Job[T] = self.queue.push_async(fn, args, kwargs)
        return job

    def async_perform_many(self, iterable: Iterable[Item], fn: Callable[[Item], T]) -> list[Job[T]]:
        """The batch form of async_perform: one Job per item, in input order."""
        jobs: list[Job[T]] = self.queue.push_async_many(fn, _as_list(iterable))
        return jobs

    # -- scheduled work --------------------------------------------------------------

    def perform_after(
        self, delay: float | timedelta, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> TimerRef:
        """Queue ``fn(*args, **kwargs)`` on this pool after ``delay`` (see oddjob.perform_after)."""
        from . import _scheduler

        return _scheduler.perform_after(delay, self, fn, *args, **kwargs)

    def perform_at(
        self, when: When, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> TimerRef:
        """Queue ``fn(*args, **kwargs)`` on this pool at ``when`` (see oddjob.perform_at)."""
        from . import _scheduler

        return _scheduler.perform_at(when, self, fn, *args, **kwargs)

    def perform_many_after(
        self, delay: float | timedelta, iterable: Iterable[Item], fn: Callable[[Item], Any]
    ) -> TimerRef:
        """One timer for the batch; it enters this pool's queue as one batch."""
        from . import _scheduler

        return _scheduler.perform_many_after(delay, self, iterable, fn)

    def perform_many_at(
        self, when: When, iterable: Iterable[Item], fn: Callable[[Item], Any]
    ) -> TimerRef:
        """One timer for the batch, firing at ``when``."""
        from . import _scheduler

        return _scheduler.perform_many_at(when, self, iterable, fn)


_registry.dispatch.pool_type = Pool  # Pool objects are looked up directly, as names are
