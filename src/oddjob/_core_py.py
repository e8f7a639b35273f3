"""oddjob's pure-Python core: the twin of the compiled ``_core``, with the same names and behaviour.

Data flow::

    push*() --lock--> deque of slots --lock--> Queue.work(worker) --> fn(...)
        \\-- releases the wake lock of the most recently idled Worker
    async jobs: Job <-- result/exception --> Waiters (blocked on their locks) and done callbacks

One ``threading.Lock`` per Queue guards its deque, its stack of idle workers and the state
of its Jobs. A thread that has to block does so on a lock of its own, held from birth and
released once per wake-up: an idle Worker on its wake lock, a thread waiting for a Job on
its Waiter. Nothing polls or sleeps.

A slot is a plain tuple ``(fn, args, kwargs, job, one_arg, context, stamp, runs)``: kwargs is
None when there are none; one_arg marks a push_many item stored as is in place of an args
tuple, called as ``fn(item)``; job is the Job of an async job (whose fn, args and kwargs
are the Job's own) and None for fire-and-forget work; context is the submitter's
contextvars.Context, each job running in a copy of it, or None (the worker's context);
stamp is time.monotonic_ns() when it was queued if the job is timed for the stats, else 0;
runs counts a fire-and-forget retry's earlier runs (an async job counts on its Job).

Unlike C, Python runs signal handlers between bytecodes, so the waits of the main thread
are interruptible: Ctrl-C there raises KeyboardInterrupt out of Job.result() (and out of
work(), whose idle wait the compiled core does not interrupt). An interrupted wait cannot
tell whether it consumed its release, so the lock it waited on is retired and a fresh one
takes its place. As in any pure-Python code, an exception from a signal handler that lands
inside a critical section itself is not survivable in general.
"""

from __future__ import annotations

import _thread
import contextvars
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import CancelledError
from datetime import timedelta
from itertools import repeat
from time import monotonic, monotonic_ns
from types import TracebackType
from typing import Any, Final, Generic, TypeAlias, TypeVar, final

from oddjob._errors import (
    JobExpiredError,
    PoolBrokenError,
    PoolNotFoundError,
    QueueFullError,
    _NoRoom,
)
from oddjob._failures import describe_call, log_job_error
from oddjob._histogram import Histogram, Summary

__all__ = [
    "CORE_EVENTS",
    "IMPLEMENTATION",
    "Dispatcher",
    "Histogram",
    "Job",
    "Owner",
    "Queue",
    "RoomTicket",
    "Waiter",
    "Worker",
    "current_owner",
    "seconds",
    "set_handlers",
    "wait_many",
]

_T = TypeVar("_T")

IMPLEMENTATION: Final = "python"

# Refs are (queue serial << _REF_SHIFT) | job number: unique across pools and time.
_REF_SHIFT: Final = 40

# Job states; done() is state >= _FINISHED.
_PENDING: Final = 0
_RUNNING: Final = 1
_FINISHED: Final = 2
_CANCELLED: Final = 3
_STATE_NAMES: Final = ("pending", "running", "finished", "cancelled")

_serials = itertools.count(1)
_serials_lock = threading.Lock()  # next() on a shared count: atomic only under the GIL
_log = logging.getLogger("oddjob")
_REPLACING: Final = "; replacing its worker"


def _attempts_note(runs: int) -> str:
    return "" if runs <= 1 else f" on attempt {runs}, its last"


# ----------------------------------------------------------------------------
# Telemetry: the events the core emits (oddjob.telemetry attaches the handlers)

_EVENT_NAMES: Final = (
    "job.start",
    "job.stop",
    "job.exception",
    "job.cancelled",
    "job.dropped",
    "queue.full",
    "job.expired",
)
(_JOB_START, _JOB_STOP, _JOB_EXCEPTION, _JOB_CANCELLED, _JOB_DROPPED, _QUEUE_FULL, _JOB_EXPIRED) = (
    range(7)
)
CORE_EVENTS: Final = frozenset(_EVENT_NAMES)
# Events that need the job timed (its queue wait and duration).
_TIMED_EVENTS: Final = (1 << _JOB_START) | (1 << _JOB_STOP) | (1 << _JOB_EXCEPTION)

_Handlers: TypeAlias = tuple[
    tuple[object, Callable[[str, dict[str, Any], dict[str, Any]], object]], ...
]
# Bit i set: event i has handlers; with none attached, a job pays one test of this.
_event_mask = 0
# Per event index, its (handler_id, handler) pairs or None; replaced whole.
_event_handlers: tuple[_Handlers | None, ...] = (None,) * len(_EVENT_NAMES)
_on_handler_error: Callable[[object, str, BaseException], object] | None = None


def set_handlers(
    table: dict[str, _Handlers], on_error: Callable[[object, str, BaseException], object]
) -> None:
    """Install telemetry handlers: table maps event names to tuples of
    (handler_id, handler); on_error(handler_id, event, exc) is called when one raises."""
    global _event_mask, _event_handlers, _on_handler_error
    if not callable(on_error):
        raise TypeError(f"on_error must be callable, not {type(on_error).__name__}")
    handlers: list[_Handlers | None] = [None] * len(_EVENT_NAMES)
    mask = 0
    for i, name in enumerate(_EVENT_NAMES):
        entries = tuple(table.get(name, ()))
        for entry in entries:
            if type(entry) is not tuple or len(entry) != 2 or not callable(entry[1]):
                raise TypeError(f"{name}: handlers must be (handler_id, callable) pairs")
        if entries:
            handlers[i] = entries
            mask |= 1 << i
    _event_handlers = tuple(handlers)
    _on_handler_error = on_error
    _event_mask = mask


def _emit(
    event: int, measurements: dict[str, Any], metadata: dict[str, Any], catch_all: bool
) -> None:
    """Call event's handlers. One that raises is reported to oddjob.telemetry (which
    detaches it); on a worker (catch_all) even a BaseException must not lose the job."""
    handlers = _event_handlers[event]
    if handlers is None:
        return  # detached meanwhile
    name = _EVENT_NAMES[event]
    for handler_id, handler in handlers:
        try:
            handler(name, measurements, metadata)
        except BaseException as exc:
            if not catch_all and not isinstance(exc, Exception):
                raise
            on_error = _on_handler_error
            try:
                if on_error is not None:
                    on_error(handler_id, name, exc)
            except Exception:
                pass  # telemetry's own report failed (out of memory): the job goes on


def _seconds_or_none(ns: int) -> float | None:
    return ns / 1e9 if ns >= 0 else None


def _job_event(
    event: int,
    pool: str,
    fn: object,
    ref: int | None,
    wait_ns: int = -1,
    run_ns: int = -1,
    exc: BaseException | None = None,
) -> None:
    metadata: dict[str, Any] = {"pool": pool, "function": fn, "ref": ref}
    measurements: dict[str, Any]
    if event in (_JOB_START, _JOB_EXPIRED):
        measurements = {"queue_wait": _seconds_or_none(wait_ns)}
    elif event in (_JOB_STOP, _JOB_EXCEPTION):
        measurements = {
            "duration": _seconds_or_none(run_ns),
            "queue_wait": _seconds_or_none(wait_ns),
        }
        if exc is not None:
            metadata["exception"] = exc
    else:
        measurements = {}
    # On a worker (every job event but job.cancelled) even a BaseException from a
    # handler must not lose the worker.
    _emit(event, measurements, metadata, event != _JOB_CANCELLED)


# Stats: how a finished job is counted (Queue._fold).
_COMPLETED: Final = 1
_FAILED: Final = 2
_RETRIED: Final = 3  # the run failed and the job waits for another
# The largest run time (ns) one sample adds to the estimate that sets how many jobs are
# timed (see _sample_mask_for): above it, every job is timed anyway.
_RUN_SAMPLE_CAP: Final = 8000
# Queue length from which a push's queue wait is sampled at most one in 16 (see Queue._stamp).
_DEEP_QUEUE: Final = 16


def _sample_mask_for(run_ns: int) -> int:
    # As the compiled core: time every job that runs for a couple of microseconds or
    # more, fewer of the shorter ones (timing a no-op job would cost more than the job).
    if run_ns >= 2000:
        return 0
    if run_ns >= 1000:
        return 1
    if run_ns >= 500:
        return 3
    if run_ns >= 200:
        return 15
    return 63


# ----------------------------------------------------------------------------
# Helpers


def seconds(timeout: float | timedelta | None, what: str = "timeout") -> float:
    """Validate a timeout: None means forever (-1.0); seconds or timedelta; not negative.

    A timeout longer than the platform can wait (threading.TIMEOUT_MAX, inf, an int
    beyond float range) means forever too, never OverflowError."""
    value: float
    if timeout is None:
        return -1.0
    if isinstance(timeout, timedelta):
        value = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        try:
            value = float(timeout)
        except OverflowError:  # an int beyond float range
            return -1.0
    else:
        raise TypeError(
            f"{what} must be a number of seconds, a timedelta or None, not {type(timeout).__name__}"
        )
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{what} must not be negative, got {timeout!r}")
    if value >= threading.TIMEOUT_MAX:
        return -1.0
    return value


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")


def _check_args(args: object, kwargs: object) -> None:
    # Exact types, like the compiled core's typed arguments. None is refused for args
    # here: such a job could only crash the worker that took it.
    if type(args) is not tuple:
        raise _bad_argument("args", "tuple", args)
    if kwargs is not None and type(kwargs) is not dict:
        raise _bad_argument("kwargs", "dict", kwargs)


def _check_worker(worker: object) -> None:
    if not isinstance(worker, Worker):
        raise _bad_argument("worker", f"{__name__}.Worker", worker)


def _bad_argument(name: str, expected: str, value: object) -> TypeError:
    # Worded like the compiled core's check of a typed argument.
    return TypeError(
        f"Argument {name!r} has incorrect type (expected {expected}, got {type(value).__name__})"
    )


def _held_lock() -> _thread.LockType:
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


# ----------------------------------------------------------------------------
# Owners: a job's link to the thread that created it


@final
class Owner:
    """Stands for one thread: alive until that thread's thread-locals are torn down."""

    __slots__ = ("_alive",)

    def __init__(self) -> None:
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive


@final
class _OwnerGuard:
    # Lives in its thread's thread-locals, which are cleared when the thread ends.

    __slots__ = ("_owner",)

    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def __del__(self) -> None:
        self._owner._alive = False


