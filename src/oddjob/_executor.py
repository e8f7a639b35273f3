"""``oddjob.Executor``: a drop-in ``ThreadPoolExecutor`` that runs on oddjob's core.

    submit(fn, *args) --> Future() --> core Queue.push(run, (future, fn, args, kwargs))
    map(fn, *its)     --> Futures  --> core Queue.push_many(run_item, [(future, fn, args), ...])
                                            |
    worker thread: initializer(*initargs), then Queue.work(worker) --> _Runner.run:
        future.set_running_or_notify_cancel() (a cancelled future is skipped), fn(...),
        future.set_result / set_exception -- the job's exception never escapes to the worker

The class subclasses ``ThreadPoolExecutor`` for ``isinstance`` (asyncio's
``set_default_executor`` demands it) and overrides everything that touches threads:
``ThreadPoolExecutor.__init__`` is never called. What it saves per job is what makes
ThreadPoolExecutor slow: its two locks per submit, the ``_WorkItem`` object, and above all
the idle semaphore (a ``threading.Condition`` in Python) taken on every submit and given back
after every job. Here a submit creates the ``Future`` and pushes one slot to the core's ring
buffer, without a lock once all ``max_workers`` threads run; a busy worker goes from one job
to the next without waking anyone, and only an idle worker is woken. What remains is mostly
the ``Future`` itself (its ``Condition``, three lock round trips): the contract, and the
ceiling of the speed-up (``bench/executor_throughput.py`` measures both).

Semantics kept from ThreadPoolExecutor:

- Threads start lazily, by ThreadPoolExecutor's rule: a submit that no idle worker is free
  to take starts one more thread, up to ``max_workers``. So the initializer runs exactly as
  often, and a lightly used executor (asyncio's default one) keeps few threads. Threads are
  named as ThreadPoolExecutor names them, ``f"{thread_name_prefix}_{i}"``, and without a
  prefix ``ThreadPoolExecutor-N_i``, N taken from ThreadPoolExecutor's own counter, so that
  no two executors of either kind share a name.
- ``shutdown(wait, cancel_futures=...)`` closes the queue: queued jobs still run (or are
  cancelled with ``cancel_futures=True``), then the workers exit. Submitting afterwards
  raises ``RuntimeError('cannot schedule new futures after shutdown')``.
- An initializer that raises is logged (``CRITICAL`` on the ``concurrent.futures`` logger,
  like ThreadPoolExecutor) and breaks the executor: pending futures fail with
  ``BrokenThreadPool``, later submits raise it, and no further job runs.
- At interpreter exit (``threading._register_atexit``, before non-daemon threads are
  joined) every executor stops accepting work, drains its queue and has its threads joined,
  even one that was garbage-collected without ``shutdown()``; as with ThreadPoolExecutor, a
  job that never returns holds the exit up. Workers hold only a weak reference to their
  executor: collecting it without shutdown lets its threads drain the queue and exit.
- ``_max_workers``, ``_thread_name_prefix``, ``_initializer``, ``_initargs``, ``_threads``,
  ``_shutdown``, ``_broken`` (False or the message, as in CPython) and ``_shutdown_lock``
  exist as in ThreadPoolExecutor; ``_work_queue`` supports ``qsize()`` and ``empty()``.

Deviations, where ThreadPoolExecutor would hang, lose a thread or raise:

- After ``os.fork()`` the child clears the registry of threads and re-creates the locks, as
  CPython does; in addition each inherited executor gets a fresh queue, and its threads
  start again on the next submit (a ThreadPoolExecutor whose workers were idle at the fork
  never runs anything in the child). Jobs queued or running at the fork run in the parent
  only: in the child their futures are left as they were and never complete.
- Futures cancelled by ``shutdown(cancel_futures=True)`` are reported to ``wait()`` and
  ``as_completed()`` as the workers skip them; ThreadPoolExecutor never reports them.
- A worker survives an exception escaping its job wrapper (a done callback raising
  ``SystemExit``, or a future completed by someone else); it is logged and the worker goes
  on, where a ThreadPoolExecutor thread would exit for good.
- ``shutdown(wait=True)`` called from one of the executor's own jobs joins the other
  workers instead of raising "cannot join current thread".

``map`` takes ``buffersize`` (new in Python 3.14) on every version, submits an unbuffered
batch in one push, and accepts and ignores ``chunksize`` as ThreadPoolExecutor does.
"""