class _ThreadState(threading.local):
    # Per-thread attributes; reading one not yet set raises AttributeError.
    owner: Owner
    owner_guard: _OwnerGuard
    waiter: Waiter
    worker_of: Queue  # on a worker thread: its queue


_locals = _ThreadState()


def current_owner() -> Owner:
    """The Owner token of the calling thread (alive until the thread ends)."""
    try:
        return _locals.owner
    except AttributeError:
        pass
    owner = Owner()
    _locals.owner_guard = _OwnerGuard(owner)
    _locals.owner = owner
    return owner


# ----------------------------------------------------------------------------
# Waiters: what a thread blocks on while a job finishes


@final
class Waiter:
    """A binary semaphore one thread blocks on while a job finishes."""

    __slots__ = ("in_use", "lock")

    def __init__(self) -> None:
        # Held from birth: block() waits until a finishing job releases it.
        self.lock = _held_lock()
        self.in_use = False

    def block(self, timeout: float) -> bool:
        """Wait for the release: True if released, False on timeout (timeout < 0: forever).

        On the main thread, signal handlers run during the wait and a raising one
        (Ctrl-C) propagates its exception."""
        if timeout < 0:
            return self.lock.acquire()
        deadline = monotonic() + timeout
        # acquire() resumes by itself after signal handlers; the loop only splits waits
        # longer than the platform allows into several.
        while not self.lock.acquire(timeout=min(timeout, threading.TIMEOUT_MAX)):
            timeout = deadline - monotonic()
            if timeout <= 0:
                return False
        return True

    def consume(self) -> None:
        """Take a release that is already on its way (the job finished)."""
        self.lock.acquire()


def _get_waiter() -> Waiter:
    try:
        waiter = _locals.waiter
    except AttributeError:
        waiter = _locals.waiter = Waiter()
    if waiter.in_use:  # re-entered from a signal handler: use a fresh one
        waiter = Waiter()
    waiter.in_use = True
    return waiter


def _discard_waiter(waiter: Waiter) -> None:
    # Its wait was interrupted after the job took it: whether its release has been
    # consumed is unknown, so it must never be waited on again.
    if getattr(_locals, "waiter", None) is waiter:
        del _locals.waiter


# ----------------------------------------------------------------------------
# Room tickets: submitters waiting for room in a bounded queue


@final
class RoomTicket:
    """A place in a bounded queue's line of submitters waiting for room.

    oddjob.aio makes one with a wake callable and passes it to a push; a push that
    finds no room raises _NoRoom with the ticket in line, and wake() is called (on
    whichever thread freed the room, without the queue's lock) once the push may fit:
    the submitter pushes again with the same ticket, or gives up with withdraw().
    Blocked threads get one inside the core, with a lock instead of wake."""

    __slots__ = ("_lock", "_n", "_queued", "_signalled", "_wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        _check_callable(wake)
        self._wake: Callable[[], object] | None = wake
        self._lock: _thread.LockType | None = None
        self._n = 0
        self._queued = False
        self._signalled = False

    @property
    def waiting(self) -> bool:
        """True while in a queue's line."""
        return self._queued

    def _fire(self) -> None:
        if self._lock is not None:
            if self._lock.locked():  # a fresh lock per blocked wait: never released twice
                self._lock.release()
        elif self._wake is not None:
            try:
                self._wake()
            except Exception:
                _log.exception("room ticket wake-up %r raised", self._wake)


def _check_context(context: object) -> None:
    if context is not None and not isinstance(context, contextvars.Context):
        raise TypeError(f"context must be a contextvars.Context, not {type(context).__name__}")


# ----------------------------------------------------------------------------
# Workers


@final
class Worker:
    """The core's side of one worker thread: its wake lock and busy flag."""

    __slots__ = ("_busy", "_job", "_jobs_run", "_retired", "_wake", "name", "thread")

    def __init__(self, name: object = None) -> None:
        # Held except while a wake-up is on its way: an idle worker blocks acquiring it.
        # Whoever takes the worker off the idle stack releases it, exactly once.
        self._wake = _held_lock()
        self._busy = False
        self._retired = False
        self._job: Job[Any] | None = None  # the async job it is running
        self._jobs_run = 0  # jobs it has run (written by its own thread only)
        self.thread: Any = None
        self.name: Any = name

    @property
    def busy(self) -> bool:
        """True from taking a job until the worker next finds the queue empty."""
        return self._busy

    @property
    def retired(self) -> bool:
        return self._retired

    @property
    def jobs_run(self) -> int:
        """Jobs this worker has run, the one it is running now included."""
        return self._jobs_run

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} {'busy' if self._busy else 'idle'}>"


# ----------------------------------------------------------------------------
# Jobs


@final
class Job(Generic[_T]):
    """Handle of an async job: its result slot, cancel, callbacks and awaiting."""

    __slots__ = (
        "_args",
        "_attempts",
        "_exception",
        "_function",
        "_kwargs",
        "_listeners",
        "_owner",
        "_owner_token",
        "_pool",
        "_queue",
        "_ref",
        "_result",
        "_retrieved",
        "_state",
        "_tb",
    )

    __oddjob_job__ = True

    _pool: str
    _function: Callable[..., _T]
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any] | None
    _owner: int
    _owner_token: Owner
    _ref: int
    _queue: Queue
    _state: int
    _result: _T  # set only once the job has succeeded
    _exception: BaseException | None
    _tb: TracebackType | None  # the exception's own traceback, restored on every re-raise
    _listeners: list[Waiter | Callable[[Job[_T]], object]] | None  # None until there is one
    _retrieved: bool  # its outcome was read (else a failure is logged at collection)
    _attempts: int  # runs started so far (retries included)

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("Job objects are created by async_perform, not directly")

    @property
    def attempts(self) -> int:
        """How many times the job has started (a retry runs it again)."""
        return self._attempts

    @property
    def ref(self) -> int:
        return getattr(self, "_ref", 0)  # 0 for a Job never initialised, as compiled

    @property
    def pool(self) -> str:
        return self._pool

    @property
    def function(self) -> Callable[..., _T]:
        return self._function

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        return {} if self._kwargs is None else self._kwargs

    @property
    def owner(self) -> int:
        return self._owner

    @property
    def async_(self) -> bool:
        return True

    def done(self) -> bool:
        return self._state >= _FINISHED

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return self._state == _RUNNING

    def cancel(self) -> bool:
        """Cancel the job if it is still queued; True if it is (now) cancelled."""
        return self._cancel(self._q(), True)

    def _cancel(self, queue: Queue, queued: bool) -> bool:
        # queued: its slot is still in the deque (a worker skips it later), rather than
        # taken out by close().
        listeners = None
        now = was_retrying = False
        slot = None
        with queue._lock:
            if self._state == _PENDING:
                self._state = _CANCELLED
                listeners, self._listeners = self._listeners, None
                queue._cancelled += 1
                if queue._retrying and self in queue._retrying:
                    # Waiting out a retry's backoff, not queued: its timer finds it gone.
                    slot = queue._retrying.pop(self)
                    was_retrying = True
                elif queued:
                    queue._cancelled_waiting += 1
                now = True
            elif self._state != _CANCELLED:
                return False
        del slot  # its references go outside the lock
        if was_retrying:
            queue._wake_if_drained()
            queue._forget_retry(self)
        escaped = _notify(self, listeners) if listeners is not None else None
        # After its waiters and callbacks are released: a handler raising SystemExit &
        # co must not leave them waiting.
        if now and _event_mask & (1 << _JOB_CANCELLED):
            _job_event(_JOB_CANCELLED, self._pool, self._function, self._ref)
        if escaped is not None:
            raise escaped
        return True

    def result(self, timeout: float | timedelta | None = None) -> _T:
        """Wait for the job (timeout seconds; None waits forever) and return its result.

        Re-raises the job's exception; TimeoutError if it is not done in time (the
        job goes on and can be awaited again); CancelledError if it was cancelled."""
        if not self._wait(timeout):
            raise TimeoutError(f"job {self._ref} did not finish within {timeout} seconds")
        try:
            return self._outcome()
        finally:
            del self  # see _outcome

    def exception(self, timeout: float | timedelta | None = None) -> BaseException | None:
        """Wait like result(), then return the job's exception (None if it succeeded)."""
        if not self._wait(timeout):
            raise TimeoutError(f"job {self._ref} did not finish within {timeout} seconds")
        if self._state == _CANCELLED:
            raise CancelledError()
        self._retrieved = True
        return self._exception

    def _failed(self) -> bool:
        """Done, and raised or was cancelled (internal: the exception is not marked
        retrieved by looking)."""
        state = self._state
        return state == _CANCELLED or (state == _FINISHED and self._exception is not None)

    def add_done_callback(self, fn: Callable[[Job[_T]], object]) -> None:
        """Call fn(job) when the job is done (now, if it already is)."""
        _check_callable(fn)
        with self._q()._lock:
            if self._state < _FINISHED:
                if self._listeners is None:
                    self._listeners = [fn]
                else:
                    self._listeners.append(fn)
                return
        try:
            fn(self)
        except Exception:
            _log.exception("done callback %r of %r raised", fn, self)

    def __await__(self) -> Generator[Any, None, _T]:
        from oddjob._aio import await_job

        return await_job(self).__await__()

    def __del__(self) -> None:
        # As asyncio does for tasks: a failure nobody read is logged, not lost.
        exc = getattr(self, "_exception", None)
        if exc is not None and not self._retrieved and self._state == _FINISHED:
            _log.error(  # the repr, not self: the record must not keep the Job alive
                "Job exception was never retrieved: %s",
                repr(self),
                exc_info=(type(exc), exc, self._tb),
            )

    def __repr__(self) -> str:
        name = getattr(self._function, "__qualname__", None) or repr(self._function)
        return f"<Job ref={self._ref} pool={self._pool!r} fn={name} {_STATE_NAMES[self._state]}>"

    def _q(self) -> Queue:
        # A Job made by Job.__new__(Job) has no queue: say so, as the compiled core does.
        try:
            return self._queue
        except AttributeError:
            raise TypeError(
                "this Job was never initialised: Jobs come from async_perform"
            ) from None

    def _outcome(self) -> _T:
        self._retrieved = True
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._exception is not None:
            try:
                # From its own traceback each time, so re-reading never grows it.
                raise self._exception.with_traceback(self._tb)
            finally:
                # The exception's traceback keeps this frame alive: no cycle back to the job.
                del self
        return self._result

    def _wait(self, timeout: float | timedelta | None) -> bool:
        """True once the job is done, False if the timeout ran out first."""
        t = seconds(timeout)
        queue = self._q()
        if self._state >= _FINISHED:
            return True
        if t == 0.0:
            return False
        waiter = _get_waiter()
        with queue._lock:
            finished = self._state >= _FINISHED
            if not finished:
                if self._listeners is None:
                    self._listeners = [waiter]
                else:
                    self._listeners.append(waiter)
        if finished:
            waiter.in_use = False
            return True
        try:
            released = waiter.block(t)
        except BaseException:
            self._unwait(waiter, interrupted=True)
            raise
        return released or not self._unwait(waiter)

    def _unwait(self, waiter: Waiter, *, interrupted: bool = False) -> bool:
        """Withdraw a waiter that stopped waiting: True if withdrawn before the job finished.

        Otherwise the finishing thread has taken it and releases it: that release is
        consumed here (it is guaranteed to come), or, after an interrupted wait that may
        already have consumed it, the waiter is discarded."""
        removed = False
        with self._queue._lock:
            listeners = self._listeners
            if listeners is not None:
                for i, listener in enumerate(listeners):
                    if listener is waiter:
                        del listeners[i]
                        removed = True
                        break
        if not removed:
            if interrupted:
                _discard_waiter(waiter)
                return False
            try:
                waiter.consume()
            except BaseException:
                _discard_waiter(waiter)
                raise
        waiter.in_use = False
        return removed


def _notify(
    job: Job[_T], listeners: list[Waiter | Callable[[Job[_T]], object]]
) -> BaseException | None:
    """Release every waiter before any callback runs (a slow callback must not hold them
    up), then run the callbacks. An Exception from a callback is logged; a BaseException
    (SystemExit, KeyboardInterrupt) is returned once every callback has run, for the
    caller to raise or report."""
    escaped: BaseException | None = None
    for listener in listeners:
        if isinstance(listener, Waiter):
            listener.lock.release()
    for listener in listeners:
        if not isinstance(listener, Waiter):
            try:
                listener(job)
            except Exception:
                _log.exception("done callback %r of %r raised", listener, job)
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
    return escaped


def wait_many(jobs: Iterable[Job[Any]], timeout: float | timedelta | None = 5.0) -> list[Any]:
    """Results of jobs in their order within one overall deadline.

    Raises the first failure seen (a job already failed when the call starts wins,
    then in order); TimeoutError leaves every job collectable later."""
    t = seconds(timeout)
    deadline = monotonic() + t if t >= 0 else 0.0
    seq = list(jobs)
    n = len(seq)
    for i, item in enumerate(seq):
        if type(item) is Job:
            if item._state == _FINISHED and item._exception is not None:
                item._outcome()
        elif not getattr(type(item), "__oddjob_job__", False):
            raise TypeError(f"await_many takes Jobs, got {type(item).__name__} at index {i}")
    results: list[Any] = [None] * n
    for i, item in enumerate(seq):
        left = None if t < 0 else max(deadline - monotonic(), 0.0)
        if type(item) is Job:
            if not item._wait(left):
                raise TimeoutError(
                    f"await_many: {n - i} of {n} jobs not done within {timeout} seconds"
                )
            results[i] = item._outcome()
        else:  # a Job of the other core implementation
            results[i] = item.result(left)
    return results


# ----------------------------------------------------------------------------
# The queue

# (fn, args, kwargs, job, one_arg, context, stamp, runs): see the module docstring.
_Slot: TypeAlias = tuple[
    Callable[..., Any],
    Any,
    dict[str, Any] | None,
    Job[Any] | None,
    bool,
    contextvars.Context | None,
    int,
    int,
]
_Crash: TypeAlias = tuple[BaseException, Callable[..., Any], bool]
_Queued: TypeAlias = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Job[Any] | None]


def _without_this_frame(exc: BaseException) -> BaseException:
    # The traceback of a job's exception starts at Queue._run_job, where it was caught: drop
    # that frame, so that the traceback shows the job alone (as the compiled core's does)
    # and holds nothing of the worker loop's state.
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None and tb.tb_frame.f_code is _WORK_CODE:
        exc.__traceback__ = tb.tb_next
    return exc


def _count_plain(queue: Queue, plain: int) -> None:
    # Fire-and-forget jobs dropped by close() have no Job to count them: cancelled, or
    # failed with the pool.
    with queue._lock:
        if queue._broken is not None:
            queue._failed += plain
        else:
            queue._cancelled += plain


def _drop(queue: Queue, taken: list[_Slot]) -> int:
    # Without the lock: settle the dropped async jobs (their callbacks run here):
    # cancelled, or failed with PoolBrokenError once the queue is broken. A done callback
    # raising SystemExit or the like must not leave the rest pending for ever.
    # Returns how many were dropped: async jobs already cancelled do not count.
    error: BaseException | None = None
    dropped = plain = 0
    tell = _event_mask & (1 << _JOB_CANCELLED) and queue._broken is None
    for fn, _args, _kwargs, job, _one_arg, _context, _stamp, _runs in taken:
        if job is None:
            plain += 1
            try:
                if tell:
                    _job_event(_JOB_CANCELLED, queue._name, fn, None)
            except BaseException as exc:
                if error is None:
                    error = exc
            continue
        try:
            if job._state != _PENDING:
                continue
            if queue._broken is not None:
                queue._fail(job, _closed_error(queue), False)
                dropped += 1
            elif job._cancel(queue, False):
                dropped += 1
        except BaseException as exc:
            dropped += 1
            if error is None:
                error = exc
    _count_plain(queue, plain)
    dropped += plain
    if error is not None:
        raise error
    return dropped


@final
class _Retrying:
    """Stands for a fire-and-forget job waiting out its retry backoff (internal; an
    async job waits as its Job). Hashed by identity."""

    __slots__ = ("error", "function")

    def __init__(self, function: Callable[..., Any], error: BaseException) -> None:
        self.function = function
        self.error = error  # the last run's exception, its traceback dropped


def _closed_error(queue: Queue) -> PoolNotFoundError | PoolBrokenError:
    """What a push to a closed queue raises: PoolNotFoundError, or PoolBrokenError
    (its __cause__ the initializer's exception) if the pool is broken."""
    if queue._broken is None:
        return PoolNotFoundError(f"pool {queue._name!r} is stopped and accepts no more jobs")
    error = PoolBrokenError(
        f"pool {queue._name!r} is broken: its workers' initializer keeps failing; "
        "stop the pool and start it again"
    )
    error.__cause__ = queue._broken
    return error