# Executor keeps ThreadPoolExecutor's private attributes with CPython's real types where
# typeshed's differ (_broken: False or the reason, typeshed bool; _threads: a set, typeshed
# AbstractSet), so pyright's invariance check of those overrides is off in this file.
# pyright: reportIncompatibleVariableOverride=false

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from itertools import islice
from types import ModuleType
from typing import Any, ParamSpec, TypeAlias, TypeVar

from . import _backend
from ._errors import PoolNotFoundError

__all__ = ["Executor"]

P = ParamSpec("P")
T = TypeVar("T")

# ThreadPoolExecutor's own logger: code written for it watches this one.
_log = logging.getLogger("concurrent.futures")

_BROKEN_MESSAGE = "A thread initializer failed, the thread pool is not usable anymore"
_SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"
_EXIT_MESSAGE = "cannot schedule new futures after interpreter shutdown"

# The item of one map() job: (future, fn, args).
_MapItem: TypeAlias = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]

# Process-wide state, as in concurrent.futures.thread. _global_lock guards _shutdown,
# _threads_queues and _executors, and is held across fork so the child sees them whole.
_global_lock = threading.Lock()
_shutdown = False  # the interpreter is exiting: no executor accepts work any more
# Every worker thread -> its core queue, so that exit joins threads of collected executors too.
_threads_queues: weakref.WeakKeyDictionary[threading.Thread, Any] = weakref.WeakKeyDictionary()
_executors: weakref.WeakSet[Executor] = weakref.WeakSet()
_hooks_installed = False
_forking: list[Any] = []  # the queues whose locks are held across a fork


def _default_max_workers() -> int:
    # ThreadPoolExecutor's default: enough for I/O-bound work, bounded on big machines.
    process_cpu_count: Callable[[], int | None] = getattr(os, "process_cpu_count", os.cpu_count)
    return min(32, (process_cpu_count() or os.cpu_count() or 1) + 4)


# -- process lifecycle --------------------------------------------------------------------


def _python_exit() -> None:
    """At interpreter exit: stop every executor accepting work, let each drain, join all."""
    global _shutdown
    with _global_lock:
        _shutdown = True
        queues = [executor._queue for executor in _executors]
        items = list(_threads_queues.items())
    for queue in queues:
        queue.close()
    for _thread, queue in items:
        queue.close()
    for thread, _queue in items:
        thread.join()


def _before_fork() -> None:
    # Hold every lock the child needs whole: ours, then each executor's queue.
    global _forking
    _global_lock.acquire()
    _forking = [executor._queue for executor in _executors]
    for queue in _forking:
        queue.fork_acquire()


def _after_fork_in_parent() -> None:
    global _forking
    for queue in _forking:
        queue.fork_release(False)
    _forking = []
    _global_lock.release()


def _after_fork_in_child() -> None:
    global _global_lock, _forking
    # Only the forking thread survived. Each inherited queue is closed and emptied (a worker
    # that forked from inside a job finds it so, and exits): the parent runs those jobs.
    for queue in _forking:
        queue.fork_release(True)
    _forking = []
    _global_lock = threading.Lock()
    _threads_queues.clear()
    for executor in list(_executors):
        executor._after_fork_in_child()


def _install_hooks_locked() -> None:
    """First executor: hook interpreter exit and fork (nothing happens at import time)."""
    global _hooks_installed, _shutdown
    if _hooks_installed:
        return
    _hooks_installed = True
    try:
        threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
    except RuntimeError:  # the interpreter is already exiting: accept no work
        _shutdown = True
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )


# -- the worker side ---------------------------------------------------------------------