@final
class Queue:
    """A pool's FIFO queue and dispatcher. Worker threads call work(); submitters
    call the push methods; close() lets the workers drain and exit."""

    __slots__ = (
        "_block_timeout",
        "_broken",
        "_cancelled",
        "_cancelled_waiting",
        "_closed",
        "_completed",
        "_copy_context",
        "_dropped",
        "_expired",
        "_failed",
        "_finished",
        "_idle",
        "_line",
        "_lock",
        "_max",
        "_max_wait",
        "_name",
        "_next_ref",
        "_pushes",
        "_raise_when_full",
        "_rate_per",
        "_rate_pos",
        "_rate_ring",
        "_rate_waiter",
        "_rejected",
        "_retried",
        "_retry_attempts",
        "_retry_forget",
        "_retry_later",
        "_retry_on",
        "_retrying",
        "_run_estimate",
        "_run_hist",
        "_sample_mask",
        "_serial",
        "_slots",
        "_started",
        "_submitted",
        "_wait_hist",
    )

    def __init__(
        self,
        name: str,
        max_queue: int | None = None,
        on_full: str = "block",
        block_timeout: float | timedelta | None = None,
        copy_context: bool = True,
        max_queue_time: float | timedelta | None = None,
        rate_limit: tuple[int, float] | None = None,
        retry_attempts: int = 1,
        retry_on: tuple[type[BaseException], ...] = (),
        retry_later: Callable[..., object] | None = None,
        retry_forget: Callable[[Queue, object], object] | None = None,
    ) -> None:
        if max_queue is not None and not (type(max_queue) is int and max_queue >= 1):
            raise ValueError(f"max_queue must be an int >= 1 or None, not {max_queue!r}")
        if type(on_full) is not str or on_full not in ("block", "raise"):
            raise ValueError(f"on_full must be 'block' or 'raise', not {on_full!r}")
        self._max = -1 if max_queue is None else max_queue
        self._raise_when_full = on_full == "raise"
        self._block_timeout = seconds(block_timeout, "block_timeout")
        self._copy_context = bool(copy_context)
        wait_limit = seconds(max_queue_time, "max_queue_time")
        # max_queue_time in ns: a job that waited longer when a worker reaches it expires.
        self._max_wait = -1 if wait_limit < 0 else int(min(wait_limit * 1e9, 2.0**62))
        # rate_limit: the last count start times (ns), the oldest at _rate_pos.
        self._rate_ring: list[int] | None = None
        self._rate_pos = 0
        self._rate_per = 0
        self._rate_waiter: Worker | None = None  # the one worker asleep until its turn
        if rate_limit is not None:
            if (
                type(rate_limit) is not tuple
                or len(rate_limit) != 2
                or type(rate_limit[0]) is not int
                or not 1 <= rate_limit[0] <= 10**7
            ):
                raise ValueError(
                    f"rate_limit must be a (count, per) tuple, count an int in 1..10**7, "
                    f"not {rate_limit!r}"
                )
            per = seconds(rate_limit[1], "rate_limit per")
            if per <= 0:
                raise ValueError(
                    f"rate_limit per must be > 0 seconds and finite, not {rate_limit[1]!r}"
                )
            self._rate_per = int(min(per * 1e9, 2.0**62))
            self._rate_ring = [-(2**62)] * rate_limit[0]  # long ago: the first count are free
        if type(retry_attempts) is not int or retry_attempts < 1:
            raise ValueError(f"retry_attempts must be an int >= 1, not {retry_attempts!r}")
        if retry_attempts > 1 and (type(retry_on) is not tuple or not callable(retry_later)):
            raise TypeError("retry needs retry_on (a tuple) and retry_later (a callable)")
        self._retry_attempts = retry_attempts
        self._retry_on = retry_on
        self._retry_later = retry_later
        self._retry_forget = retry_forget  # called with (queue, job): a retry was cancelled
        # Jobs waiting out a retry's backoff: their Job (or a _Retrying) -> their slot.
        self._retrying: dict[object, _Slot] = {}
        self._name = name
        with _serials_lock:
            self._serial = next(_serials)
        self._next_ref = 0
        self._lock = threading.Lock()
        self._slots: deque[_Slot] = deque()
        # A stack: the most recently idled worker is woken first (warmest caches).
        self._idle: list[Worker] = []
        # Submitters waiting for room in a bounded queue, first come first served.
        self._line: deque[RoomTicket] = deque()
        self._closed = False
        self._broken: BaseException | None = None
        # Stats (under the lock): counters kept as jobs move; _finished counts the jobs
        # that started and finished, _cancelled_waiting cancelled ones still queued.
        self._submitted = self._started = self._finished = 0
        self._completed = self._failed = self._cancelled = self._dropped = 0
        self._rejected = self._expired = self._retried = 0
        self._cancelled_waiting = 0
        self._wait_hist = Histogram()
        self._run_hist = Histogram()
        self._pushes = 0
        self._sample_mask = 0  # a push is timed when (_pushes & mask) == 0
        self._run_estimate = -1  # moving average of sampled run times (ns); -1: none yet

    @property
    def name(self) -> str:
        return self._name

    def _new_job(
        self,
        fn: Callable[..., _T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        owner: Owner,
    ) -> Job[_T]:
        job: Job[_T] = Job.__new__(Job)
        job._pool = self._name
        job._function = fn
        job._args = args
        job._kwargs = kwargs
        job._owner = threading.get_ident()
        job._owner_token = owner
        job._ref = 0  # numbered when queued
        job._queue = self
        job._state = _PENDING
        job._exception = None
        job._tb = None
        job._listeners = None
        job._retrieved = False
        job._attempts = 0
        return job

    def _capture(self) -> contextvars.Context | None:
        # The submitter's context, copied now (as asyncio.to_thread does), or None.
        return contextvars.copy_context() if self._copy_context else None

    # -- called with the lock held ------------------------------------------------

    def _take_idle(self) -> _thread.LockType | None:
        """Pop the most recently idled worker: the wake lock to release once the
        queue lock is free, or None if no worker is idle."""
        if not self._idle:
            return None
        worker = self._idle.pop()
        # Taken now, under the lock: _unpark may give the worker a new one.
        return worker._wake

    def _room(self, n: int, ticket: RoomTicket | None, force: bool, full: list[int]) -> bool:
        """Lock held: raise if closed; in a bounded queue, wait (or raise) until n more
        jobs fit and this submitter is first in line (see the compiled core's
        _wait_for_room). Returns True if the submitter came through the line: it
        calls _wake_line() once its jobs are in. The lock is held on return and on raise.
        A submit that finds the queue full and does not wait appends n to full, for the
        caller to emit queue.full once the lock is free; one that waits emits it itself."""
        if self._closed:
            raise _closed_error(self)
        limit = self._max
        if limit < 0 or force or (len(self._slots) + n <= limit and not self._line):
            return False
        if n > limit:
            self._rejected += n
            full.append(n)
            raise QueueFullError(
                f"pool {self._name!r}: a batch of {n} jobs can never fit in its queue "
                f"(max_queue={limit})"
            )
        mine = ticket
        deadline = 0.0
        told = ticket is not None and ticket._queued  # an oddjob.aio ticket told already
        while True:
            if self._closed:
                self._leave_line(mine)
                raise _closed_error(self)
            line = self._line
            if len(self._slots) + n <= limit and (not line or line[0] is mine):
                if mine is not None and mine._queued:
                    line.popleft()
                    mine._queued = mine._signalled = False
                return True
            if self._raise_when_full:
                self._rejected += n
                full.append(n)
                raise QueueFullError(
                    f"pool {self._name!r} is full: {len(self._slots)} jobs queued "
                    f"(max_queue={limit}, on_full='raise')"
                )
            if (mine is None or not mine._queued) and getattr(_locals, "worker_of", None) is self:
                # Before waiting, for a blocked thread and an oddjob.aio ticket alike.
                self._rejected += n
                full.append(n)
                raise QueueFullError(
                    f"pool {self._name!r} is full and this job runs on one of its own "
                    "workers: waiting for room could deadlock the pool"
                )
            if mine is None:
                mine = RoomTicket.__new__(RoomTicket)
                mine._wake = None
                mine._lock = _held_lock()
                mine._queued = mine._signalled = False
                if self._block_timeout >= 0:
                    deadline = monotonic() + self._block_timeout
            if not mine._queued:
                line.append(mine)
                mine._queued = True
            mine._n = n
            mine._signalled = False
            if mine._lock is None:
                if not told:
                    full.append(n)
                raise _NoRoom()  # oddjob.aio waits for the ticket's wake()
            lock = self._lock
            lock.release()
            try:
                if not told:
                    told = True
                    self._tell_full(n)
                if self._block_timeout < 0:
                    got = mine._lock.acquire()
                else:
                    left = deadline - monotonic()
                    got = left > 0 and mine._lock.acquire(timeout=min(left, threading.TIMEOUT_MAX))
            except BaseException:  # KeyboardInterrupt on the main thread: leave the line
                lock.acquire()  # held on every way out, as the caller's with expects
                self._leave_line(mine)
                raise
            lock.acquire()
            if self._closed:
                continue  # the top of the loop leaves the line and raises
            if not got and not (len(self._slots) + n <= limit and self._line[0] is mine):
                self._leave_line(mine)
                self._rejected += n
                raise QueueFullError(
                    f"pool {self._name!r} stayed full for block_timeout="
                    f"{self._block_timeout} seconds (max_queue={limit})"
                )

    def _tell_full(self, n: int) -> None:
        # Without the lock: a submit found the queue full (it waits, or is refused).
        if _event_mask & (1 << _QUEUE_FULL):
            _emit(
                _QUEUE_FULL,
                {"queued": len(self._slots), "max_queue": self._max, "jobs": n},
                {"pool": self._name, "on_full": self.on_full},
                False,
            )

    def _leave_line(self, ticket: RoomTicket | None) -> None:
        # Lock held: take ticket out of the line (if it is in it).
        if ticket is None or not ticket._queued:
            return
        for i, waiting in enumerate(self._line):
            if waiting is ticket:
                del self._line[i]
                break
        ticket._queued = ticket._signalled = False

    def _wake_line(self) -> None:
        """Without the lock: signal the first in line if its jobs fit now (once)."""
        with self._lock:
            if not self._line:
                return
            first = self._line[0]
            if first._signalled or len(self._slots) + first._n > self._max:
                return
            first._signalled = True
        first._fire()

    def withdraw(self, ticket: RoomTicket) -> None:
        """Take a RoomTicket out of the line (its submitter gave up: cancelled, timed
        out); the next in line is signalled if it fits."""
        if not isinstance(ticket, RoomTicket):
            raise _bad_argument("ticket", f"{__name__}.RoomTicket", ticket)
        with self._lock:
            self._leave_line(ticket)
        self._wake_line()

    # -- submitting -----------------------------------------------------------------

    def _enter(self, slots: list[_Slot], ticket: RoomTicket | None, force: bool = False) -> None:
        """Queue the slots as one batch, under one lock, async jobs numbered in order."""
        if ticket is not None and not isinstance(ticket, RoomTicket):
            raise _bad_argument("ticket", f"{__name__}.RoomTicket", ticket)
        full: list[int] = []
        try:
            with self._lock:
                lined = self._room(len(slots), ticket, force, full)
                if lined:
                    slots = self._restamp(slots)  # queued from now, not from the wait
                self._extend(slots)
                self._submitted += len(slots)
                ref = (self._serial << _REF_SHIFT) | self._next_ref
                numbered = 0
                for slot in slots:
                    job = slot[3]
                    if job is not None:
                        numbered += 1
                        job._ref = ref + numbered
                self._next_ref += numbered
                # A worker waiting for the rate limit takes the next job when its turn comes.
                wake = self._take_idle() if self._rate_waiter is None else None
        except BaseException:
            if full:
                self._tell_full(full[0])
            if self._line:
                self._wake_line()  # one that gave up may have been in the way of the next
            raise
        if wake is not None:
            wake.release()  # woken workers wake the next idle one while work remains
        if lined:
            self._wake_line()

    def _stamp(self) -> int:
        """The time a push of one job is queued if its queue wait is to be measured,
        else 0 (see _sample)."""
        first, mask = self._sample(1)
        return 0 if first & mask else monotonic_ns()

    def _stamps(self, n: int) -> list[int]:
        """The same for each job of a push of n."""
        first, mask = self._sample(n)
        if (-first) & mask >= n:
            return [0] * n
        now = monotonic_ns()
        return [0 if (first + i) & mask else now for i in range(n)]

    def _sample(self, n: int) -> tuple[int, int]:
        # As the compiled core's _stamp: job i of a push of n is measured when
        # ((first + i) & mask) == 0, each job counting once; mask from
        # _sample_mask_for, 0 while a handler wants every job timed. Into a deep queue
        # (a big batch makes one) at most one job in 16 is: consecutive jobs there wait
        # alike, and a burst into a fresh pool comes before any run time is known.
        # Read before the lock is taken: a racy count only skews which are sampled.
        first = self._pushes
        self._pushes = first + n
        mask = self._sample_mask
        if len(self._slots) + n > _DEEP_QUEUE:
            mask |= 15
        if _event_mask & _TIMED_EVENTS or self._max_wait >= 0:
            mask = 0  # a handler wants every job timed, or every job's wait is checked
        return first, mask

    @staticmethod
    def _restamp(slots: list[_Slot]) -> list[_Slot]:
        now = monotonic_ns()
        return [(*slot[:6], now if slot[6] else 0, slot[7]) for slot in slots]

    def push(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        ticket: RoomTicket | None = None,
    ) -> None:
        """Queue fn(*args, **kwargs) as a fire-and-forget job (see _room for a full
        bounded queue, and ticket)."""
        _check_args(args, kwargs)
        _check_callable(fn)
        self._enter(
            [(fn, args, kwargs or None, None, False, self._capture(), self._stamp(), 0)], ticket
        )

    def push_scheduled(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        context: contextvars.Context | None,
    ) -> None:
        """A fired timer's job: queued even when a bounded queue is full (the
        scheduling thread never waits), run in context (None: the worker's own)."""
        _check_args(args, kwargs)
        _check_callable(fn)
        _check_context(context)
        self._enter(
            [(fn, args, kwargs or None, None, False, context, self._stamp(), 0)], None, True
        )

    def push_many(
        self, fn: Callable[[Any], Any], items: Iterable[Any], ticket: RoomTicket | None = None
    ) -> None:
        """Queue fn(item) for each item as one batch: no other job lands between them."""
        self._push_many(fn, items, ticket, False, self._capture())

    def push_many_scheduled(
        self, fn: Callable[[Any], Any], items: Iterable[Any], context: contextvars.Context | None
    ) -> None:
        """A fired timer's batch: as push_scheduled, every job in its own copy of context."""
        _check_context(context)
        self._push_many(fn, items, None, True, context)

    def _push_many(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        ticket: RoomTicket | None,
        force: bool,
        context: contextvars.Context | None,
    ) -> None:
        _check_callable(fn)
        batch = items if type(items) is list else list(items)
        # One slot per item, the item itself in place of an args tuple; made before the
        # lock is taken, from a copy, so neither running out of memory nor another thread
        # resizing the caller's list can leave part of the batch queued.
        slots: list[_Slot] = list(
            zip(
                repeat(fn),
                batch,
                repeat(None),
                repeat(None),
                repeat(True),
                repeat(context),
                self._stamps(len(batch)),
                repeat(0),
            )
        )
        if slots:
            self._enter(slots, ticket, force)

    def push_async(
        self,
        fn: Callable[..., _T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        ticket: RoomTicket | None = None,
    ) -> Job[_T]:
        """Queue fn(*args, **kwargs) and return its Job."""
        _check_args(args, kwargs)
        _check_callable(fn)
        kwargs = kwargs or None
        job = self._new_job(fn, args, kwargs, current_owner())
        self._enter([(fn, args, kwargs, job, False, self._capture(), self._stamp(), 0)], ticket)
        return job

    def push_async_many(
        self, fn: Callable[[Any], _T], items: Iterable[Any], ticket: RoomTicket | None = None
    ) -> list[Job[_T]]:
        """Queue fn(item) for each item as one batch; their Jobs in input order."""
        _check_callable(fn)
        batch = items if type(items) is list else list(items)
        if not batch:
            return []
        owner = current_owner()
        context = self._capture()  # one for the batch: each job runs in a copy
        jobs = [self._new_job(fn, (item,), None, owner) for item in batch]
        stamps = self._stamps(len(jobs))
        self._enter(
            [
                (fn, job._args, None, job, False, context, stamp, 0)
                for job, stamp in zip(jobs, stamps, strict=True)
            ],
            ticket,
        )
        return jobs

    def _extend(self, slots: list[_Slot]) -> None:
        # Lock held: the whole batch, or (out of memory part-way) none of it.
        before = len(self._slots)
        try:
            self._slots.extend(slots)
        except BaseException:
            while len(self._slots) > before:
                self._slots.pop()
            raise

    # -- working ----------------------------------------------------------------------

    def work(
        self,
        worker: Worker,
        restart_on_error: bool = False,
        runner: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any] | None], Any]
        | None = None,
    ) -> _Crash | None:
        """Run queued jobs on the calling thread until the queue is closed and
        drained, or the worker is retired (returns None), or the worker crashes
        (returns (exception, function, reported)).

        With ``runner``, each job is ``runner(fn, args, kwargs)`` (kwargs None when there are
        none) instead of a call here: what a worker is (a child process, say) sits
        behind it, and everything else (FIFO, limits, retries, stats, events) is the same.

        A job that raises an Exception fails and the worker goes on: an async job's
        Job holds the exception, a fire-and-forget job's is logged. The worker
        crashes on a BaseException that is not an Exception, and, with
        restart_on_error, on any exception; such a job's failure is reported in the
        same way (reported is True). A done callback raising a BaseException that is
        not an Exception crashes the worker too, unreported (reported is False).

        Goes from one job to the next while work is queued; blocks on the worker's
        own wake lock when there is none (or, with a rate limit, until its turn).
        Counts each job in the queue's stats under the lock it takes anyway: a
        fire-and-forget job when the worker comes back."""
        _check_worker(worker)
        lock = self._lock
        slots = self._slots
        listeners: list[Waiter | Callable[[Job[Any]], object]] | None
        # The last fire-and-forget job's outcome and times (< 0: not measured).
        outcome = 0
        wait_ns = run_ns = -1
        rate_slept = False  # slept as the queue's rate waiter
        _locals.worker_of = self  # a job here that submits to its own full queue must not wait
        while True:
            with lock:
                if outcome:
                    self._fold(outcome, wait_ns, run_ns)
                    outcome = 0
                if rate_slept:
                    rate_slept = False
                    if self._rate_waiter is worker:
                        self._rate_waiter = None  # its turn came
                    else:
                        # close() or retire() woke it (one release, under the lock): if
                        # the timed wait ran out first, take that release back.
                        worker._wake.acquire(blocking=False)
                took = bool(slots) and not worker._retired
                rate = 0
                now = 0
                if took:
                    if self._rate_ring is not None or self._max_wait >= 0:
                        now = monotonic_ns()
                    if self._rate_ring is not None:
                        rate, due = self._rate_wait(worker, slots[0], now)
                        took = rate == 0
                if took:
                    fn, args, kwargs, job, one_arg, context, stamp, runs = slots.popleft()
                    line = bool(self._line)
                    worker._busy = True
                    # More is queued and a worker idles: wake it (it wakes the next, and so on).
                    wake = self._take_idle() if slots and self._idle else None
                    run = True
                    dropped = expired = False
                    listeners = None
                    if job is not None:
                        if job._state != _PENDING:  # cancelled while queued
                            run = False
                            self._cancelled_waiting -= 1
                        elif not job._owner_token._alive:
                            # Its thread died before the job started: nobody wants the result.
                            job._state = _CANCELLED
                            listeners, job._listeners = job._listeners, None
                            run = False
                            dropped = True
                            self._dropped += 1
                        else:
                            # Running, or about to fail as expired: no longer cancellable.
                            job._state = _RUNNING
                            worker._job = job
                            if self._expired_at(stamp, now):
                                run = False
                                expired = True
                                self._expired += 1
                            else:
                                job._attempts += 1
                    elif self._expired_at(stamp, now):
                        run = False
                        expired = True
                        self._expired += 1
                    if run:
                        worker._jobs_run += 1
                        self._started += 1
                    slow = not self._sample_mask  # long enough jobs to time every one
            if rate:
                if rate == 1:
                    rate_slept = True
                    self._sleep_for_rate(worker, due - now)
                else:
                    self._sleep_idle(worker)
                continue
            if not took:
                if self._park(worker):
                    continue
                return None
            if wake is not None:
                wake.release()
            if line:
                self._wake_line()  # a slot came free: the first submitter in line may fit
            events = _event_mask
            timed = bool(stamp or slow or events & _TIMED_EVENTS)
            wait_ns = run_ns = -1
            ref = None if job is None else job._ref

            if expired:
                escaped = self._expire(worker, fn, args, kwargs, job, one_arg, now - stamp, events)
                if escaped is not None:  # a done callback raised SystemExit & co
                    return (escaped, fn, False)
                del fn, args, kwargs, job, context
                continue

            if job is not None and not run:
                escaped = _notify(job, listeners) if listeners is not None else None
                if dropped and events & (1 << _JOB_DROPPED):
                    _job_event(_JOB_DROPPED, self._name, fn, ref)
                if escaped is not None:  # a done callback raised SystemExit & co
                    return (escaped, fn, False)
                del fn, args, kwargs, job, listeners, context
                continue

            # Each job runs in its own copy of the context it was submitted in; the
            # telemetry events around it too.
            if context is None:
                ran = self._run_job(fn, args, kwargs, one_arg, stamp, timed, events, ref, runner)
            else:
                ran = context.copy().run(
                    self._run_job, fn, args, kwargs, one_arg, stamp, timed, events, ref, runner
                )
            result, error, wait_ns, run_ns = ran
            del ran

            # Each path drops the job's references (del) before the worker may go idle.
            if job is None:
                if error is None:
                    outcome = _COMPLETED
                else:
                    # Nobody awaits a fire-and-forget job: its failure is logged here.
                    outcome = _FAILED
                    crash = restart_on_error or not isinstance(error, Exception)
                    if self._retryable(runs + 1, error):
                        # Runs again after its backoff; the traceback goes, so that its
                        # frames are not kept meanwhile.
                        error.__traceback__ = None
                        token = _Retrying(fn, error)
                        with lock:
                            self._retrying[token] = (
                                fn,
                                args,
                                kwargs,
                                None,
                                one_arg,
                                context,
                                0,
                                runs + 1,
                            )
                            self._retried += 1
                            self._fold(_RETRIED, wait_ns, run_ns)
                        outcome = 0
                        self._schedule_retry(token, runs + 1, error, fn, None)
                        del token
                    else:
                        log_job_error(
                            self._name,
                            fn,
                            (args,) if one_arg else args,
                            kwargs,
                            error,
                            note=_attempts_note(runs + 1) + (_REPLACING if crash else ""),
                        )
                        if crash:
                            with lock:
                                self._fold(outcome, wait_ns, run_ns)
                    if crash:
                        return (error, fn, True)
                del fn, args, kwargs, result, error, context
                continue

            if error is not None:
                crash = restart_on_error or not isinstance(error, Exception)
                retry = self._retryable(job._attempts, error)
                tb = error.__traceback__
                with lock:
                    if retry:
                        # Pending again, off the queue, until its backoff is over; nobody
                        # sees this run's exception (the caller gets the last outcome).
                        job._state = _PENDING
                        self._retrying[job] = (fn, args, kwargs, job, one_arg, context, 0, 0)
                        self._retried += 1
                        self._fold(_RETRIED, wait_ns, run_ns)
                    else:
                        job._exception = error
                        job._tb = tb
                        job._state = _FINISHED
                        listeners, job._listeners = job._listeners, None
                        self._fold(_FAILED, wait_ns, run_ns)
                    worker._job = None
                del tb, context
                if retry:
                    # Kept as the cause of a JobExpiredError, should the retry expire;
                    # without its traceback, whose frames must not live on meanwhile.
                    error.__traceback__ = None
                    job._result = error
                    self._schedule_retry(job, job._attempts, error, fn, ref)
                    del job
                    if crash:
                        return (error, fn, True)
                    del fn, args, kwargs, error
                    continue
                escaped = _notify(job, listeners) if listeners is not None else None
                del job, listeners
                if escaped is not None:
                    return (escaped, fn, False)
                if crash:
                    return (error, fn, True)
                del fn, args, kwargs, error
                continue
            del context
            # A run before's exception, if this is a retry: not freed under the lock.
            prev = getattr(job, "_result", None) if job._attempts > 1 else None
            with lock:
                job._result = result
                job._state = _FINISHED
                listeners, job._listeners = job._listeners, None
                worker._job = None
                self._fold(_COMPLETED, wait_ns, run_ns)
            del result, prev
            if listeners is not None:
                escaped = _notify(job, listeners)
                if escaped is not None:
                    return (escaped, fn, False)
            del fn, args, kwargs, job, listeners

    # -- rate limit, deadlines and retries ----------------------------------------------

    def _rate_wait(self, worker: Worker, head: _Slot, now: int) -> tuple[int, int]:
        """Lock held, head the first slot: (0, 0) if it may be taken now (a job that will
        run takes its start in the window here), (1, due) if this worker is now the rate
        waiter (to sleep until due), (2, 0) if it idles behind the rate waiter.
        Cancelled, dropped and expired jobs are skipped without a start."""
        ring = self._rate_ring
        assert ring is not None
        job = head[3]
        if job is not None and (job._state != _PENDING or not job._owner_token._alive):
            return 0, 0
        if self._expired_at(head[6], now):
            return 0, 0
        pos = self._rate_pos
        next_start = ring[pos] + self._rate_per
        if next_start <= now:
            # Strict sliding window: the start count places back is at least per ago.
            ring[pos] = now
            self._rate_pos = pos + 1 if pos + 1 < len(ring) else 0
            return 0, 0
        if self._rate_waiter is None:
            self._rate_waiter = worker
            return 1, next_start
        self._idle.append(worker)
        worker._busy = False
        return 2, 0

    def _sleep_for_rate(self, worker: Worker, ns: int) -> None:
        # The rate waiter's sleep: until its turn, or until close() or retire() wake it.
        try:
            worker._wake.acquire(timeout=min(ns / 1e9 + 1e-6, threading.TIMEOUT_MAX))
        except BaseException:
            with self._lock:  # interrupted (a signal handler raised on the main thread)
                if self._rate_waiter is worker:
                    self._rate_waiter = None
                else:  # a release may or may not have been consumed: start afresh
                    worker._wake = _held_lock()
            raise

    def _sleep_idle(self, worker: Worker) -> None:
        # Idle behind the rate waiter (on the idle stack): a wake-up passes the turn on.
        try:
            worker._wake.acquire()
        except BaseException:
            self._unpark(worker)
            raise

    def _release_rate_waiter(self) -> None:
        # Lock held: wake the worker asleep until the rate limit's next start (one release
        # of its wake lock; the worker takes back a late one, see work()).
        waiter, self._rate_waiter = self._rate_waiter, None
        if waiter is not None:
            waiter._wake.release()

    def _expired_at(self, stamp: int, now: int) -> bool:
        # The job queued at stamp waited longer than max_queue_time (every push is timed then).
        return self._max_wait >= 0 and stamp != 0 and now - stamp > self._max_wait

    def _expire(
        self,
        worker: Worker,
        fn: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any] | None,
        job: Job[Any] | None,
        one_arg: bool,
        waited: int,
        events: int,
    ) -> BaseException | None:
        """A job that waited longer than max_queue_time is not run: an async job fails
        with JobExpiredError, a fire-and-forget one is logged. Returns what a done
        callback raised that is not an Exception, if one did."""
        limit = self._max_wait / 1e9
        escaped = None
        ref = None
        if job is not None:
            ref = job._ref
            error = JobExpiredError(
                f"job {ref} waited {waited / 1e9:.3f} s in pool {self._name!r}, longer than "
                f"its max_queue_time of {limit:g} s, so it was not run"
                + (
                    ""
                    if job._attempts == 0
                    else f" again after {job._attempts} attempt{'s' if job._attempts > 1 else ''}"
                )
            )
            cause = getattr(job, "_result", None)  # a retry's: its last run's exception
            if job._attempts and isinstance(cause, BaseException):
                error.__cause__ = cause
            with self._lock:
                job._exception = error
                job._tb = None  # it never ran
                job._state = _FINISHED
                listeners, job._listeners = job._listeners, None
                worker._job = None
            if listeners is not None:
                escaped = _notify(job, listeners)
        else:
            _log.warning(
                "job %s in pool %r expired: it waited %.3f s, longer than its "
                "max_queue_time of %g s, so it was not run",
                describe_call(fn, (args,) if one_arg else args, kwargs),
                self._name,
                waited / 1e9,
                limit,
                extra={"oddjob_pool": self._name, "oddjob_function": fn},
            )
        if events & (1 << _JOB_EXPIRED):
            _job_event(_JOB_EXPIRED, self._name, fn, ref, waited)
        return escaped

    def _retryable(self, runs: int, exc: BaseException) -> bool:
        # True if a job whose run number runs raised exc gets another.
        if runs >= self._retry_attempts:
            return False
        try:
            return isinstance(exc, self._retry_on)
        except Exception:
            return False  # a hostile __instancecheck__: the job fails as it is

    def _schedule_retry(
        self,
        item: object,
        runs: int,
        exc: BaseException,
        fn: Callable[..., Any],
        ref: int | None,
    ) -> None:
        # Set the backoff timer (the hook also emits job.retry). If it cannot be set (no
        # thread for the scheduler, out of memory), this run was the last.
        try:
            assert self._retry_later is not None
            self._retry_later(self, item, runs, exc, fn, ref)
        except Exception:
            _log.exception(
                "could not schedule the retry of %r in pool %r; it fails now", fn, self._name
            )
            self._retry_failed(item, exc, True)

    def _retry_failed(self, item: object, exc: BaseException, unscheduled: bool) -> None:
        # item cannot wait for its retry after all: it fails with exc. unscheduled: its
        # timer could not be set, so it was no retry.
        with self._lock:
            slot = self._retrying.pop(item, None)
            if slot is not None and unscheduled:
                self._retried -= 1
        if slot is None:
            return  # cancelled meanwhile
        if isinstance(item, Job):
            self._fail(item, exc, False)
        else:
            with self._lock:
                self._failed += 1
            fn, args, kwargs, _job, one_arg, _context, _stamp, runs = slot
            log_job_error(
                self._name,
                fn,
                (args,) if one_arg else args,
                kwargs,
                exc,
                note=_attempts_note(runs),
            )
        self._wake_if_drained()

    def _forget_retry(self, item: object) -> None:
        # item no longer waits for its retry (cancelled, or settled by close()): its
        # backoff timer goes, or it would keep the job (and the scheduling thread) until due.
        if self._retry_forget is None:
            return
        try:
            self._retry_forget(self, item)
        except Exception:
            _log.exception("could not drop the retry timer of %r", item)

    def _wake_if_drained(self) -> None:
        # A retry was settled off the queue: if it was the last thing a closed queue
        # waited for, the idle workers may exit now.
        with self._lock:
            if not (self._closed and not self._slots and not self._retrying):
                return
            for worker in self._idle:
                worker._wake.release()
            self._idle.clear()

    def _settle_retries(self, retrying: dict[object, _Slot], forget: bool) -> int:
        # The queue closed with cancel_pending (or broke, or this is a fork's child) while
        # these waited for a retry: async jobs are cancelled (or fail with
        # PoolBrokenError); a fire-and-forget job's last error is logged.
        error: BaseException | None = None
        settled = plain = 0
        for item, slot in retrying.items():
            if forget:  # not in a fork's child: its timers were the parent's scheduler's
                self._forget_retry(item)
            try:
                if isinstance(item, Job):
                    if self._broken is not None:
                        settled += self._fail(item, _closed_error(self), False)
                    elif item._cancel(self, False):
                        settled += 1
                else:
                    assert isinstance(item, _Retrying)
                    plain += 1
                    fn, args, kwargs, _job, one_arg, _context, _stamp, runs = slot
                    log_job_error(
                        self._name,
                        fn,
                        (args,) if one_arg else args,
                        kwargs,
                        item.error,
                        note=_attempts_note(runs) + "; its retry was cancelled as the pool stopped",
                    )
            except BaseException as exc:
                if error is None:
                    error = exc
        _count_plain(self, plain)
        if error is not None:
            raise error
        return settled + plain

    def requeue(self, item: object) -> bool:
        """A retry's backoff is over: put its job back at the tail of the queue, even of
        a full queue or a closed one that is draining. False if it was settled meanwhile
        (cancelled, or the pool stopped with cancel_pending)."""
        if not isinstance(item, Job | _Retrying):
            raise TypeError(f"requeue takes a job waiting for its retry, not {type(item).__name__}")
        failed = None
        with self._lock:
            slot = self._retrying.pop(item, None)
            if slot is None:
                return False
            try:
                self._slots.append((*slot[:6], self._stamp(), slot[7]))
            except MemoryError as exc:
                self._retrying[item] = slot  # for _retry_failed to settle
                failed = exc
            wake = self._take_idle() if self._rate_waiter is None else None
        if failed is not None:
            self._retry_failed(item, failed, False)
            return False
        if wake is not None:
            wake.release()
        return True

    def retries_waiting(self) -> int:
        """Jobs waiting out a retry's backoff (counted as queued by stats())."""
        with self._lock:
            return len(self._retrying)

    def _run_job(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any] | None,
        one_arg: bool,
        stamp: int,
        timed: bool,
        events: int,
        ref: int | None,
        runner: Callable[..., Any] | None,
    ) -> tuple[Any, BaseException | None, int, int]:
        """Call one job (in its context, when it has one) between its telemetry
        events: (result, exception or None, queue wait, run time), times -1 if not
        measured."""
        wait_ns = run_ns = started = -1
        if timed:
            started = monotonic_ns()
            if stamp:
                wait_ns = started - stamp
        if events & (1 << _JOB_START):
            _job_event(_JOB_START, self._name, fn, ref, wait_ns)
        result = error = None
        try:
            if runner is not None:
                result = runner(fn, (args,) if one_arg else args, kwargs)
            elif one_arg:
                result = fn(args)
            elif kwargs is None:
                result = fn(*args)
            else:
                result = fn(*args, **kwargs)
        except BaseException as exc:
            error = _without_this_frame(exc)
        if timed:
            run_ns = monotonic_ns() - started
        if error is None:
            if events & (1 << _JOB_STOP):
                _job_event(_JOB_STOP, self._name, fn, ref, wait_ns, run_ns)
        elif events & (1 << _JOB_EXCEPTION):
            _job_event(_JOB_EXCEPTION, self._name, fn, ref, wait_ns, run_ns, error)
        return result, error, wait_ns, run_ns

    def _fold(self, outcome: int, wait_ns: int, run_ns: int) -> None:
        # Lock held: count a job that ran and finished; times < 0 were not measured.
        self._finished += 1
        if outcome == _COMPLETED:
            self._completed += 1
        elif outcome == _FAILED:
            self._failed += 1
        if wait_ns >= 0:
            self._wait_hist.record(wait_ns)
        if run_ns >= 0:
            self._run_hist.record(run_ns)
            # A moving average, each sample capped: one job that lost the GIL midway
            # must not have every job timed for a while.
            run_ns = min(run_ns, _RUN_SAMPLE_CAP)
            if self._run_estimate < 0:  # the first sample: nothing to average yet
                self._run_estimate = run_ns
            else:
                self._run_estimate += (run_ns - self._run_estimate) // 8
            self._sample_mask = _sample_mask_for(self._run_estimate)

    def _fail(self, job: Job[Any], exc: BaseException, started: bool) -> bool:
        """Finish a queued or running (started) job with exc (its worker is gone, or
        the pool broke); its waiters are released and its callbacks run. True if it was
        failed here, False if it had finished already."""
        tb = exc.__traceback__
        with self._lock:
            if job._state >= _FINISHED:
                return False
            job._exception = exc
            job._tb = tb
            job._state = _FINISHED
            listeners, job._listeners = job._listeners, None
            if started:
                self._finished += 1
            self._failed += 1
        if listeners is not None:
            escaped = _notify(job, listeners)
            if escaped is not None:
                raise escaped
        return True

    # -- jobs taken ahead (process workers) ---------------------------------------------

    def take(self, worker: Worker, most: int) -> list[tuple[Any, Any, Any, Any, int]]:
        """Up to most more queued jobs for a worker that is running one: a process
        worker sends them to its child with that one, in one message. Each is started
        as work() starts a job (no longer cancellable, counted as running, job.start
        emitted) and must be ended by finish(), or given back by putback() if it never
        ran. A list of (item, fn, args, kwargs, wait_ns): item is opaque (for finish
        and putback), wait_ns the job's queue wait (-1: not measured).

        Takes nothing from a queue with a rate limit or max_queue_time (their checks
        belong to each start, which a batch would blur), nor for a retired worker; stops
        at the first job that is cancelled or whose owner is gone (work() settles those)."""
        _check_worker(worker)
        taken: list[_Slot] = []
        if most <= 0 or self._rate_ring is not None or self._max_wait >= 0:
            return []
        now = monotonic_ns()
        with self._lock:
            slots = self._slots
            while slots and len(taken) < most and not worker._retired:
                slot = slots[0]
                job = slot[3]
                if job is not None:
                    if job._state != _PENDING or not job._owner_token._alive:
                        break  # cancelled, or its owner is gone: work() settles it
                    job._state = _RUNNING
                    job._attempts += 1
                taken.append(slots.popleft())
                worker._jobs_run += 1
                self._started += 1
            line = bool(taken) and bool(self._line)
        if line:
            self._wake_line()  # slots came free: the first submitter in line may fit
        events = _event_mask
        handed: list[tuple[Any, Any, Any, Any, int]] = []
        for slot in taken:
            fn, args, kwargs, job, one_arg, _context, stamp, _runs = slot
            wait_ns = now - stamp if stamp else -1
            handed.append((slot, fn, (args,) if one_arg else args, kwargs, wait_ns))
            if events & (1 << _JOB_START):
                _job_event(_JOB_START, self._name, fn, None if job is None else job._ref, wait_ns)
        return handed

    def finish(
        self,
        worker: Worker,
        item: Any,
        ok: bool,
        value: Any,
        wait_ns: int = -1,
        run_ns: int = -1,
        retry: bool = True,
    ) -> BaseException | None:
        """End a job take() gave, with its result (ok) or its exception (value), as
        work() ends a job it ran: a failure is retried under the pool's retry policy
        (unless retry is False: after a fork, the parent's timers are not to be
        touched), or fails its Job, or (fire and forget) is logged. Returns what a done
        callback raised that is not an Exception (SystemExit & co), else None.

        Raises:
            ValueError: item is not a job that take() gave and finish() has not ended.
        """
        _check_worker(worker)
        if type(item) is not tuple or len(item) != 8:
            raise ValueError(f"finish() takes a job take() gave, not {type(item).__name__}")
        fn, args, kwargs, job, one_arg, context, _stamp, runs = item
        events = _event_mask
        lock = self._lock
        if job is not None:
            if job._state != _RUNNING or job._queue is not self:
                raise ValueError(f"finish() takes a job take() gave, once: not {job!r}")
            ref = job._ref
            if ok:
                if events & (1 << _JOB_STOP):
                    _job_event(_JOB_STOP, self._name, fn, ref, wait_ns, run_ns)
                prev = getattr(job, "_result", None) if job._attempts > 1 else None
                with lock:
                    job._result = value
                    job._state = _FINISHED
                    listeners, job._listeners = job._listeners, None
                    self._fold(_COMPLETED, wait_ns, run_ns)
                del prev
                return _notify(job, listeners) if listeners is not None else None
            exc: BaseException = value
            if events & (1 << _JOB_EXCEPTION):
                _job_event(_JOB_EXCEPTION, self._name, fn, ref, wait_ns, run_ns, exc)
            again = retry and self._retryable(job._attempts, exc)
            tb = exc.__traceback__
            with lock:
                if again:
                    job._state = _PENDING
                    self._retrying[job] = (fn, args, kwargs, job, one_arg, context, 0, 0)
                    self._retried += 1
                    self._fold(_RETRIED, wait_ns, run_ns)
                else:
                    job._exception = exc
                    job._tb = tb
                    job._state = _FINISHED
                    listeners, job._listeners = job._listeners, None
                    self._fold(_FAILED, wait_ns, run_ns)
            del tb
            if again:
                exc.__traceback__ = None  # its frames must not live on meanwhile
                job._result = exc  # the cause of a JobExpiredError, should the retry expire
                self._schedule_retry(job, job._attempts, exc, fn, ref)
                return None
            return _notify(job, listeners) if listeners is not None else None
        if ok:
            if events & (1 << _JOB_STOP):
                _job_event(_JOB_STOP, self._name, fn, None, wait_ns, run_ns)
            with lock:
                self._fold(_COMPLETED, wait_ns, run_ns)
            return None
        error: BaseException = value
        if events & (1 << _JOB_EXCEPTION):
            _job_event(_JOB_EXCEPTION, self._name, fn, None, wait_ns, run_ns, error)
        if retry and self._retryable(runs + 1, error):
            error.__traceback__ = None
            token = _Retrying(fn, error)
            with lock:
                self._retrying[token] = (fn, args, kwargs, None, one_arg, context, 0, runs + 1)
                self._retried += 1
                self._fold(_RETRIED, wait_ns, run_ns)
            self._schedule_retry(token, runs + 1, error, fn, None)
            return None
        log_job_error(
            self._name,
            fn,
            (args,) if one_arg else args,
            kwargs,
            error,
            note=_attempts_note(runs + 1),
        )
        with lock:
            self._fold(_FAILED, wait_ns, run_ns)
        return None

    def finish_results(
        self,
        worker: Worker,
        taken: list[tuple[Any, Any, Any, Any, int]],
        first: int,
        results: list[tuple[int, Any, int]],
        at: int,
        ok_kind: int,
    ) -> tuple[int, BaseException | None]:
        """finish() for a run of successes at once: ends taken[first], taken[first + 1],
        ... (take()'s tuples) with results[at], results[at + 1], ... (each a tuple
        (kind, value, run_ns)) while each result's kind is ok_kind, stopping at the first
        that is not (the caller ends that one) or where either list ends. Returns (how
        many it ended, the first non-Exception a done callback raised, or None).

        Raises:
            ValueError: first or at is negative, or an item is not one take() gave
                (those before it are ended).
            TypeError: an entry of taken or results is not a tuple of the right size
                (those before it are ended).
        """
        if type(taken) is not list or type(results) is not list:
            raise TypeError("finish_results() takes lists of taken jobs and of results")
        if first < 0 or at < 0:
            raise ValueError(f"first and at must be >= 0, not {first} and {at}")
        count = min(len(taken) - first, len(results) - at)
        raised = None
        n = 0
        while n < count:
            t = taken[first + n]
            r = results[at + n]
            if type(t) is not tuple or type(r) is not tuple or len(t) != 5 or len(r) != 3:
                raise TypeError(
                    "finish_results() takes take()'s 5-tuples and (kind, value, run_ns) results"
                )
            if r[0] != ok_kind:
                break
            callback_raised = self.finish(worker, t[0], True, r[1], t[4], r[2])
            n += 1
            if callback_raised is not None and raised is None:
                raised = callback_raised
        return n, raised

    def putback(self, worker: Worker, items: list[Any]) -> bool:
        """Jobs take() gave that never started (the worker process died before it
        reached them): back at the head of the queue, in their order, as if never taken.
        False, with nothing changed, if there is no memory for them.

        Raises:
            ValueError: an item is not one that take() gave.
        """
        _check_worker(worker)
        for item in items:
            if type(item) is not tuple or len(item) != 8:
                raise ValueError(f"putback() takes jobs take() gave, not {type(item).__name__}")
            job = item[3]
            if job is not None and (job._state != _RUNNING or job._queue is not self):
                raise ValueError(f"putback() takes jobs take() gave: not {job!r}")
        if not items:
            return True
        with self._lock:
            try:
                self._slots.extendleft(reversed(items))
            except MemoryError:
                return False
            for item in items:
                job = item[3]
                if job is not None:
                    job._state = _PENDING
                    job._attempts -= 1
            self._started -= len(items)
            worker._jobs_run -= len(items)
            wake = self._take_idle() if self._rate_waiter is None else None
        if wake is not None:
            wake.release()
        return True

    def abandon(self, worker: Worker, exc: BaseException) -> bool:
        """The worker is gone (it did not survive a fork, or its process died): fail
        the async job it was running, if any, with exc. True if there was one."""
        _check_worker(worker)
        with self._lock:
            job, worker._job = worker._job, None
        return job is not None and self._fail(job, exc, True)

    def _park(self, worker: Worker) -> bool:
        """Idle the worker until a push, close() or retire() wakes it: True to look for
        work again, False to leave (queue closed and drained, or worker retired)."""
        try:
            with self._lock:
                if worker._retired or (self._closed and not self._slots and not self._retrying):
                    worker._busy = False
                    # Retired just after a pusher picked it: pass that wake-up on.
                    handoff = self._take_idle() if self._slots else None
                    if self._closed and not self._slots:
                        # Drained: workers that idled after close() (behind the rate
                        # waiter, or for a retry) would wait for a wake-up nobody sends.
                        for idle in self._idle:
                            idle._wake.release()
                        self._idle.clear()
                    leave = True
                elif self._slots:
                    return True  # work arrived since the caller looked
                else:
                    self._idle.append(worker)
                    worker._busy = False
                    leave = False
            if leave:
                if handoff is not None:
                    handoff.release()
                return False
            worker._wake.acquire()
            return True
        except BaseException:
            self._unpark(worker)
            raise

    def _unpark(self, worker: Worker) -> None:
        # Going idle was interrupted (a signal handler raised on the main thread).
        with self._lock:
            worker._busy = False
            for i, idle in enumerate(self._idle):
                if idle is worker:
                    del self._idle[i]  # nobody woke it: its wake lock is still held
                    return
            # Not idle (any more): a waker may have taken it off the stack and be releasing
            # its wake lock, which this thread may or may not have consumed. A new lock
            # makes that certain, and a wake-up it may have had goes to another worker.
            worker._wake = _held_lock()
            handoff = self._take_idle() if self._slots else None
        if handoff is not None:
            handoff.release()

    # -- lifecycle ----------------------------------------------------------------------

    def close(self, cancel_pending: bool = False, broken: BaseException | None = None) -> int:
        """Accept no more jobs; wake idle workers so they drain the queue and exit.

        With cancel_pending, queued jobs are dropped (async ones marked cancelled)
        instead of run. With broken (the exception that broke the pool), queued jobs
        are dropped too, async ones failing with PoolBrokenError caused by it, and
        later pushes raise PoolBrokenError. Returns the number of jobs dropped."""
        if broken is not None and not isinstance(broken, BaseException):
            raise TypeError(f"broken must be an exception, not {type(broken).__name__}")
        cancel_pending = bool(cancel_pending)
        taken: list[_Slot] = []
        retrying: dict[object, _Slot] = {}
        with self._lock:
            self._closed = True
            if broken is not None and self._broken is None:
                self._broken = broken
            if cancel_pending or self._broken is not None:
                if self._slots:
                    taken = list(self._slots)
                    self._slots.clear()
                    self._cancelled_waiting = 0  # out of the deque with the rest
                # Jobs waiting out a retry's backoff go too.
                retrying, self._retrying = self._retrying, {}
            for worker in self._idle:
                worker._wake.release()
            self._idle.clear()
            self._release_rate_waiter()
            line = self._release_line()
        for ticket in line:
            ticket._fire()  # each finds the queue closed
        # Nothing to drop is the common case, and the only one at interpreter teardown,
        # where an Executor's weakref callback closes its queue after module globals
        # (_drop among them) may already be None.
        dropped = _drop(self, taken) if taken else 0
        return dropped + self._settle_retries(retrying, True) if retrying else dropped

    def _release_line(self) -> list[RoomTicket]:
        # Lock held, queue closed (nobody joins the line any more): empty the line,
        # every ticket marked signalled, for the caller to fire once the lock is free.
        line = list(self._line)
        self._line.clear()
        for ticket in line:
            ticket._queued = False
            ticket._signalled = True
        return line

    def retire(self, worker: Worker) -> None:
        """Ask one worker to exit after its current job (the queue stays as it is)."""
        _check_worker(worker)
        wake = None
        with self._lock:
            worker._retired = True
            if self._rate_waiter is worker:
                self._release_rate_waiter()
            for i, idle in enumerate(self._idle):
                if idle is worker:
                    del self._idle[i]
                    wake = worker._wake
                    break
        if wake is not None:
            wake.release()

    def fork_acquire(self) -> None:
        """Before os.fork(): hold the lock so the child never inherits it locked."""
        self._lock.acquire()

    def fork_release(self, in_child: bool) -> None:
        """After os.fork(): release; in the child the queue is dead (its workers did
        not survive the fork), so it is closed and what it held is dropped."""
        if not in_child:
            self._lock.release()
            return
        self._closed = True
        taken = list(self._slots)
        self._slots.clear()
        self._cancelled_waiting = 0
        retrying, self._retrying = self._retrying, {}  # their timers were the parent's
        self._idle.clear()  # their threads are gone: nobody to wake
        self._rate_waiter = None
        self._release_line()  # its submitters were threads that did not survive the fork
        self._lock.release()
        _drop(self, taken)
        self._settle_retries(retrying, False)

    # -- introspection ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_queue(self) -> int | None:
        """The most jobs it holds queued, or None: no limit."""
        return None if self._max < 0 else self._max

    @property
    def on_full(self) -> str:
        return "raise" if self._raise_when_full else "block"

    @property
    def block_timeout(self) -> float | None:
        """Seconds a blocked submit waits for room, or None: no limit."""
        return None if self._block_timeout < 0 else self._block_timeout

    @property
    def copy_context(self) -> bool:
        return self._copy_context

    @property
    def max_queue_time(self) -> float | None:
        """Seconds a job may wait in the queue before it expires, or None: no limit."""
        return None if self._max_wait < 0 else self._max_wait / 1e9

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """(count, per): at most count starts in any per seconds; or None."""
        ring = self._rate_ring
        return None if ring is None else (len(ring), self._rate_per / 1e9)

    @property
    def retry_attempts(self) -> int:
        """Runs a job gets in all (1: no retries)."""
        return self._retry_attempts

    def waiting(self) -> int:
        """Submitters waiting for room (blocked threads and oddjob.aio tickets)."""
        return len(self._line)

    def stats(
        self,
    ) -> tuple[int, int, int, int, int, int, int, int, int, int, int, Summary, Summary]:
        """(queued, running, submitted, started, completed, failed, cancelled, dropped,
        expired, retried, rejected, queue_wait, run_time), the latencies each
        (count, mean, p50, p90, p99, max) in seconds: counters, not a walk of the queue."""
        with self._lock:
            return (
                len(self._slots) - self._cancelled_waiting + len(self._retrying),
                self._started - self._finished,
                self._submitted,
                self._started,
                self._completed,
                self._failed,
                self._cancelled,
                self._dropped,
                self._expired,
                self._retried,
                self._rejected,
                self._wait_hist.summary(),
                self._run_hist.summary(),
            )

    def __len__(self) -> int:
        """Number of queued jobs (cancelled async jobs count until a worker skips them)."""
        return len(self._slots)

    def snapshot(self) -> list[_Queued]:
        """Queued jobs in FIFO order, as (function, args, kwargs, job) tuples; job is
        None for fire-and-forget jobs. Cancelled jobs are left out."""
        with self._lock:
            slots = list(self._slots)
        out: list[_Queued] = []
        for fn, args, kwargs, job, one_arg, _context, _stamp, _runs in slots:
            if job is not None:
                if job._state == _PENDING:
                    out.append((job.function, job.args, dict(job.kwargs), job))
            elif one_arg:
                out.append((fn, (args,), {}, None))
            else:
                out.append((fn, args, {} if kwargs is None else dict(kwargs), None))
        return out

    def idle_count(self) -> int:
        return len(self._idle)

    def __repr__(self) -> str:
        return f"<Queue {self._name!r} queued={len(self._slots)} idle={len(self._idle)}>"


# ----------------------------------------------------------------------------
# The module-level job calls


@final
class Dispatcher:
    """perform / async_perform for the module-level API: the pool (a name or a Pool)
    resolves to its queue with one dict lookup, then the job is queued."""

    __slots__ = ("_queues", "_resolve", "pool_type")

    def __init__(
        self,
        queues: dict[object, Any],
        resolve: Callable[[object], Any],
        pool_type: type | None = None,
    ) -> None:
        # queues: name/Pool -> queue of every running pool; resolve(pool) -> queue
        # on a miss (starts a configured pool, or raises PoolNotFoundError/TypeError).
        # pool_type: the Pool class, whose exact instances are looked up directly.
        if type(queues) is not dict:
            raise TypeError(f"queues must be a dict, not {type(queues).__name__}")
        self._queues = queues
        self._resolve = resolve
        self.pool_type = pool_type

    def _queue(self, pool: object) -> Any:
        # Only a str or a Pool is hashed here: any other object (whose __hash__ or
        # __eq__ may raise, or match a pool's name) goes to resolve, which refuses it
        # with TypeError as every other entry point does.
        if type(pool) is str or type(pool) is self.pool_type:
            try:
                return self._queues[pool]
            except KeyError:  # not running yet
                pass
        return self._resolve(pool)

    def perform(self, pool: object, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Run fn(*args, **kwargs) on a worker of pool; fire and forget."""
        self._queue(pool).push(fn, args, kwargs)

    def async_perform(
        self, pool: object, fn: Callable[..., _T], /, *args: Any, **kwargs: Any
    ) -> Job[_T]:
        """Run fn(*args, **kwargs) on a worker of pool and return its Job."""
        return self._queue(pool).push_async(fn, args, kwargs)  # type: ignore[no-any-return]


_WORK_CODE: Final = Queue._run_job.__code__