class _Runner:
    """Runs one executor's jobs on its workers. Holds no reference to the executor, so
    that the queue's slots (which hold the runner) never keep the executor alive."""

    __slots__ = ("broken",)

    def __init__(self) -> None:
        # The BrokenThreadPool message once an initializer failed: later jobs fail with it.
        self.broken: str | None = None

    def run(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """The job of one submit(): skipped if its future was cancelled while queued."""
        if not future.set_running_or_notify_cancel():
            return
        if self.broken is not None:
            future.set_exception(BrokenThreadPool(self.broken))
            return
        try:
            result = fn(*args, **kwargs) if kwargs else fn(*args)
        except BaseException as exc:
            future.set_exception(exc)
            # exc's traceback holds this frame: let it hold no cycle back to the future,
            # nor keep the job's arguments alive.
            del future, fn, args, kwargs
        else:
            future.set_result(result)

    def run_item(self, item: _MapItem) -> None:
        """The job of one map() item: run() without keyword arguments, written out again
        rather than called, as map's batch push hands each job a single argument."""
        future, fn, args = item
        del item
        if not future.set_running_or_notify_cancel():
            return
        if self.broken is not None:
            future.set_exception(BrokenThreadPool(self.broken))
            return
        try:
            result = fn(*args)
        except BaseException as exc:
            future.set_exception(exc)
            del future, fn, args
        else:
            future.set_result(result)


def _future_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
    """The future of a queued job, from the (fn, args) the core's snapshot reports."""
    first = args[0]
    return first if isinstance(first, Future) else first[0]  # run(future, ...) or run_item


def _worker(
    executor_ref: weakref.ref[Executor],
    queue: Any,
    runner: _Runner,
    worker: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    """A worker thread: the initializer, then jobs until the queue is closed and drained."""
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _log.critical("Exception in initializer:", exc_info=True)
            executor = executor_ref()
            if executor is not None:
                executor._initializer_failed()
            else:
                runner.broken = _BROKEN_MESSAGE
                queue.close()
            del executor
            # Fall through: with the runner broken, this thread fails what is queued.
    while True:
        crash = queue.work(worker)
        if crash is None:
            return
        # A job's own exception is in its future; only the wrapper's can land here.
        exc = crash[0]
        _log.critical("Exception in worker", exc_info=(type(exc), exc, exc.__traceback__))
        del crash, exc


class _WorkQueueView:
    """What ``ThreadPoolExecutor._work_queue`` offers to code that watches it."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def qsize(self) -> int:
        """Jobs queued and not yet taken by a worker (cancelled ones included)."""
        return len(self._queue)

    def empty(self) -> bool:
        return len(self._queue) == 0


# -- the executor ------------------------------------------------------------------------


class Executor(ThreadPoolExecutor):
    """A ``concurrent.futures.ThreadPoolExecutor`` that runs on oddjob's core.

    Replacing ``ThreadPoolExecutor(...)`` with ``oddjob.Executor(...)`` changes nothing but
    speed: ``submit`` returns ``concurrent.futures.Future``s, ``map``, ``shutdown`` and the
    ``with`` statement behave the same, and asyncio accepts it as its default executor.
    Executors are anonymous: they are not named pools and ``whereis`` does not see them.

    Args:
        max_workers: the most threads it runs; default ``min(32, cpu count + 4)``.
        thread_name_prefix: names its threads ``f"{prefix}_{i}"``; without it they are
            ``ThreadPoolExecutor-N_i``, as ThreadPoolExecutor names its own.
        initializer: called with ``*initargs`` in each worker thread before its first job.
        initargs: the initializer's arguments.
        copy_context: run each job in a copy of the submitter's contextvars context, as
            oddjob's pools do (keyword only; default False: ThreadPoolExecutor's
            behaviour, the job runs in the worker thread's own context).

    Raises:
        ValueError: max_workers is not greater than 0.
        TypeError: initializer is neither None nor callable.
    """

    _queue: Any  # the core Queue

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        copy_context: bool = False,
    ) -> None:
        if type(copy_context) is not bool:
            raise TypeError(f"copy_context must be True or False, not {copy_context!r}")
        self._copy_context = copy_context
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        # ThreadPoolExecutor's default, to the letter: tools filter threads on these names.
        if not thread_name_prefix:  # numbered by ThreadPoolExecutor's own class counter
            thread_name_prefix = f"ThreadPoolExecutor-{self._counter()}"  # type: ignore[attr-defined]
        self._thread_name_prefix = thread_name_prefix
        self._initializer = initializer  # type: ignore[assignment]  # typeshed: -> None
        self._initargs = initargs
        self._shutdown = False
        # False, or the reason, as in ThreadPoolExecutor (typeshed says bool).
        self._broken: str | bool = False  # type: ignore[assignment]
        self._shutdown_lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._core: ModuleType = _backend.core
        self._runner = _Runner()
        self._run = self._runner.run
        self._run_item = self._runner.run_item
        self._new_queue()
        with _global_lock:
            _install_hooks_locked()
            _executors.add(self)
            if _shutdown:
                self._queue.close()

    def _new_queue(self) -> None:
        queue = self._queue = self._core.Queue(
            self._thread_name_prefix, copy_context=self._copy_context
        )
        # Bound methods looked up once: submit() is the hot path.
        self._push = queue.push
        self._push_many = queue.push_many
        self._idle_count: Callable[[], int] = queue.idle_count
        self._queued: Callable[[], int] = queue.__len__
        self._work_queue = _WorkQueueView(queue)  # type: ignore[assignment]
        # The workers' weak reference: collecting the executor closes the queue, and the
        # workers drain it and exit (the callback holds the queue, not the executor).
        self._self_ref = weakref.ref(self, lambda _ref: queue.close())

    # -- sending work ----------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return its Future.

        Raises:
            RuntimeError: the executor is shut down, or the interpreter is exiting.
            BrokenThreadPool: an initializer failed.
        """
        future: Future[T] = Future()
        job = (future, fn, args, kwargs)
        try:
            if len(self._threads) >= self._max_workers:  # all started: nothing to decide
                self._push(self._run, job, None)
                return future
            with self._shutdown_lock:  # see _spare()
                spare = self._spare()
                self._push(self._run, job, None)
        except PoolNotFoundError:  # the core queue is closed
            raise self._refusal() from None
        if spare <= 0:
            self._start_threads(1)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like ``builtins.map(fn, *iterables)``, run on the executor; results in order.

        Every input is submitted at once, unless ``buffersize`` is given: then at most that
        many jobs are in flight and the inputs are read as the results are consumed (an
        infinite iterator is fine). ``chunksize`` is accepted and ignored.

        Raises:
            TypeError: buffersize is neither None nor an int.
            ValueError: buffersize is less than 1.
            TimeoutError (on iteration): a result is not ready ``timeout`` seconds after
                the call to map.
            Exception (on iteration): the exception of ``fn`` for that item.
        """
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        inputs = zip(*iterables, strict=False)
        if buffersize is None:
            if type(self).submit is Executor.submit:
                futures = self._submit_batch(fn, list(inputs))
            else:  # a subclass's own submit sees every job, as ThreadPoolExecutor's map does
                futures = deque(self.submit(fn, *args) for args in inputs)
            return _results(futures, end_time)
        futures = deque(self.submit(fn, *args) for args in islice(inputs, buffersize))
        # Only a weak reference: the iterator must not keep the executor alive (as in 3.14).
        executor_ref = weakref.ref(self)

        def refill() -> Future[T] | None:
            executor = executor_ref()
            args = None if executor is None else next(inputs, None)
            return None if executor is None or args is None else executor.submit(fn, *args)

        return _results(futures, end_time, refill)

    def _submit_batch(
        self, fn: Callable[..., T], inputs: list[tuple[Any, ...]]
    ) -> deque[Future[T]]:
        futures: deque[Future[T]] = deque(Future() for _ in inputs)
        jobs = list(zip(futures, itertools.repeat(fn), inputs, strict=False))
        try:
            with self._shutdown_lock:
                spare = self._spare()
                self._push_many(self._run_item, jobs)
        except PoolNotFoundError:
            raise self._refusal() from None
        # As many more threads as ThreadPoolExecutor's one submit per item would start.
        wanted = len(jobs) - max(spare, 0)
        if wanted > 0 and len(self._threads) < self._max_workers:
            self._start_threads(wanted)
        return futures

    def _spare(self) -> int:
        """Idle workers not spoken for by the jobs already queued: a job pushed now starts
        at once if this is positive, else it needs a new thread (the rule by which
        ThreadPoolExecutor starts threads, with its idle semaphore). Called with
        _shutdown_lock held, so that two submitters never count on the same idle worker."""
        return self._idle_count() - self._queued()

    def _refusal(self) -> Exception:
        """Why the queue is closed, as ThreadPoolExecutor.submit words it."""
        if self._broken:
            return BrokenThreadPool(self._broken)
        if self._shutdown or not _shutdown:
            return RuntimeError(_SHUTDOWN_MESSAGE)
        return RuntimeError(_EXIT_MESSAGE)

    # -- threads -----------------------------------------------------------------------

    def _adjust_thread_count(self) -> None:
        """Start one more worker thread, unless ``max_workers`` are running already."""
        self._start_threads(1)

    def _start_threads(self, wanted: int) -> None:
        """Start up to ``wanted`` more worker threads, within ``max_workers``."""
        with self._shutdown_lock, _global_lock:
            count = min(wanted, self._max_workers - len(self._threads))
            for _ in range(count):
                name = f"{self._thread_name_prefix}_{len(self._threads)}"
                worker = self._core.Worker(name)
                thread = threading.Thread(
                    name=name,
                    target=_worker,
                    args=(
                        self._self_ref,
                        self._queue,
                        self._runner,
                        worker,
                        self._initializer,
                        self._initargs,
                    ),
                )
                worker.thread = thread
                thread.start()
                self._threads.add(thread)
                _threads_queues[thread] = self._queue

    def _initializer_failed(self) -> None:
        """A worker's initializer raised: fail what is queued and refuse new work."""
        with self._shutdown_lock:
            self._broken = _BROKEN_MESSAGE
            self._runner.broken = _BROKEN_MESSAGE
        # Closed after _broken is set, so that a refused submit reports the breakage.
        # Every worker, the failing one included, drains the queue failing each job.
        self._queue.close()

    # -- lifecycle ------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more work; queued jobs still run unless ``cancel_futures``.

        Args:
            wait: return once every worker thread has exited.
            cancel_futures: cancel the futures of the jobs that have not started.
        """
        with self._shutdown_lock:
            self._shutdown = True
            queue = self._queue
        queue.close()
        if cancel_futures:
            # Closed first: nothing can join the queue while its futures are cancelled.
            # A job a worker takes meanwhile runs; the rest are skipped when taken.
            for fn, args, _kwargs, _job in queue.snapshot():
                _future_of(fn, args).cancel()
        if wait:
            self._join_threads()

    def _join_threads(self) -> None:
        current = threading.current_thread()
        while True:
            # A submit that raced shutdown may have started a thread (to drain its job).
            with self._shutdown_lock:
                threads = [t for t in self._threads if t is not current and t.is_alive()]
            if not threads:
                return
            for thread in threads:
                thread.join()

    def _after_fork_in_child(self) -> None:
        # The worker threads did not survive the fork; what they held is free again.
        self._shutdown_lock = threading.Lock()
        self._threads = set()
        self._new_queue()
        if self._shutdown or self._broken:
            self._queue.close()


def _results(
    futures: deque[Future[T]],
    end_time: float | None,
    refill: Callable[[], Future[T] | None] | None = None,
) -> Iterator[T]:
    """map()'s result iterator: results in input order; with ``refill``, one more job is
    submitted as each result is taken, so the number in flight stays bounded.

    It keeps no reference to a result it has yielded, nor to its future (as in
    ThreadPoolExecutor): _next_result() hands the result straight to the yield, so no
    variable of this suspended frame holds it once the caller has dropped it.

    On a timeout, an error or an early close, the futures not yet yielded are cancelled."""
    try:
        while futures:
            yield _next_result(futures, end_time, refill)
    finally:
        for future in futures:
            future.cancel()


def _next_result(
    futures: deque[Future[T]],
    end_time: float | None,
    refill: Callable[[], Future[T] | None] | None,
) -> T:
    """Take the next future off ``futures`` and return its result, cancelling the future
    if waiting for it fails; with ``refill``, one more job is submitted once it is in."""
    future = futures.popleft()
    try:
        result = future.result(None if end_time is None else end_time - time.monotonic())
    except BaseException:
        future.cancel()
        raise
    finally:
        del future
    if refill is not None:
        more = refill()
        if more is not None:
            futures.append(more)
    return result
