# cython: language_level=3, embedsignature=True, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""oddjob's compiled core: the FIFO ring buffer, worker dispatch and job result slots.

Data flow::

    push*() --lock--> ring buffer of Slots --lock--> Worker.work() --> fn(...)
        \\-- wakes one idle Worker (its own semaphore, GIL released while it waits)
    async jobs: Job <-- result/exception --> Waiters (blocked in C) and done callbacks

One lock per Queue (_lock.h) guards the ring, the idle-worker stack and the state of the
Queue's Jobs. Critical sections run no Python code and free no objects, so on
GIL builds the mutex is never contended; on free-threaded builds it is the lock.
The pure-Python twin, _core_py.py, has the same names and behaviour.
"""

cimport cython
from cpython.contextvars cimport (
    PyContext_Copy,
    PyContext_CopyCurrent,
    PyContext_Enter,
    PyContext_Exit,
)
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from cpython.object cimport PyObject
from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PY_LOCK_ACQUIRED,
    PY_LOCK_INTR,
    PyLockStatus,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.string cimport memcpy, memmove

import logging
import threading
from concurrent.futures import CancelledError
from contextvars import Context
from datetime import timedelta
from time import monotonic
from types import GenericAlias

from oddjob._failures import describe_call, log_job_error
from oddjob._errors import (
    JobExpiredError, PoolBrokenError, PoolNotFoundError, QueueFullError, _NoRoom)


cdef extern from *:
    """
    /* A queued Job is referenced from the ring buffer, which the cyclic GC cannot
       see, so it cannot be garbage while queued. It is untracked meanwhile (GIL
       builds only), sparing every collection a traversal of every pending job, and
       tracked again once dequeued or dropped. */
    #ifdef Py_GIL_DISABLED
    #define OJ_FREE_THREADED 1
    #define oj_untrack(o) ((void)(o))
    #define oj_track(o) ((void)(o))
    #else
    #define OJ_FREE_THREADED 0
    #define oj_untrack(o) PyObject_GC_UnTrack(o)
    #define oj_track(o) \
        do { if (!PyObject_GC_IsTracked(o)) PyObject_GC_Track(o); } while (0)
    #endif
    """
    void oj_untrack(PyObject *)
    void oj_track(PyObject *)
    bint OJ_FREE_THREADED


cdef extern from *:
    """
    /* Fields that one thread writes (under the queue mutex) and another reads without
       it: a Job's state, the queue's lengths, a worker's busy flag, an owner's liveness,
       the closed flag. On 3.13+ (free-threaded builds among them) they are atomics: a
       state is stored with release order after the result it publishes, and loaded with
       acquire order, so a reader that sees FINISHED sees the result too (on arm64 as on
       x86-64); the rest are relaxed. Before 3.13 there is always a GIL, which orders
       plain accesses. */
    #if PY_VERSION_HEX >= 0x030D0000
    #define oj_load_state(p) _Py_atomic_load_int_acquire(p)
    #define oj_set_state(p, v) _Py_atomic_store_int_release((p), (v))
    #define oj_load_flag(p) _Py_atomic_load_int_relaxed(p)
    #define oj_set_flag(p, v) _Py_atomic_store_int_relaxed((p), (v))
    #define oj_load_int(p) _Py_atomic_load_int_relaxed(p)
    #define oj_set_int(p, v) _Py_atomic_store_int_relaxed((p), (v))
    #define oj_load_size(p) _Py_atomic_load_ssize_relaxed(p)
    #define oj_set_size(p, v) _Py_atomic_store_ssize_relaxed((p), (v))
    #define oj_dec_size(p) _Py_atomic_add_ssize((p), -1)
    #define oj_swap_flag(p, v) _Py_atomic_exchange_int((p), (v))
    #else
    #define oj_load_state(p) (*(p))
    #define oj_set_state(p, v) (*(p) = (v))
    #define oj_load_flag(p) (*(p))
    #define oj_set_flag(p, v) (*(p) = (v))
    #define oj_load_int(p) (*(p))
    #define oj_set_int(p, v) (*(p) = (v))
    #define oj_load_size(p) (*(p))
    #define oj_set_size(p, v) (*(p) = (v))
    static inline Py_ssize_t oj_dec_size(Py_ssize_t *p) { return (*p)--; }
    static inline int oj_swap_flag(int *p, int v) { int old = *p; *p = v; return old; }
    #endif
    """
    int oj_load_state(int *) nogil
    void oj_set_state(int *, int) nogil
    bint oj_load_flag(bint *) nogil
    void oj_set_flag(bint *, bint) nogil
    int oj_load_int(int *) nogil
    void oj_set_int(int *, int) nogil
    Py_ssize_t oj_load_size(Py_ssize_t *) nogil
    void oj_set_size(Py_ssize_t *, Py_ssize_t) nogil
    Py_ssize_t oj_dec_size(Py_ssize_t *) nogil  # returns the value before
    bint oj_swap_flag(bint *, bint) nogil  # returns the value before


cdef extern from "Python.h":
    void _incref "Py_INCREF"(PyObject *) nogil
    void _xincref "Py_XINCREF"(PyObject *) nogil
    void _decref "Py_DECREF"(PyObject *)
    void _xdecref "Py_XDECREF"(PyObject *)
    long long PY_TIMEOUT_MAX
    long long LLONG_MIN
    PyLockStatus PyThread_acquire_lock_timed(
        PyThread_type_lock, long long microseconds, int intr_flag) nogil
    unsigned long PyThread_get_thread_ident() nogil


# Tunables.
cdef enum:
    # Ring capacity a new queue starts with (a Slot is 40 bytes: 2.5 KiB).
    INITIAL_CAPACITY = 64
    # A drained ring larger than this shrinks back to INITIAL_CAPACITY, so that one
    # burst of a million jobs does not pin 40 MB for the life of the pool.
    SHRINK_ABOVE = 4096
    # Refs are (queue serial << REF_SHIFT) | job number: unique across pools and time.
    REF_SHIFT = 40
    # await_many sleeps once for all the jobs left after this many were not done when
    # their turn came (jobs being collected faster than they finish need no more).
    COUNTDOWN_AFTER = 2
    # Free-threaded builds: how long an idle worker spins for work before it sleeps
    # (nanoseconds): some 20 submits' worth, about what one sleep and wake-up costs.
    WORK_SPIN_NS = 3000
    # The largest run time (ns) one sample adds to the estimate that sets how many jobs
    # are timed (see _sample_mask_for): above it, every job is timed anyway.
    RUN_SAMPLE_CAP = 8000
    # Queue length from which a push's queue wait is sampled at most one in 16 (see _stamp).
    DEEP_QUEUE = 16

# Slot flags.
cdef enum:
    SLOT_ONE_ARG = 1   # Slot.args holds the single argument itself (perform_many)
    SLOT_SHARED_CONTEXT = 2  # Slot.obj is a context shared (a batch's): run in a copy
    SLOT_JOB = 4       # Slot.obj is an async job's Job (whose fields hold the rest)

# Job states; done() is state >= FINISHED.
cdef enum:
    PENDING = 0
    RUNNING = 1
    FINISHED = 2
    CANCELLED = 3

IMPLEMENTATION = "compiled"

_locals = threading.local()
# Queue serials, the high bits of every Job ref. A C counter under its own lock: no
# reliance on the GIL (or on itertools.count being atomic) on free-threaded builds.
cdef oj_lock_t _serial_lock
cdef unsigned long long _last_serial = 0
if oj_lock_init(&_serial_lock) != 0:
    raise MemoryError("cannot initialise a lock")
_STATE_NAMES = ("pending", "running", "finished", "cancelled")
_REPLACING = "; replacing its worker"


cdef inline str _attempts_note(Py_ssize_t runs):
    return "" if runs <= 1 else f" on attempt {runs}, its last"
# An int timeout above this is forever (threading.TIMEOUT_MAX is about 9.2e9 seconds).
cdef object _FOREVER_INT = 2**62


# ----------------------------------------------------------------------------
# Helpers


cpdef double seconds(object timeout, str what="timeout") except? -2.0:
    """Validate a timeout: None means forever (-1.0); seconds or timedelta; not negative.

    A timeout longer than the platform can wait (threading.TIMEOUT_MAX, inf, an int
    beyond float range) means forever too, never OverflowError."""
    cdef double value
    if timeout is None:
        return -1.0
    if type(timeout) is float:  # the common case first, with no conversion call
        value = <double>timeout
    elif isinstance(timeout, timedelta):
        value = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if isinstance(timeout, int) and timeout > _FOREVER_INT:
            return -1.0  # compared exactly, before a conversion that could overflow
        value = timeout
    else:
        raise TypeError(
            f"{what} must be a number of seconds, a timedelta or None, "
            f"not {type(timeout).__name__}")
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{what} must not be negative, got {timeout!r}")
    if value >= <double>PY_TIMEOUT_MAX / 1e6:
        return -1.0
    return value


cdef inline int _check_context(object context) except -1:
    if context is not None and not isinstance(context, Context):
        raise TypeError(f"context must be a contextvars.Context, not {type(context).__name__}")
    return 0


cdef inline int _check_callable(object fn) except -1:
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    return 0


# Imported with the core: a Job collected at interpreter exit can no longer import.
_log = logging.getLogger("oddjob")


cdef object _log_unretrieved(str job, object exc, object tb):
    _log.error(
        "Job exception was never retrieved: %s", job, exc_info=(type(exc), exc, tb))


cdef object _log_callback_error(object job, object callback):
    _log.exception(
        "done callback %r of %r raised", callback, job)


# ----------------------------------------------------------------------------
# Telemetry: the events the core emits (oddjob.telemetry attaches the handlers)

cdef enum:
    EV_JOB_START = 0
    EV_JOB_STOP = 1
    EV_JOB_EXCEPTION = 2
    EV_JOB_CANCELLED = 3
    EV_JOB_DROPPED = 4
    EV_QUEUE_FULL = 5
    EV_JOB_EXPIRED = 6
    # Events that need the job timed (its queue wait and duration).
    TIMED_EVENTS = (1 << EV_JOB_START) | (1 << EV_JOB_STOP) | (1 << EV_JOB_EXCEPTION)

# A C global: indexed on every event, never looked up in the module's dict.
cdef tuple _EVENT_NAMES = ("job.start", "job.stop", "job.exception", "job.cancelled",
                           "job.dropped", "queue.full", "job.expired")
CORE_EVENTS = frozenset(_EVENT_NAMES)

# Bit i set: event i has handlers. Read (relaxed) on the hot path: with no handler
# attached, a job pays this one load and branch.
cdef Py_ssize_t _event_mask = 0
# Per event index, a tuple of (handler_id, handler); swapped whole under _event_lock, and
# read under it on free-threaded builds, so that a reader's tuple is never freed under it.
cdef tuple _event_handlers = (None,) * len(_EVENT_NAMES)
cdef object _on_handler_error = None
cdef oj_lock_t _event_lock
if oj_lock_init(&_event_lock) != 0:
    raise MemoryError("cannot initialise a lock")


def set_handlers(table, on_error):
    """Install telemetry handlers: table maps event names to tuples of
    (handler_id, handler); on_error(handler_id, event, exc) is called when one raises."""
    if not callable(on_error):
        raise TypeError(f"on_error must be callable, not {type(on_error).__name__}")
    handlers = [None] * len(_EVENT_NAMES)
    cdef Py_ssize_t mask = 0
    for i, name in enumerate(_EVENT_NAMES):
        entries = tuple(table.get(name, ()))
        for entry in entries:
            if type(entry) is not tuple or len(entry) != 2 or not callable(entry[1]):
                raise TypeError(f"{name}: handlers must be (handler_id, callable) pairs")
        if entries:
            handlers[i] = entries
            mask |= 1 << i
    fresh = tuple(handlers)
    global _event_handlers, _on_handler_error
    oj_lock(&_event_lock)
    _old = _event_handlers  # held here, so the swap frees nothing under the lock
    _old_error = _on_handler_error
    _event_handlers = fresh
    _on_handler_error = on_error
    oj_unlock(&_event_lock)
    oj_set_size(&_event_mask, mask)


cdef inline tuple _handlers_of(int event):
    cdef tuple table
    if OJ_FREE_THREADED:
        oj_lock(&_event_lock)
        table = _event_handlers
        oj_unlock(&_event_lock)
    else:
        table = _event_handlers
    return <tuple>table[event]


cdef int _emit(int event, dict measurements, dict metadata, bint catch_all) except -1:
    """Call event's handlers. One that raises is reported to oddjob.telemetry (which
    detaches it); on a worker (catch_all) even a BaseException must not lose the job."""
    handlers = _handlers_of(event)
    if handlers is None:
        return 0  # detached meanwhile
    name = _EVENT_NAMES[event]
    for entry in handlers:
        try:
            (<tuple>entry)[1](name, measurements, metadata)
        except BaseException as exc:
            if not catch_all and not isinstance(exc, Exception):
                raise
            _handler_raised((<tuple>entry)[0], name, exc)
    return 0


cdef object _handler_raised(object handler_id, str name, object exc):
    oj_lock(&_event_lock)
    on_error = _on_handler_error
    oj_unlock(&_event_lock)
    try:
        on_error(handler_id, name, exc)
    except Exception:
        pass  # telemetry's own report failed (out of memory): the job goes on


cdef inline object _seconds_or_none(long long ns):
    return ns / 1e9 if ns >= 0 else None


cdef int _job_event(int event, object pool, object fn, object ref, long long wait_ns,
                    long long run_ns, object exc) except -1:
    metadata = {"pool": pool, "function": fn, "ref": ref}
    if event == EV_JOB_START or event == EV_JOB_EXPIRED:
        measurements = {"queue_wait": _seconds_or_none(wait_ns)}
    elif event == EV_JOB_STOP or event == EV_JOB_EXCEPTION:
        measurements = {"duration": _seconds_or_none(run_ns),
                        "queue_wait": _seconds_or_none(wait_ns)}
        if exc is not None:
            metadata["exception"] = exc
    else:
        measurements = {}
    # On a worker (every job event but job.cancelled) even a BaseException from a
    # handler must not lose the worker.
    return _emit(event, measurements, metadata, event != EV_JOB_CANCELLED)


# Stats: how a finished job is counted (Queue._fold).
cdef enum:
    OUTCOME_NONE = 0
    OUTCOME_COMPLETED = 1
    OUTCOME_FAILED = 2
    OUTCOME_RETRIED = 3  # the run failed and the job waits for another


cdef inline unsigned long long _sample_mask_for(long long run_ns) noexcept nogil:
    # Timing a job costs three clock reads (~50 ns): time every job that runs for a
    # couple of microseconds or more, and fewer of the shorter ones, so that timing
    # stays within ~2% of the work (a no-op job: one in 64).
    if run_ns >= 2000:
        return 0
    if run_ns >= 1000:
        return 1
    if run_ns >= 500:
        return 3
    if run_ns >= 200:
        return 15
    return 63


@cython.final
cdef class Histogram:
    """A latency histogram on its own (the queue keeps two inside): record(ns) and
    summary() -> (count, mean, p50, p90, p99, max), in seconds."""

    cdef oj_hist_t *_h

    def __cinit__(self):
        self._h = <oj_hist_t *>PyMem_RawCalloc(1, sizeof(oj_hist_t))
        if self._h == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_RawFree(self._h)

    def record(self, long long ns):
        oj_hist_record(self._h, ns)

    def summary(self):
        return _summary(self._h)


cdef tuple _summary(oj_hist_t *h):
    cdef double out[6]
    oj_hist_summary(h, out)
    return _summary_tuple(out)


cdef inline tuple _summary_tuple(const double *out):
    # (count, mean, p50, p90, p99, max) from oj_hist_summary's array.
    return (<unsigned long long>out[0], out[1], out[2], out[3], out[4], out[5])


# ----------------------------------------------------------------------------
# Owners: a job's link to the thread that created it


@cython.final
cdef class Owner:
    def __init__(self):
        oj_set_flag(&self._alive, True)

    @property
    def alive(self):
        return oj_load_flag(&self._alive)


@cython.final
cdef class _OwnerGuard:
    # Lives in the owner thread's thread-locals; their teardown marks the owner dead.
    cdef Owner owner

    def __dealloc__(self):
        if self.owner is not None:
            oj_set_flag(&self.owner._alive, False)


cdef Owner _current_owner():
    try:
        return <Owner>_locals.owner
    except AttributeError:
        pass
    owner = Owner()
    guard = _OwnerGuard()
    guard.owner = owner
    _locals.owner_guard = guard
    _locals.owner = owner
    return owner


def current_owner():
    """The Owner token of the calling thread (alive until the thread ends)."""
    return _current_owner()


# ----------------------------------------------------------------------------
# Waiters: what a thread blocks on while a job finishes


@cython.final
cdef class Waiter:
    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError("cannot allocate a lock")
        # Held from birth: block() waits until a finishing job releases it.
        PyThread_acquire_lock(self.lock, WAIT_LOCK)

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef int block(self, double timeout) except -1:
        """Wait for a release: 1 if released, 0 on timeout (timeout < 0: forever).

        Signals interrupt the wait so that Ctrl-C reaches the main thread; a
        raising signal handler propagates its exception."""
        cdef double deadline = monotonic() + timeout if timeout >= 0 else 0.0
        cdef double left
        cdef long long us
        cdef PyLockStatus r
        while True:
            if timeout < 0:
                us = -1
            else:
                left = deadline - monotonic()
                if left <= 0:
                    us = 0
                elif left * 1e6 >= <double>PY_TIMEOUT_MAX:
                    us = PY_TIMEOUT_MAX
                else:
                    us = <long long>(left * 1e6)
            with nogil:
                r = PyThread_acquire_lock_timed(self.lock, us, 1)
            if r == PY_LOCK_ACQUIRED:
                return 1
            if r == PY_LOCK_INTR:
                PyErr_CheckSignals()
                continue
            if us == 0 or (timeout >= 0 and monotonic() >= deadline):
                return 0

    cdef void consume(self) noexcept:
        # The release is already on its way (the job finished): take it, uninterrupted.
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)


cdef Waiter _get_waiter():
    cdef Waiter waiter
    try:
        waiter = <Waiter>_locals.waiter
    except AttributeError:
        waiter = Waiter()
        _locals.waiter = waiter
    if waiter.in_use:  # re-entered from a signal handler: use a fresh one
        waiter = Waiter()
    waiter.in_use = True
    return waiter


@cython.final
cdef class _Countdown:
    # One wake-up for a whole await_many instead of one per job: each job counts down
    # as it finishes (in _notify, with no Python code), and the waiting thread is
    # released once every job is done, or as soon as one fails or is cancelled.
    # (Its fields are in _core.pxd. Its Waiter is a fresh one, never a thread's
    # reused one: a count-down after a timeout must not release a later wait.)

    def __cinit__(self, Py_ssize_t n):
        self.waiter = Waiter()
        self.remaining = n

    cdef void count(self, bint failed) noexcept:
        if (oj_dec_size(&self.remaining) == 1 or failed) and not oj_swap_flag(
                &self.released, True):
            PyThread_release_lock(self.waiter.lock)


# ----------------------------------------------------------------------------
# Room tickets: submitters waiting for room in a bounded queue


@cython.final
cdef class RoomTicket:
    """A place in a bounded queue's line of submitters waiting for room.

    oddjob.aio makes one with a wake callable and passes it to a push; a push that
    finds no room raises _NoRoom with the ticket in line, and wake() is called (on
    whichever thread freed the room, without the queue's lock) once the push may fit:
    the submitter pushes again with the same ticket, or gives up with withdraw().
    Blocked threads get one inside the core, with a Waiter instead of wake."""

    def __init__(self, wake):
        _check_callable(wake)
        self.wake = wake

    @property
    def waiting(self):
        """True while in a queue's line."""
        return self.queued

    cdef int fire(self) except -1:
        if self.waiter is not None:
            PyThread_release_lock(self.waiter.lock)
        elif self.wake is not None:
            try:
                self.wake()
            except Exception:
                _log.exception("room ticket wake-up %r raised", self.wake)
        return 0


cdef int _fire_all(list line) except -1:
    if line is not None:
        for ticket in line:
            (<RoomTicket>ticket).fire()
    return 0


# ----------------------------------------------------------------------------
# Workers


@cython.final
cdef class Worker:
    """The core's side of one worker thread: its wake-up semaphore and busy flag."""

    def __cinit__(self):
        self._wake = PyThread_allocate_lock()
        if self._wake == NULL:
            raise MemoryError("cannot allocate a lock")
        PyThread_acquire_lock(self._wake, WAIT_LOCK)

    def __init__(self, name=None):
        self.name = name

    def __dealloc__(self):
        if self._wake != NULL:
            PyThread_free_lock(self._wake)

    @property
    def busy(self):
        """True from taking a job until the worker next finds the queue empty."""
        return oj_load_flag(&self._busy)

    @property
    def retired(self):
        return oj_load_flag(&self._retired)

    @property
    def jobs_run(self):
        """Jobs this worker has run, the one it is running now included."""
        return oj_load_size(&self._jobs_run)

    def __repr__(self):
        return f"<Worker {self.name!r} {'busy' if oj_load_flag(&self._busy) else 'idle'}>"


cdef inline void _wake(PyObject *worker) noexcept:
    PyThread_release_lock((<Worker>worker)._wake)
    _decref(worker)


# ----------------------------------------------------------------------------
# Jobs


# No freelist: it would reuse Jobs whose finalizer (__del__) has run once, and never
# run it again (measured: dropping it costs 2-4% of async_perform throughput).
@cython.final
cdef class Job:
    """Handle of an async job: its result slot, cancel, callbacks and awaiting."""

    __oddjob_job__ = True

    def __init__(self, *args, **kwargs):
        raise TypeError("Job objects are created by async_perform, not directly")

    @property
    def ref(self):
        return _ref_of(self)

    @property
    def args(self):
        return (self._args,) if self._one_arg else self._args

    @property
    def kwargs(self):
        return {} if self._kwargs is None else self._kwargs

    @property
    def owner(self):
        return self._owner

    @property
    def async_(self):
        return True

    @property
    def attempts(self):
        """How many times the job has started (a retry runs it again)."""
        return oj_load_int(&self._attempts)

    def done(self):
        return oj_load_state(&self._state) >= FINISHED

    def cancelled(self):
        return oj_load_state(&self._state) == CANCELLED

    def running(self):
        return oj_load_state(&self._state) == RUNNING

    def cancel(self):
        """Cancel the job if it is still queued; True if it is (now) cancelled."""
        self._q()
        return self._cancel(True)

    cdef bint _cancel(self, bint queued) except -1:
        # queued: its slot is still in the ring (a worker skips it later), rather than
        # taken out by close().
        cdef Queue q = self._queue
        cdef list listeners = None
        cdef bint now = False
        cdef bint was_retrying = False
        oj_lock(&q._mutex)
        if self._state == PENDING:
            oj_set_state(&self._state, CANCELLED)
            listeners = self._listeners
            self._listeners = None
            q._cancelled += 1
            if q._retry_waiting and self in q._retrying:
                # Waiting out a retry's backoff, not in the ring: its timer finds it gone.
                q._retrying.discard(self)  # self is referenced: nothing freed here
                q._retry_waiting -= 1
                was_retrying = True
            elif queued:
                q._cancelled_waiting += 1
            now = True
        elif self._state != CANCELLED:
            oj_unlock(&q._mutex)
            return False
        oj_unlock(&q._mutex)
        if was_retrying:
            q._wake_if_drained()
            q._forget_retry(self)
        escaped = _notify(self, listeners) if listeners is not None else None
        # After its waiters and callbacks are released: a handler raising SystemExit &
        # co must not leave them waiting.
        if now and oj_load_size(&_event_mask) & (1 << EV_JOB_CANCELLED):
            _job_event(EV_JOB_CANCELLED, self.pool, self.function, _ref_of(self), -1, -1, None)
        if escaped is not None:
            raise escaped
        return True

    def result(self, timeout=None):
        """Wait for the job (timeout seconds; None waits forever) and return its result.

        Re-raises the job's exception; TimeoutError if it is not done in time (the
        job goes on and can be awaited again); CancelledError if it was cancelled."""
        if not self._wait(timeout):
            raise TimeoutError(f"job {self.ref} did not finish within {timeout} seconds")
        return self._outcome()

    def exception(self, timeout=None):
        """Wait like result(), then return the job's exception (None if it succeeded)."""
        if not self._wait(timeout):
            raise TimeoutError(f"job {self.ref} did not finish within {timeout} seconds")
        if oj_load_state(&self._state) == CANCELLED:
            raise CancelledError()
        self._retrieved = True
        return self._exception

    def _failed(self):
        """Done, and raised or was cancelled (internal: the exception is not marked
        retrieved by looking)."""
        cdef int state = oj_load_state(&self._state)
        return state == CANCELLED or (state == FINISHED and self._exception is not None)

    def add_done_callback(self, fn):
        """Call fn(job) when the job is done (now, if it already is)."""
        _check_callable(fn)
        if self._listen(fn):
            return
        try:
            fn(self)
        except Exception:
            _log_callback_error(self, fn)

    def __await__(self):
        from oddjob._aio import await_job

        return await_job(self).__await__()

    __class_getitem__ = classmethod(GenericAlias)

    def __del__(self):
        # As asyncio does for tasks: a failure nobody read is logged, not lost (run by
        # the cyclic GC too, before it clears a cycle). The record gets the repr: it
        # must not keep the Job alive.
        if (self._exception is not None and not self._retrieved
                and oj_load_state(&self._state) == FINISHED):
            _log_unretrieved(repr(self), self._exception, self._result)

    def __repr__(self):
        name = getattr(self.function, "__qualname__", None) or repr(self.function)
        return (f"<Job ref={self.ref} pool={self.pool!r} fn={name} "
                f"{_STATE_NAMES[oj_load_state(&self._state)]}>")

    cdef inline Queue _q(self):
        # Every method that takes the queue lock goes through here: a Job made by
        # Job.__new__(Job) has no queue, and must not lock memory through None.
        if self._queue is None:
            raise TypeError("this Job was never initialised: Jobs come from async_perform")
        return self._queue

    cdef object _outcome(self):
        self._retrieved = True
        if oj_load_state(&self._state) == CANCELLED:
            raise CancelledError()
        if self._exception is not None:
            # From its own traceback each time, so re-reading never grows it.
            # (_result holds that traceback: a failed job has no result to keep.)
            raise self._exception.with_traceback(self._result)
        return self._result

    cdef int _wait(self, object timeout) except -1:
        """1 once the job is done, 0 if timeout (None/seconds/timedelta) ran out."""
        cdef double t = seconds(timeout)
        cdef Waiter waiter
        cdef int got
        self._q()  # an uninitialised Job raises, whatever the timeout
        if oj_load_state(&self._state) >= FINISHED:
            return 1
        if t == 0.0:
            return 0
        waiter = _get_waiter()
        if not self._listen(waiter):
            waiter.in_use = False
            return 1
        try:
            got = waiter.block(t)
        except BaseException:
            self._unwait(waiter)
            raise
        if not got and self._unwait(waiter):
            return 0
        waiter.in_use = False
        return 1

    cdef bint _listen(self, object listener) except -1:
        """Add a listener (a Waiter, a _Countdown or a done callback) that _notify
        reaches when the job is done: True if added, False if the job is done already
        (the caller acts on that itself)."""
        cdef Queue q = self._q()
        cdef list fresh = [listener]  # built before locking: allocation may run the GC
        oj_lock(&q._mutex)
        if self._state >= FINISHED:
            oj_unlock(&q._mutex)
            return False
        if self._listeners is None:
            self._listeners = fresh
        else:
            self._listeners.append(listener)
        oj_unlock(&q._mutex)
        return True

    cdef bint _unwait(self, Waiter waiter) except? -1:
        """Withdraw a waiter that stopped waiting: True if withdrawn before the job
        finished; else the finishing thread is releasing it, so take that release."""
        cdef Queue q = self._queue
        cdef list listeners
        cdef Py_ssize_t i
        cdef bint removed = False
        oj_lock(&q._mutex)
        listeners = self._listeners
        if listeners is not None:
            for i in range(len(listeners)):
                if listeners[i] is waiter:
                    del listeners[i]
                    removed = True
                    break
        oj_unlock(&q._mutex)
        if not removed:
            waiter.consume()
        waiter.in_use = False
        return removed


cdef object _ref_of(Job job):
    # Computed in C while it fits in 64 bits (the first 2**24 queues); past that, in
    # Python ints.
    if job._queue is None:  # never initialised (Job.__new__(Job))
        return 0
    cdef unsigned long long serial = job._queue._serial
    if serial < (1ULL << (64 - REF_SHIFT)):
        return (serial << REF_SHIFT) | job._ref
    return (int(serial) << REF_SHIFT) | job._ref


cdef inline bint _failed(Job job) noexcept:
    # Done and not a result: raised, or cancelled.
    return job._exception is not None or oj_load_state(&job._state) == CANCELLED


cdef object _notify(Job job, list listeners):
    """Release every waiter first (no Python code runs in between), then run the
    callbacks. An Exception from a callback is logged; a BaseException (SystemExit,
    KeyboardInterrupt) is returned, after every callback has run, for the caller
    to raise or report."""
    escaped = None
    for listener in listeners:
        if type(listener) is Waiter:
            PyThread_release_lock((<Waiter>listener).lock)
        elif type(listener) is _Countdown:
            (<_Countdown>listener).count(_failed(job))
    for listener in listeners:
        if type(listener) is not Waiter and type(listener) is not _Countdown:
            try:
                listener(job)
            except Exception:
                _log_callback_error(job, listener)
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
    return escaped


cdef inline double _time_left(double t, double deadline):
    # Seconds left before deadline (0.0 once past it), or -1.0 when t means forever.
    cdef double left
    if t < 0:
        return -1.0
    left = deadline - monotonic()
    return left if left > 0 else 0.0


def wait_many(jobs, timeout=5.0):
    """Results of jobs in their order within one overall deadline.

    Raises the first failure seen (a job already failed when the call starts wins,
    then in order); TimeoutError leaves every job collectable later."""
    cdef double t = seconds(timeout)
    cdef double deadline = monotonic() + t if t >= 0 else 0.0
    cdef double left
    cdef Job job
    cdef list seq = list(jobs)
    cdef Py_ssize_t i, n = len(seq)
    cdef list results
    cdef Py_ssize_t misses = 0  # jobs not done yet when their turn came
    cdef bint counted = False   # slept once on a _Countdown already
    for i in range(n):
        item = seq[i]
        if type(item) is Job:
            job = <Job>item
            if oj_load_state(&job._state) == FINISHED and job._exception is not None:
                job._outcome()
        elif not getattr(type(item), "__oddjob_job__", False):
            raise TypeError(f"await_many takes Jobs, got {type(item).__name__} at index {i}")
    results = [None] * n
    for i in range(n):
        item = seq[i]
        left = _time_left(t, deadline)
        if type(item) is Job:
            job = <Job>item
            if oj_load_state(&job._state) < FINISHED and left != 0.0:
                misses += 1
                if misses == COUNTDOWN_AFTER and not counted:
                    # The jobs finish no faster than they are collected: sleep once
                    # for all that are left (woken early by a failure), not once each.
                    counted = True
                    _sleep_for_rest(seq, i, left)
                    left = _time_left(t, deadline)
            if not job._wait(None if left < 0 else left):
                raise TimeoutError(
                    f"await_many: {n - i} of {n} jobs not done within {timeout} seconds")
            results[i] = job._outcome()
        else:  # a Job of the other core implementation
            results[i] = item.result(None if left < 0 else left)
    return results


cdef int _sleep_for_rest(list seq, Py_ssize_t start, double timeout) except -1:
    """Block until every Job of this core in seq[start:] is done, one of them fails, or
    timeout (< 0: forever) runs out: one wake-up instead of one per job."""
    cdef list waiting = []
    cdef Job job
    cdef Py_ssize_t i
    for i in range(start, len(seq)):
        item = seq[i]
        if type(item) is Job:
            job = <Job>item
            if oj_load_state(&job._state) < FINISHED:
                waiting.append(job)
            elif _failed(job):
                return 0  # the walk in order reaches this failure without sleeping
    if len(waiting) < 2:
        return 0  # the per-job wait that follows costs no more
    cdef _Countdown countdown = _Countdown(len(waiting))
    for item in waiting:
        job = <Job>item
        if not job._listen(countdown):
            countdown.count(_failed(job))
    countdown.waiter.block(timeout)
    return 0


# ----------------------------------------------------------------------------
# The queue


cdef inline void _spin_for_work(Py_ssize_t *count, bint *closed, bint *retired) noexcept nogil:
    # Pause hints for up to WORK_SPIN_NS, until a job is queued (or the queue closes,
    # or the worker is retired): reads only, so it bounces no cache line. Timed, not
    # counted: a pause hint takes 10 ns on one CPU and 40 on another.
    cdef long long now = oj_now_ns()
    cdef long long deadline = now + WORK_SPIN_NS
    cdef int _i
    while 0 <= now < deadline:  # a failing clock (-1) ends the spin
        for _i in range(32):
            if oj_load_size(count) or oj_load_flag(closed) or oj_load_flag(retired):
                return
            oj_cpu_relax()
        now = oj_now_ns()


cdef void _release_refs(PyObject **refs, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    if refs == NULL:
        return
    for i in range(n):
        _decref(refs[i])
    PyMem_RawFree(refs)


cdef void _count_plain(Queue q, Py_ssize_t plain) noexcept:
    # Fire-and-forget jobs dropped by close() have no Job to count them: cancelled, or
    # failed with the pool.
    oj_lock(&q._mutex)
    if q._broken is not None:
        q._failed += plain
    else:
        q._cancelled += plain
    oj_unlock(&q._mutex)


cdef object _drop(Queue q, Slot *taken, Py_ssize_t n):
    """Without the mutex: settle dropped async jobs (cancelled, or failed with
    PoolBrokenError once q is broken), release every reference, and return how many
    jobs were dropped (async jobs already cancelled do not count). Every job is
    settled even if a done callback raises; the first such exception is raised at
    the end."""
    cdef Py_ssize_t i, dropped = 0, plain = 0
    cdef Job job
    cdef bint tell = oj_load_size(&_event_mask) & (1 << EV_JOB_CANCELLED)
    escaped = None
    if taken == NULL:
        return 0
    for i in range(n):
        if not taken[i].flags & SLOT_JOB:
            plain += 1
            if tell and q._broken is None:
                try:
                    _job_event(EV_JOB_CANCELLED, q.name, <object>taken[i].fn, None, -1, -1,
                               None)
                except BaseException as exc:
                    if escaped is None:
                        escaped = exc
            continue
        oj_track(taken[i].obj)
        job = <Job>taken[i].obj
        try:
            if oj_load_state(&job._state) != PENDING:
                continue
            if q._broken is not None:
                q._fail(job, _closed_error(q), False)
                dropped += 1
            elif job._cancel(False):
                dropped += 1
        except BaseException as exc:
            dropped += 1
            if escaped is None:
                escaped = exc
    _count_plain(q, plain)
    dropped += plain
    for i in range(n):
        _xdecref(taken[i].fn)
        _xdecref(taken[i].args)
        _xdecref(taken[i].kwargs)
        _xdecref(taken[i].obj)
    PyMem_RawFree(taken)
    if escaped is not None:
        raise escaped
    return dropped


@cython.final
cdef class _Retrying:
    """A fire-and-forget job waiting out its retry backoff (internal)."""

    @property
    def function(self):
        return self.fn


cdef _Retrying _retrying_record(object fn, object args, object kwargs, object context,
                                int flags, int runs, object error):
    cdef _Retrying r = _Retrying.__new__(_Retrying)
    r.fn = fn
    r.args = args
    r.kwargs = kwargs
    r.context = context
    r.flags = flags
    r.runs = runs
    r.error = error
    return r


cdef inline bint _expired(Queue q, long long stamp, long long now) noexcept:
    # Mutex held: the job queued at stamp waited longer than max_queue_time (every push
    # is timed then). The stamp by value: the worker's slot copy stays in registers.
    return q._max_wait_ns >= 0 and stamp != 0 and now - stamp > q._max_wait_ns


cdef object _closed_error(Queue q):
    """What a push to a closed queue raises: PoolNotFoundError, or PoolBrokenError
    (its __cause__ the initializer's exception) if the pool is broken."""
    if q._broken is None:
        return PoolNotFoundError(f"pool {q.name!r} is stopped and accepts no more jobs")
    error = PoolBrokenError(
        f"pool {q.name!r} is broken: its workers' initializer keeps failing; "
        "stop the pool and start it again")
    error.__cause__ = q._broken
    return error


@cython.final
cdef class Queue:
    """A pool's FIFO queue and dispatcher. Worker threads call work(); submitters
    call the push methods; close() lets the workers drain and exit."""

    def __cinit__(self, name, max_queue=None, on_full="block", block_timeout=None,
                  copy_context=True, max_queue_time=None, rate_limit=None,
                  Py_ssize_t retry_attempts=1, retry_on=(), retry_later=None,
                  retry_forget=None):
        cdef double wait_limit, per
        cdef Py_ssize_t i
        if max_queue is None:
            self._max = -1
        elif type(max_queue) is int and max_queue >= 1:
            self._max = max_queue
            self._line = []  # made now: a list made under the mutex could run the GC
        else:
            raise ValueError(f"max_queue must be an int >= 1 or None, not {max_queue!r}")
        if type(on_full) is not str or on_full not in ("block", "raise"):
            raise ValueError(f"on_full must be 'block' or 'raise', not {on_full!r}")
        self._raise_when_full = on_full == "raise"
        self._block_timeout = seconds(block_timeout, "block_timeout")
        self._copy_context = bool(copy_context)
        wait_limit = seconds(max_queue_time, "max_queue_time")
        self._max_wait_ns = -1 if wait_limit < 0 else <long long>min(wait_limit * 1e9, 2.0**62)
        if rate_limit is not None:
            if (type(rate_limit) is not tuple or len(rate_limit) != 2
                    or type(rate_limit[0]) is not int or not 1 <= rate_limit[0] <= 10**7):
                raise ValueError(
                    f"rate_limit must be a (count, per) tuple, count an int in 1..10**7, "
                    f"not {rate_limit!r}")
            per = seconds(rate_limit[1], "rate_limit per")
            if per <= 0:
                raise ValueError(f"rate_limit per must be > 0 seconds and finite, not "
                                 f"{rate_limit[1]!r}")
            self._rate_count = rate_limit[0]
            self._rate_per_ns = <long long>min(per * 1e9, 2.0**62)
            self._rate_ring = <long long *>PyMem_RawMalloc(self._rate_count * sizeof(long long))
            if self._rate_ring == NULL:
                raise MemoryError()
            for i in range(self._rate_count):
                self._rate_ring[i] = LLONG_MIN // 4  # long ago: the first count are free
        if retry_attempts < 1:
            raise ValueError(f"retry_attempts must be >= 1, not {retry_attempts}")
        if retry_attempts > 1:
            if type(retry_on) is not tuple or not callable(retry_later):
                raise TypeError("retry needs retry_on (a tuple) and retry_later (a callable)")
            self._retrying = set()
        self._retry_attempts = retry_attempts
        self._retry_on = retry_on
        self._retry_later = retry_later
        self._retry_forget = retry_forget
        self._gated = self._rate_ring != NULL or self._max_wait_ns >= 0
        if oj_lock_init(&self._mutex) != 0:
            raise MemoryError("cannot initialise a lock")
        self._lock_ready = True
        self.name = name
        global _last_serial
        oj_lock(&_serial_lock)
        _last_serial += 1
        self._serial = _last_serial
        oj_unlock(&_serial_lock)
        self._slots = <Slot *>PyMem_RawMalloc(INITIAL_CAPACITY * sizeof(Slot))
        self._idle = <PyObject **>PyMem_RawMalloc(8 * sizeof(PyObject *))
        self._wait_hist = <oj_hist_t *>PyMem_RawCalloc(1, sizeof(oj_hist_t))
        self._run_hist = <oj_hist_t *>PyMem_RawCalloc(1, sizeof(oj_hist_t))
        if (self._slots == NULL or self._idle == NULL or self._wait_hist == NULL
                or self._run_hist == NULL):
            raise MemoryError()
        self._cap = INITIAL_CAPACITY
        self._idle_cap = 8
        self._run_estimate = -1  # no run time measured yet

    def __dealloc__(self):
        cdef Py_ssize_t i
        cdef Slot *s
        if self._lock_ready:
            oj_lock_free(&self._mutex)
        if self._slots != NULL:
            for i in range(self._count):
                s = &self._slots[(self._head + i) & (self._cap - 1)]
                _xdecref(s.fn)
                _xdecref(s.args)
                _xdecref(s.kwargs)
                if s.flags & SLOT_JOB:
                    oj_track(s.obj)
                _xdecref(s.obj)
            PyMem_RawFree(self._slots)
        if self._idle != NULL:
            for i in range(self._idle_count):
                _decref(self._idle[i])
            PyMem_RawFree(self._idle)
        PyMem_RawFree(self._wait_hist)
        PyMem_RawFree(self._run_hist)
        PyMem_RawFree(self._rate_ring)

    # -- ring buffer (call with the mutex held) --------------------------------

    cdef int _reserve(self, Py_ssize_t extra) noexcept nogil:
        """Make room for extra more slots; -1 (no exception set) if out of memory."""
        cdef Py_ssize_t need = self._count + extra
        cdef Py_ssize_t cap = self._cap
        cdef Py_ssize_t first
        cdef Slot *slots
        if need <= cap:
            return 0
        while cap < need:
            cap <<= 1
        slots = <Slot *>PyMem_RawMalloc(cap * sizeof(Slot))
        if slots == NULL:
            return -1
        first = self._cap - self._head
        if first > self._count:
            first = self._count
        memcpy(slots, &self._slots[self._head], first * sizeof(Slot))
        memcpy(&slots[first], self._slots, (self._count - first) * sizeof(Slot))
        PyMem_RawFree(self._slots)
        self._slots = slots
        self._cap = cap
        self._head = 0
        return 0

    cdef inline Slot *_tail(self) noexcept nogil:
        return &self._slots[(self._head + self._count) & (self._cap - 1)]

    cdef PyObject *_take_idle(self) noexcept:
        # Most recently idled first: its stack and caches are warmest.
        if self._idle_count == 0:
            return NULL
        oj_set_size(&self._idle_count, self._idle_count - 1)
        return self._idle[self._idle_count]

    cdef int _push_idle(self, Worker w) noexcept:
        cdef PyObject **grown
        if self._idle_count == self._idle_cap:
            grown = <PyObject **>PyMem_RawRealloc(
                self._idle, 2 * self._idle_cap * sizeof(PyObject *))
            if grown == NULL:
                return -1
            self._idle = grown
            self._idle_cap *= 2
        _incref(<PyObject *>w)
        self._idle[self._idle_count] = <PyObject *>w
        oj_set_size(&self._idle_count, self._idle_count + 1)
        oj_set_flag(&w._busy, False)
        return 0

    cdef Job _new_job(self, object fn, object args, object kwargs, Owner owner, bint one_arg,
                      object context, bint shared):
        cdef Job job = Job.__new__(Job)
        job.pool = self.name
        job.function = fn
        job._args = args
        job._one_arg = one_arg
        job._kwargs = kwargs
        job._owner = PyThread_get_thread_ident()
        job._owner_token = owner
        job._queue = self
        job._context = context
        job._shared_context = shared
        oj_untrack(<PyObject *>job)  # while queued; see oj_untrack
        return job

    cdef inline object _capture(self):
        # The submitter's context, copied now (as asyncio.to_thread does), or None.
        if self._copy_context:
            return PyContext_CopyCurrent()
        return None

    # -- submitting -------------------------------------------------------------
    # Each push is _lock_for(n), n _append()s, then _unlock_and_wake(): one lock
    # acquisition per call, so a batch enters the ring with nothing between its jobs.

    cdef int _lock_for(self, Py_ssize_t n, RoomTicket ticket, bint force) except -1:
        """Take the mutex with room for n more slots; raise (mutex released) if closed,
        or full (see _wait_for_room). 1 if the submitter came through the line (then
        it calls _wake_line once its jobs are in), else 0."""
        oj_lock(&self._mutex)
        return self._room(n, ticket, force)

    cdef int _room(self, Py_ssize_t n, RoomTicket ticket, bint force) except -1:
        # Mutex held: make room for n more slots, or release it and raise.
        cdef int lined = 0
        if self._closed:
            oj_unlock(&self._mutex)
            raise _closed_error(self)
        if (self._max >= 0 and not force
                and (self._count + n > self._max or self._line_len != 0)):
            lined = self._wait_for_room(n, ticket)
        if self._reserve(n) < 0:
            oj_unlock(&self._mutex)
            if lined:
                self._wake_line()
            raise MemoryError()
        return lined

    cdef int _wait_for_room(self, Py_ssize_t n, RoomTicket ticket) except -1:
        """Mutex held, and a bounded queue without room for n more jobs now (or with
        submitters waiting before this one). Returns 1 with the mutex held once the
        n jobs fit and this submitter is first in line; raises with it released:

        - QueueFullError: the batch is larger than the bound; on_full is "raise"; the
          calling thread is one of this queue's workers (waiting could deadlock the
          pool); or block_timeout ran out.
        - the closed error: the queue was closed meanwhile.
        - _NoRoom: a push with a RoomTicket (oddjob.aio): the ticket joins the line,
          and its wake() is called once the jobs may fit, to push again.

        A blocked thread waits on a Waiter of its own, the GIL released."""
        cdef RoomTicket mine = ticket
        cdef double deadline = 0.0, left
        cdef int got
        cdef Py_ssize_t queued
        cdef bint checked = False
        if n > self._max:
            self._rejected += n
            oj_unlock(&self._mutex)
            self._tell_full(n)
            raise QueueFullError(
                f"pool {self.name!r}: a batch of {n} jobs can never fit in its queue "
                f"(max_queue={self._max})")
        while True:
            if self._closed:
                self._leave_line(mine)
                oj_unlock(&self._mutex)
                raise _closed_error(self)
            if self._count + n <= self._max and (
                    self._line_len == 0 or self._line[0] is mine):
                if mine is not None and mine.queued:
                    del self._line[0]  # the caller holds mine: nothing is freed
                    oj_set_size(&self._line_len, self._line_len - 1)
                    mine.queued = mine.signalled = False
                return 1
            if self._raise_when_full:
                self._rejected += n
                queued = self._count  # read under the mutex, for the message
                oj_unlock(&self._mutex)
                self._tell_full(n)
                raise QueueFullError(
                    f"pool {self.name!r} is full: {queued} jobs queued "
                    f"(max_queue={self._max}, on_full='raise')")
            if not checked and (mine is None or not mine.queued):
                # About to wait (a blocked thread, or an oddjob.aio ticket joining the
                # line): first the checks and allocations, without the mutex.
                oj_unlock(&self._mutex)
                self._tell_full(n)
                if getattr(_locals, "worker_of", None) is self:
                    self._count_rejected(n)
                    raise QueueFullError(
                        f"pool {self.name!r} is full and this job runs on one of its own "
                        "workers: waiting for room could deadlock the pool")
                checked = True
                if mine is None:
                    mine = RoomTicket.__new__(RoomTicket)
                    mine.n = n
                    mine.waiter = Waiter()
                    if self._block_timeout >= 0:
                        deadline = monotonic() + self._block_timeout
                oj_lock(&self._mutex)
                continue  # room may have come meanwhile
            if not mine.queued:
                self._line.append(mine)  # preallocated list; no GC can run here
                oj_set_size(&self._line_len, self._line_len + 1)
                mine.queued = True
                mine.n = n
            mine.signalled = False
            oj_unlock(&self._mutex)
            if mine.waiter is None:
                raise _NoRoom()  # oddjob.aio waits for the ticket's wake()
            left = _time_left(self._block_timeout, deadline)
            try:
                got = mine.waiter.block(left) if left != 0.0 else 0
            except BaseException:
                oj_lock(&self._mutex)
                self._leave_line(mine)
                oj_unlock(&self._mutex)
                self._wake_line()
                raise
            oj_lock(&self._mutex)
            if self._closed:
                continue  # the top of the loop leaves the line and raises
            # mine is still in line here (only close() empties it), so _line[0] exists.
            if not got and not (self._count + n <= self._max and self._line[0] is mine):
                self._leave_line(mine)
                self._rejected += n
                oj_unlock(&self._mutex)
                self._wake_line()  # one behind it may fit
                raise QueueFullError(
                    f"pool {self.name!r} stayed full for block_timeout="
                    f"{self._block_timeout} seconds (max_queue={self._max})")

    cdef int _count_rejected(self, Py_ssize_t n) except -1:
        oj_lock(&self._mutex)
        self._rejected += n
        oj_unlock(&self._mutex)
        return 0

    cdef int _tell_full(self, Py_ssize_t n) except -1:
        # Without the mutex: a submit found the queue full (it waits, or is refused).
        if not oj_load_size(&_event_mask) & (1 << EV_QUEUE_FULL):
            return 0
        return _emit(EV_QUEUE_FULL,
                     {"queued": oj_load_size(&self._count), "max_queue": self._max, "jobs": n},
                     {"pool": self.name, "on_full": self.on_full}, False)

    cdef void _leave_line(self, RoomTicket ticket) noexcept:
        # Mutex held: take ticket out of the line (if it is in it).
        cdef Py_ssize_t i
        if ticket is None or not ticket.queued:
            return
        for i in range(self._line_len):
            if self._line[i] is ticket:
                del self._line[i]  # the caller holds the ticket: nothing is freed
                oj_set_size(&self._line_len, self._line_len - 1)
                break
        ticket.queued = ticket.signalled = False

    cdef int _wake_line(self) except -1:
        """Without the mutex: signal the first in line if its jobs fit now (once)."""
        cdef RoomTicket first = None
        oj_lock(&self._mutex)
        if self._line_len != 0:
            first = <RoomTicket>self._line[0]
            if first.signalled or self._count + first.n > self._max:
                first = None
            else:
                first.signalled = True
        oj_unlock(&self._mutex)
        if first is not None:
            first.fire()
        return 0

    def withdraw(self, RoomTicket ticket not None):
        """Take a RoomTicket out of the line (its submitter gave up: cancelled, timed
        out); the next in line is signalled if it fits."""
        oj_lock(&self._mutex)
        self._leave_line(ticket)
        oj_unlock(&self._mutex)
        self._wake_line()

    cdef inline long long _stamp(self, Py_ssize_t n, unsigned long long *first,
                                 unsigned long long *mask) noexcept:
        # Mutex held: the time a push of n jobs is queued if the queue wait of any of
        # them is to be measured, else 0. Job i of the push is measured when
        # ((first + i) & mask) == 0: each job counts once (a batch is sampled as its
        # jobs would be one by one), mask from _sample_mask_for, 0 while a handler wants
        # every job timed. Into a deep queue (a big batch makes one) at most one job in
        # 16 is: consecutive jobs there wait alike, and a burst into a fresh pool comes
        # before any run time is known.
        cdef unsigned long long m = self._sample_mask
        first[0] = self._pushes
        self._pushes += n
        if self._count + n > DEEP_QUEUE:
            m |= 15
        if oj_load_size(&_event_mask) & TIMED_EVENTS or self._max_wait_ns >= 0:
            m = 0  # a handler wants every job timed, or every job's wait is checked
        mask[0] = m
        if ((0 - first[0]) & m) < <unsigned long long>n:
            return oj_clock_ns()
        return 0

    cdef inline void _fold(self, int outcome, long long wait_ns, long long run_ns) noexcept:
        # Mutex held: count a job that ran and finished; times < 0 were not measured.
        self._finished += 1
        if outcome == OUTCOME_COMPLETED:
            self._completed += 1
        elif outcome == OUTCOME_FAILED:
            self._failed += 1
        if wait_ns >= 0:
            oj_hist_record(self._wait_hist, wait_ns)
        if run_ns >= 0:
            oj_hist_record(self._run_hist, run_ns)
            # A moving average, each sample capped: one job that lost the GIL midway
            # must not have every job timed for a while.
            if run_ns > RUN_SAMPLE_CAP:
                run_ns = RUN_SAMPLE_CAP
            if self._run_estimate < 0:  # the first sample: nothing to average yet
                self._run_estimate = run_ns
            else:
                self._run_estimate += (run_ns - self._run_estimate) // 8
            self._sample_mask = _sample_mask_for(self._run_estimate)

    cdef inline Slot *_put(self, PyObject *fn, PyObject *args, PyObject *kwargs,
                           PyObject *obj, int flags, long long stamp) noexcept:
        # Mutex held, room reserved: one slot at the tail, which takes its own references.
        cdef Slot *s = self._tail()
        s.fn = fn
        s.args = args
        s.kwargs = kwargs
        s.obj = obj
        s.stamp = stamp
        s.flags = flags
        s.runs = 0
        _xincref(fn)
        _xincref(args)
        _xincref(kwargs)
        _xincref(obj)
        oj_set_size(&self._count, self._count + 1)
        return s

    cdef inline void _append(self, PyObject *fn, PyObject *args, PyObject *kwargs,
                             PyObject *obj, int flags, long long stamp) noexcept:
        # Mutex held, room reserved: a submitted job (an async one numbered here).
        self._put(fn, args, kwargs, obj, flags, stamp)
        if flags & SLOT_JOB:
            self._next_ref += 1
            (<Job>obj)._ref = self._next_ref
        self._submitted += 1

    cdef inline void _unlock_and_wake(self) noexcept:
        # Wake one idle worker, if any and if no worker is spinning (the spinner takes
        # the job); woken workers wake the next while work remains.
        cdef PyObject *idle = NULL
        # A worker waiting for the rate limit takes the next job when its turn comes.
        if not (OJ_FREE_THREADED and self._spinning) and self._rate_waiter == NULL:
            idle = self._take_idle()
        oj_unlock(&self._mutex)
        if idle != NULL:
            _wake(idle)

    def push(self, fn, tuple args not None, dict kwargs, RoomTicket ticket=None):
        """Queue fn(*args, **kwargs) as a fire-and-forget job (see _wait_for_room for
        a full bounded queue, and ticket)."""
        self._push(fn, args, kwargs, ticket)

    cdef int _push(self, object fn, tuple args, dict kwargs, RoomTicket ticket) except -1:
        _check_callable(fn)
        context = self._capture()
        cdef unsigned long long first, mask
        cdef int lined = self._lock_for(1, ticket, False)
        self._append(<PyObject *>fn, <PyObject *>args,
                     <PyObject *>kwargs if kwargs else NULL,
                     <PyObject *>context if context is not None else NULL, 0,
                     self._stamp(1, &first, &mask))
        self._unlock_and_wake()
        if lined:
            self._wake_line()
        return 0

    def push_scheduled(self, fn, tuple args not None, dict kwargs, context):
        """A fired timer's job: queued even when a bounded queue is full (the
        scheduling thread never waits), run in context (None: the worker's own)."""
        cdef unsigned long long first, mask
        _check_callable(fn)
        _check_context(context)
        self._lock_for(1, None, True)
        self._append(<PyObject *>fn, <PyObject *>args,
                     <PyObject *>kwargs if kwargs else NULL,
                     <PyObject *>context if context is not None else NULL,
                     SLOT_SHARED_CONTEXT, self._stamp(1, &first, &mask))
        self._unlock_and_wake()

    def push_many(self, fn, items, RoomTicket ticket=None):
        """Queue fn(item) for each item as one batch: no other job lands between them."""
        self._push_many(fn, items, ticket, False, None)

    def push_many_scheduled(self, fn, items, context):
        """A fired timer's batch: as push_scheduled, every job in its own copy of context."""
        _check_context(context)
        self._push_many(fn, items, None, True, context)

    cdef int _push_many(self, object fn, object items, RoomTicket ticket, bint force,
                        object context) except -1:
        cdef Py_ssize_t i, n
        cdef int lined
        cdef long long stamp
        cdef unsigned long long first, mask
        _check_callable(fn)
        cdef list batch = items if type(items) is list else list(items)
        if batch is items and (OJ_FREE_THREADED or self._max >= 0):
            # Without the GIL another thread may resize the caller's list at any moment;
            # a bounded queue may release the GIL while it waits for room.
            batch = list(batch)
        if not batch:
            return 0
        if not force:
            context = self._capture()  # one for the batch: each job runs in a copy
        # The length is read once, with the mutex held and the GIL never released
        # until the batch is in: under the GIL nothing can resize the list meanwhile.
        oj_lock(&self._mutex)
        n = len(batch)
        lined = self._room(n, ticket, force)
        stamp = self._stamp(n, &first, &mask)
        for i in range(n):
            self._append(<PyObject *>fn, <PyObject *>batch[i], NULL,
                         <PyObject *>context if context is not None else NULL,
                         SLOT_ONE_ARG | SLOT_SHARED_CONTEXT,
                         stamp if ((first + i) & mask) == 0 else 0)
        self._unlock_and_wake()
        if lined:
            self._wake_line()
        return 0

    def push_async(self, fn, tuple args not None, dict kwargs, RoomTicket ticket=None):
        """Queue fn(*args, **kwargs) and return its Job."""
        return self._push_async(fn, args, kwargs, ticket)

    cdef Job _push_async(self, object fn, tuple args, dict kwargs, RoomTicket ticket):
        cdef unsigned long long first, mask
        _check_callable(fn)
        cdef Job job = self._new_job(
            fn, args, kwargs if kwargs else None, _current_owner(), False,
            self._capture(), False)
        cdef int lined = self._lock_for(1, ticket, False)
        self._append(NULL, NULL, NULL, <PyObject *>job, SLOT_JOB, self._stamp(1, &first, &mask))
        self._unlock_and_wake()
        if lined:
            self._wake_line()
        return job

    def push_async_many(self, fn, items, RoomTicket ticket=None):
        """Queue fn(item) for each item as one batch; their Jobs in input order."""
        cdef Py_ssize_t i
        cdef int lined
        cdef long long stamp
        cdef unsigned long long first, mask
        _check_callable(fn)
        cdef list batch = items if type(items) is list else list(items)
        if OJ_FREE_THREADED and batch is items:
            batch = list(batch)  # as in push_many: the caller's list may be resized
        cdef Owner owner = _current_owner()
        context = self._capture()  # one for the batch: each job runs in a copy
        # The item itself, not a 1-tuple: one GC-tracked object fewer per job.
        cdef list jobs = [self._new_job(fn, item, None, owner, True, context, True)
                          for item in batch]
        if not jobs:
            return jobs
        lined = self._lock_for(len(jobs), ticket, False)
        stamp = self._stamp(len(jobs), &first, &mask)
        for i in range(len(jobs)):
            self._append(NULL, NULL, NULL, <PyObject *>jobs[i], SLOT_JOB,
                         stamp if ((first + i) & mask) == 0 else 0)
        self._unlock_and_wake()
        if lined:
            self._wake_line()
        return jobs

    # -- working ----------------------------------------------------------------

    def work(self, Worker worker not None, bint restart_on_error=False, runner=None):
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

        Holds the GIL from one job to the next while work is queued; waits with
        the GIL released on the worker's own semaphore when there is none. Counts
        each job in the queue's stats under the mutex it takes anyway: a
        fire-and-forget job when the worker comes back for the next one."""
        cdef Slot s
        cdef PyObject *idle
        cdef Job job
        cdef list listeners
        cdef bint run
        cdef bint crash
        cdef bint dropped
        # True from the start of a spin until a job is taken or the worker sleeps; at
        # the top of the loop, only right after that spin: it holds the spinner's place.
        cdef bint spun = False
        cdef bint line
        cdef Py_ssize_t events = 0  # _event_mask as this job started
        cdef bint timed, slow
        cdef long long started_ns = 0
        # The last fire-and-forget job's outcome and times (< 0: not measured), counted
        # at the top of the loop.
        cdef int outcome = OUTCOME_NONE
        cdef long long wait_ns = -1, run_ns = -1
        # Rate limit and max_queue_time: the time a job was taken (0: not read).
        cdef long long now_ns = 0, due_ns = 0, wait_us
        cdef bint rate_slept = False  # slept as the queue's rate waiter
        cdef int rate
        cdef bint expired
        cdef bint retry
        cdef PyObject **drained
        cdef Py_ssize_t n_idle = 0
        _locals.worker_of = self  # a job here that submits to its own full queue must not wait
        while True:
            oj_lock(&self._mutex)
            if outcome != OUTCOME_NONE:
                self._fold(outcome, wait_ns, run_ns)
                outcome = OUTCOME_NONE
            if spun:
                self._spinning = False
            if rate_slept:
                rate_slept = False
                if self._rate_waiter == <PyObject *>worker:
                    self._rate_waiter = NULL  # its turn came
                else:
                    # close() or retire() woke it (they release its wake lock once, with
                    # the mutex held): if the timed wait ran out first, take that release
                    # back, or the next idle wait would return at once.
                    PyThread_acquire_lock(worker._wake, NOWAIT_LOCK)
            if worker._retired or (self._count == 0 and self._closed
                                   and self._retry_waiting == 0):
                oj_set_flag(&worker._busy, False)
                # Retired just after a pusher picked it: pass that wake-up on.
                idle = self._take_idle() if self._count else NULL
                drained = NULL
                if self._count == 0 and self._closed and self._idle_count:
                    # Drained: workers that idled after close() (behind the rate waiter,
                    # or for a retry) would wait for a wake-up nobody sends.
                    drained = self._detach_idle(&n_idle, True)
                oj_unlock(&self._mutex)
                if idle != NULL:
                    _wake(idle)
                _release_refs(drained, n_idle)
                return None
            if self._count == 0:
                if OJ_FREE_THREADED and not spun and not self._spinning:
                    # Without the GIL a submitter on another core may push within
                    # microseconds: look for it before paying for sleep and wake-up
                    # (two system calls and two context switches). One spinner per
                    # queue: more would take cores from the submitters, and while it
                    # spins, pushes wake nobody (it takes the job, and wakes the next
                    # worker if more are queued).
                    self._spinning = spun = True
                    oj_unlock(&self._mutex)
                    with nogil:
                        _spin_for_work(&self._count, &self._closed, &worker._retired)
                    continue
                spun = False
                if self._cap > SHRINK_ABOVE:
                    self._shrink()
                if self._push_idle(worker) < 0:
                    oj_unlock(&self._mutex)
                    raise MemoryError()
                oj_unlock(&self._mutex)
                with nogil:
                    PyThread_acquire_lock(worker._wake, WAIT_LOCK)
                continue
            spun = False
            if self._gated:
                now_ns = oj_clock_ns()
            if self._rate_ring != NULL:
                rate = self._rate_wait(worker, &self._slots[self._head], now_ns, &due_ns)
                if rate != 0:
                    oj_unlock(&self._mutex)
                    if rate < 0:
                        raise MemoryError()
                    if rate == 1:  # the rate waiter: asleep until its turn, or close()
                        rate_slept = True
                        wait_us = (due_ns - now_ns) // 1000 + 1
                        if wait_us > PY_TIMEOUT_MAX:
                            wait_us = PY_TIMEOUT_MAX
                        with nogil:
                            PyThread_acquire_lock_timed(worker._wake, wait_us, 0)
                    else:  # idle behind the rate waiter, which wakes it when it is done
                        with nogil:
                            PyThread_acquire_lock(worker._wake, WAIT_LOCK)
                    continue
            s = self._slots[self._head]
            self._head = (self._head + 1) & (self._cap - 1)
            oj_set_size(&self._count, self._count - 1)
            oj_set_flag(&worker._busy, True)
            idle = self._take_idle() if self._count else NULL
            line = self._line_len != 0
            listeners = None
            run = True
            dropped = False
            expired = False
            if s.flags & SLOT_JOB:
                job = <Job>s.obj
                if job._state != PENDING:
                    run = False  # cancelled while queued
                    self._cancelled_waiting -= 1
                elif not oj_load_flag(&job._owner_token._alive):
                    # Linked to a thread that died before the job started: drop it.
                    oj_set_state(&job._state, CANCELLED)
                    listeners = job._listeners
                    job._listeners = None
                    run = False
                    dropped = True
                    self._dropped += 1
                else:
                    # Running, or about to fail as expired: either way no longer cancellable.
                    oj_set_state(&job._state, RUNNING)
                    worker._job = s.obj  # borrowed: the local job holds it until cleared
                    oj_set_int(&job._attempts, job._attempts + 1)
            if self._gated and run and _expired(self, s.stamp, now_ns):
                run = False
                expired = True
                self._expired += 1
                if s.flags & SLOT_JOB:
                    oj_set_int(&job._attempts, job._attempts - 1)  # it never started
            if run:
                oj_set_size(&worker._jobs_run, worker._jobs_run + 1)
                self._started += 1
            slow = self._sample_mask == 0  # jobs here are long enough to time every one
            oj_unlock(&self._mutex)
            if idle != NULL:
                _wake(idle)
            if line:
                self._wake_line()  # a slot came free: the first submitter in line may fit
            events = oj_load_size(&_event_mask)
            timed = s.stamp != 0 or slow or events & TIMED_EVENTS
            wait_ns = run_ns = -1
            if expired:
                escaped = self._expire(worker, &s, now_ns - s.stamp, events)
                job = None
                if escaped is not None:  # a done callback raised SystemExit & co
                    return escaped
                continue

            if not s.flags & SLOT_JOB:
                fn = <object>s.fn
                args = <object>s.args
                _decref(s.fn)
                _decref(s.args)
                kwargs = None
                if s.kwargs != NULL:
                    kwargs = <object>s.kwargs
                    _decref(s.kwargs)
                context = None
                if s.obj != NULL:
                    context = <object>s.obj
                    _decref(s.obj)
                    if self._retry_attempts > 1:
                        # Each run in a copy: a retry starts from the context as it was
                        # submitted, not as the failed run left it.
                        submitted = context
                        context = PyContext_Copy(context)
                    elif s.flags & SLOT_SHARED_CONTEXT:
                        context = PyContext_Copy(context)
                    PyContext_Enter(context)
                try:
                    if timed:
                        started_ns = oj_clock_ns()
                        if s.stamp:
                            wait_ns = started_ns - s.stamp
                    if events & (1 << EV_JOB_START):
                        _job_event(EV_JOB_START, self.name, fn, None, wait_ns, -1, None)
                    if runner is not None:
                        runner(fn, (args,) if s.flags & SLOT_ONE_ARG else args, kwargs)
                    elif s.flags & SLOT_ONE_ARG:
                        fn(args)
                    elif kwargs is None:
                        fn(*args)
                    else:
                        fn(*args, **kwargs)
                    if timed:
                        run_ns = oj_clock_ns() - started_ns
                    outcome = OUTCOME_COMPLETED
                    if events & (1 << EV_JOB_STOP):
                        _job_event(EV_JOB_STOP, self.name, fn, None, wait_ns, run_ns, None)
                except BaseException as exc:
                    # Nobody awaits a fire-and-forget job: its failure is logged here.
                    if timed and run_ns < 0:
                        run_ns = oj_clock_ns() - started_ns
                    outcome = OUTCOME_FAILED
                    if events & (1 << EV_JOB_EXCEPTION):
                        _job_event(EV_JOB_EXCEPTION, self.name, fn, None, wait_ns, run_ns, exc)
                    crash = restart_on_error or not isinstance(exc, Exception)
                    if self._retryable(s.runs + 1, exc):
                        # Runs again after its backoff, in a fresh copy of the context it
                        # was submitted in (this run's exits first: the retry may run at
                        # once); the traceback goes, so that its frames are not kept.
                        if context is not None:
                            PyContext_Exit(context)
                        exc.__traceback__ = None
                        error = _retrying_record(
                            fn, args, kwargs, submitted if s.obj != NULL else None,
                            s.flags, s.runs + 1, exc)
                        context = None
                        oj_lock(&self._mutex)
                        self._hold_retry(error)
                        self._fold(OUTCOME_RETRIED, wait_ns, run_ns)
                        oj_unlock(&self._mutex)
                        outcome = OUTCOME_NONE
                        self._schedule_retry(error, s.runs + 1, exc, fn, None)
                        error = None
                    else:
                        log_job_error(self.name, fn,
                                      (args,) if s.flags & SLOT_ONE_ARG else args, kwargs, exc,
                                      note=_attempts_note(s.runs + 1)
                                      + (_REPLACING if crash else ""))
                    if crash:
                        if outcome != OUTCOME_NONE:
                            oj_lock(&self._mutex)
                            self._fold(outcome, wait_ns, run_ns)
                            oj_unlock(&self._mutex)
                        return (exc, fn, True)
                finally:
                    if context is not None:
                        PyContext_Exit(context)
                    # Drop the job's references now, not when the next job arrives.
                    fn = args = kwargs = context = None
                    if self._retry_attempts > 1:
                        submitted = None
                continue

            oj_track(s.obj)
            _decref(s.obj)
            if not run:
                escaped = _notify(job, listeners) if listeners is not None else None
                if dropped and events & (1 << EV_JOB_DROPPED):
                    _job_event(EV_JOB_DROPPED, self.name, job.function, _ref_of(job), -1, -1, None)
                if escaped is not None:  # a done callback raised SystemExit & co
                    return (escaped, job.function, False)
                job = listeners = None  # an idle worker keeps nothing of its last job
                continue
            context = job._context
            if context is not None:
                if self._retry_attempts == 1:
                    job._context = None  # not kept with the result (a retry needs it)
                if job._shared_context or self._retry_attempts > 1:
                    context = PyContext_Copy(context)  # a retry starts from it as submitted
                PyContext_Enter(context)
            error = None
            try:
                if timed:
                    started_ns = oj_clock_ns()
                    if s.stamp:
                        wait_ns = started_ns - s.stamp
                if events & (1 << EV_JOB_START):
                    _job_event(EV_JOB_START, self.name, job.function, _ref_of(job), wait_ns, -1,
                               None)
                if runner is not None:
                    result = runner(job.function,
                                    (job._args,) if job._one_arg else job._args, job._kwargs)
                elif job._one_arg:
                    result = job.function(job._args)
                elif job._kwargs is None:
                    result = job.function(*<tuple>job._args)
                else:
                    result = job.function(*<tuple>job._args, **job._kwargs)
                if timed:
                    run_ns = oj_clock_ns() - started_ns
                # Before the result is published: whoever awaits it sees the event done.
                if events & (1 << EV_JOB_STOP):
                    _job_event(EV_JOB_STOP, self.name, job.function, _ref_of(job), wait_ns, run_ns,
                               None)
            except BaseException as exc:
                if timed and run_ns < 0:
                    run_ns = oj_clock_ns() - started_ns
                if events & (1 << EV_JOB_EXCEPTION):
                    _job_event(EV_JOB_EXCEPTION, self.name, job.function, _ref_of(job), wait_ns,
                               run_ns, exc)
                if context is not None:
                    PyContext_Exit(context)
                    context = None
                crash = restart_on_error or not isinstance(exc, Exception)
                retry = self._retryable(job._attempts, exc)
                tb = exc.__traceback__
                if job._attempts > 1:
                    prev = job._result  # a run before's exception: not freed under the mutex
                oj_lock(&self._mutex)
                if retry:
                    # Pending again, off the ring, until its backoff is over; nobody
                    # sees this run's exception (the caller gets the last outcome).
                    oj_set_state(&job._state, PENDING)
                    self._hold_retry(job)
                    self._fold(OUTCOME_RETRIED, wait_ns, run_ns)
                else:
                    job._exception = exc
                    job._result = tb  # see _outcome
                    oj_set_state(&job._state, FINISHED)  # after what it publishes
                    listeners = job._listeners
                    job._listeners = None
                    self._fold(OUTCOME_FAILED, wait_ns, run_ns)
                worker._job = NULL
                oj_unlock(&self._mutex)
                tb = prev = None  # the Job holds it: the idle worker must not keep it alive
                error = exc
            if error is not None:
                if retry:
                    # Kept as the cause of a JobExpiredError, should the retry expire;
                    # without its traceback, whose frames must not live on meanwhile.
                    error.__traceback__ = None
                    job._result = error
                    self._schedule_retry(job, job._attempts, error, job.function,
                                         _ref_of(job))
                    if crash:
                        return (error, job.function, True)
                    job = error = None
                    continue
                # Outside the except block: once published, an awaiting thread may
                # re-raise the exception (setting its traceback) while this one runs
                # the callbacks, whose try would read it as the exception being handled.
                if listeners is not None:
                    escaped = _notify(job, listeners)
                    if escaped is not None:
                        return (escaped, job.function, False)
                if crash:
                    return (error, job.function, True)
                job = listeners = error = None
                continue
            if context is not None:
                PyContext_Exit(context)
                context = None
            if job._attempts > 1:
                prev = job._result  # a run before's exception: not freed under the mutex
            oj_lock(&self._mutex)
            job._result = result
            oj_set_state(&job._state, FINISHED)  # after what it publishes
            listeners = job._listeners
            job._listeners = None
            worker._job = NULL
            self._fold(OUTCOME_COMPLETED, wait_ns, run_ns)
            oj_unlock(&self._mutex)
            result = prev = None
            if listeners is not None:
                escaped = _notify(job, listeners)
                if escaped is not None:
                    return (escaped, job.function, False)
            job = listeners = None

    # -- rate limit, deadlines and retries ------------------------------------------

    cdef int _rate_wait(self, Worker worker, Slot *s, long long now, long long *due) noexcept:
        # Mutex held, s the head of the ring: 0 if it may be taken now (a job that
        # will run takes its start in the window here), 1 if this worker is now the
        # rate waiter (asleep until *due), 2 if it idles (another is the rate
        # waiter), -1 out of memory. Cancelled, dropped and expired jobs are skipped
        # without a start.
        cdef long long next_start
        if s.flags & SLOT_JOB and (
                (<Job>s.obj)._state != PENDING
                or not oj_load_flag(&(<Job>s.obj)._owner_token._alive)):
            return 0
        if _expired(self, s.stamp, now):
            return 0
        next_start = self._rate_ring[self._rate_pos] + self._rate_per_ns
        if next_start <= now:
            # Strict sliding window: the start count places back is at least per ago.
            self._rate_ring[self._rate_pos] = now
            self._rate_pos += 1
            if self._rate_pos == self._rate_count:
                self._rate_pos = 0
            return 0
        if self._rate_waiter == NULL:
            self._rate_waiter = <PyObject *>worker  # borrowed: its work() holds it
            due[0] = next_start
            return 1
        if self._push_idle(worker) < 0:
            return -1
        return 2

    cdef object _expire(self, Worker worker, Slot *s, long long waited, Py_ssize_t events):
        # Without the mutex: s waited longer than max_queue_time and is not run. An
        # async job fails with JobExpiredError; a fire-and-forget one is logged. Returns
        # work()'s crash tuple if a done callback raised SystemExit & co, else None.
        cdef Job job
        cdef list listeners = None
        escaped = None
        limit = self._max_wait_ns / 1e9
        if s.flags & SLOT_JOB:
            oj_track(s.obj)
            job = <Job>s.obj
            _decref(s.obj)
            fn = job.function
            ref = _ref_of(job)
            error = JobExpiredError(
                f"job {ref} waited {waited / 1e9:.3f} s in pool {self.name!r}, longer than "
                f"its max_queue_time of {limit:g} s, so it was not run"
                + ("" if job._attempts == 0 else
                   f" again after {job._attempts} attempt{'s' if job._attempts > 1 else ''}"))
            cause = job._result  # a retry's: its last run's exception (held: not freed below)
            if job._attempts and isinstance(cause, BaseException):
                error.__cause__ = cause
            oj_lock(&self._mutex)
            job._exception = error
            job._result = None  # no traceback: it never ran
            oj_set_state(&job._state, FINISHED)
            listeners = job._listeners
            job._listeners = None
            worker._job = NULL
            oj_unlock(&self._mutex)
            if listeners is not None:
                escaped = _notify(job, listeners)
                if escaped is not None:
                    escaped = (escaped, fn, False)
        else:
            fn = <object>s.fn
            args = (<object>s.args,) if s.flags & SLOT_ONE_ARG else <object>s.args
            kwargs = <object>s.kwargs if s.kwargs != NULL else None
            _decref(s.fn)
            _decref(s.args)
            _xdecref(s.kwargs)
            _xdecref(s.obj)
            ref = None
            _log.warning(
                "job %s in pool %r expired: it waited %.3f s, longer than its "
                "max_queue_time of %g s, so it was not run",
                describe_call(fn, args, kwargs), self.name, waited / 1e9, limit,
                extra={"oddjob_pool": self.name, "oddjob_function": fn})
            args = kwargs = None
        if events & (1 << EV_JOB_EXPIRED):
            _job_event(EV_JOB_EXPIRED, self.name, fn, ref, waited, -1, None)
        return escaped

    cdef bint _retryable(self, Py_ssize_t runs, object exc) except -1:
        # Without the mutex (isinstance may run a metaclass's Python code): True if
        # a job whose run number runs raised exc gets another.
        if runs >= self._retry_attempts:
            return False
        try:
            return isinstance(exc, self._retry_on)
        except Exception:
            return False  # a hostile __instancecheck__: the job fails as it is

    cdef void _hold_retry(self, object item) noexcept:
        # Mutex held: item (a Job or a _Retrying) waits out its backoff off the ring.
        # The set hashes it by identity and only grows here: nothing is freed.
        self._retrying.add(item)
        self._retry_waiting += 1
        self._retried += 1

    cdef int _schedule_retry(self, object item, Py_ssize_t runs, object exc, object fn,
                             object ref) except -1:
        # Without the mutex: set the backoff timer (the hook also emits job.retry). If
        # it cannot be set (no thread for the scheduler, out of memory), this run was
        # the last: the job fails with exc.
        try:
            self._retry_later(self, item, runs, exc, fn, ref)
        except Exception:
            _log.exception("could not schedule the retry of %r in pool %r; it fails now",
                           fn, self.name)
            self._retry_failed(item, exc, True)
        return 0

    cdef int _retry_failed(self, object item, object exc, bint unscheduled) except -1:
        # Without the mutex: item cannot wait for its retry after all; it fails with exc
        # (an async job's Job holds it; a fire-and-forget job's is logged). unscheduled:
        # its timer could not be set, so it was no retry.
        cdef bint held
        cdef _Retrying r
        oj_lock(&self._mutex)
        held = item in self._retrying
        if held:
            self._retrying.discard(item)  # item is referenced here: nothing freed
            self._retry_waiting -= 1
            if unscheduled:
                self._retried -= 1
        oj_unlock(&self._mutex)
        if not held:
            return 0  # cancelled meanwhile
        if type(item) is Job:
            self._fail(<Job>item, exc, False)
        else:
            r = <_Retrying>item
            oj_lock(&self._mutex)
            self._failed += 1
            oj_unlock(&self._mutex)
            log_job_error(self.name, r.fn, ((r.args,) if r.flags & SLOT_ONE_ARG else r.args),
                          r.kwargs, exc, note=_attempts_note(r.runs))
        self._wake_if_drained()
        return 0

    cdef void _forget_retry(self, object item) noexcept:
        # item no longer waits for its retry (cancelled, or settled by close()): its
        # backoff timer goes, or it would keep the job (and the scheduling thread) until due.
        if self._retry_forget is None:
            return
        try:
            self._retry_forget(self, item)
        except Exception:
            _log.exception("could not drop the retry timer of %r", item)

    cdef int _wake_if_drained(self) except -1:
        # A retry was settled off the ring: if it was the last thing a closed queue
        # waited for, the idle workers may exit now.
        cdef PyObject **idle = NULL
        cdef Py_ssize_t n_idle = 0
        oj_lock(&self._mutex)
        if self._closed and self._count == 0 and self._retry_waiting == 0:
            idle = self._detach_idle(&n_idle, True)
        oj_unlock(&self._mutex)
        _release_refs(idle, n_idle)
        return 0

    cdef object _settle_retries(self, set items, bint forget):
        # Without the mutex: the queue closed with cancel_pending (or broke, or this is
        # a fork's child) while these waited for a retry. Async jobs are cancelled (or
        # fail with PoolBrokenError); a fire-and-forget job's last error is logged.
        # Returns how many were settled here.
        cdef Py_ssize_t settled = 0, plain = 0
        escaped = None
        if items is None:
            return 0
        for item in items:
            if forget:  # not in a fork's child: its timers were the parent's scheduler's
                self._forget_retry(item)
            try:
                if type(item) is Job:
                    if self._broken is not None:
                        settled += self._fail(<Job>item, _closed_error(self), False)
                    elif (<Job>item)._cancel(False):
                        settled += 1
                else:
                    plain += 1
                    log_job_error(
                        self.name, (<_Retrying>item).fn,
                        (<_Retrying>item).args if not (<_Retrying>item).flags & SLOT_ONE_ARG
                        else ((<_Retrying>item).args,),
                        (<_Retrying>item).kwargs, (<_Retrying>item).error,
                        note=_attempts_note((<_Retrying>item).runs)
                        + "; its retry was cancelled as the pool stopped")
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
        _count_plain(self, plain)
        if escaped is not None:
            raise escaped
        return settled + plain

    def requeue(self, item):
        """A retry's backoff is over: put its job back at the tail of the ring, even
        of a full queue or a closed one that is draining. False if it was settled
        meanwhile (cancelled, or the pool stopped with cancel_pending)."""
        cdef unsigned long long first, mask
        cdef long long stamp
        cdef _Retrying r
        if type(item) is not Job and type(item) is not _Retrying:
            raise TypeError(f"requeue takes a job waiting for its retry, not "
                            f"{type(item).__name__}")
        oj_lock(&self._mutex)
        if self._retry_waiting == 0 or item not in self._retrying:
            oj_unlock(&self._mutex)
            return False
        if self._reserve(1) < 0:
            oj_unlock(&self._mutex)
            self._retry_failed(item, MemoryError("no memory to queue a retry"), False)
            return False
        self._retrying.discard(item)  # item is referenced here: nothing freed
        self._retry_waiting -= 1
        stamp = self._stamp(1, &first, &mask)
        if type(item) is Job:  # keeps its ref and is not submitted again
            self._put(NULL, NULL, NULL, <PyObject *>item, SLOT_JOB, stamp)
        else:
            r = <_Retrying>item
            self._put(<PyObject *>r.fn, <PyObject *>r.args,
                      <PyObject *>r.kwargs if r.kwargs is not None else NULL,
                      <PyObject *>r.context if r.context is not None else NULL,
                      r.flags, stamp).runs = r.runs
        self._unlock_and_wake()
        return True

    cdef int _fail(self, Job job, object exc, bint started) except -1:
        """Finish a queued or running (started) job with exc (its worker is gone, or
        the pool broke); its waiters are released and its callbacks run. 1 if it was
        failed here, 0 if it had finished already."""
        cdef list listeners
        tb = exc.__traceback__
        _prev = job._result  # a retry's last exception: not freed under the mutex
        oj_lock(&self._mutex)
        if job._state >= FINISHED:
            oj_unlock(&self._mutex)
            return 0
        job._exception = exc
        job._result = tb  # see _outcome
        oj_set_state(&job._state, FINISHED)
        listeners = job._listeners
        job._listeners = None
        if started:
            self._finished += 1
        self._failed += 1
        oj_unlock(&self._mutex)
        if listeners is not None:
            escaped = _notify(job, listeners)
            if escaped is not None:
                raise escaped
        return 1

    def abandon(self, Worker worker not None, exc):
        """The worker is gone (it did not survive a fork, or its process died): fail
        the async job it was running, if any, with exc. True if there was one."""
        cdef Job job = None
        oj_lock(&self._mutex)
        if worker._job != NULL:
            # Still referenced by the work() that runs it (or, after a fork, by the frame
            # of a thread that no longer exists): alive, so safe to take a reference.
            job = <Job>worker._job
            worker._job = NULL
        oj_unlock(&self._mutex)
        if job is None:
            return False
        return self._fail(job, exc, True) == 1

    # -- jobs taken ahead (process workers) -------------------------------------------

    def take(self, Worker worker not None, Py_ssize_t most):
        """Up to most more queued jobs for a worker that is running one: a process
        worker sends them to its child with that one, in one message. Each is started
        as work() starts a job (no longer cancellable, counted as running, job.start
        emitted) and must be ended by finish(), or given back by putback() if it never
        ran. A list of (item, fn, args, kwargs, wait_ns): item is opaque (for finish
        and putback), wait_ns the job's queue wait (-1: not measured).

        Takes nothing from a queue with a rate limit or max_queue_time (their checks
        belong to each start, which a batch would blur), nor for a retired worker; stops
        at the first job that is cancelled or whose owner is gone (work() settles those)."""
        cdef Slot *buf
        cdef Slot *s
        cdef long long *waits
        cdef Py_ssize_t n = 0, i
        cdef long long now
        cdef bint line
        cdef Job job
        cdef list taken = []
        if most <= 0 or self._gated:
            return taken
        # Allocated before locking: nothing is allocated under the mutex.
        buf = <Slot *>PyMem_RawMalloc(most * (sizeof(Slot) + sizeof(long long)))
        if buf == NULL:
            raise MemoryError()
        waits = <long long *>(buf + most)
        now = oj_clock_ns()
        oj_lock(&self._mutex)
        while n < most and self._count > 0 and not worker._retired:
            s = &self._slots[self._head]
            if s.flags & SLOT_JOB:
                job = <Job>s.obj
                if job._state != PENDING or not oj_load_flag(&job._owner_token._alive):
                    break  # cancelled, or its owner is gone: work() settles it
                oj_set_state(&job._state, RUNNING)
                oj_set_int(&job._attempts, job._attempts + 1)
            buf[n] = s[0]  # the slot's references pass to buf
            waits[n] = now - s.stamp if s.stamp else -1
            self._head = (self._head + 1) & (self._cap - 1)
            oj_set_size(&self._count, self._count - 1)
            oj_set_size(&worker._jobs_run, worker._jobs_run + 1)
            self._started += 1
            n += 1
        line = n and self._line_len != 0
        oj_unlock(&self._mutex)
        job = None
        try:
            if line:
                self._wake_line()  # slots came free: the first submitter in line may fit
            events = oj_load_size(&_event_mask)
            for i in range(n):
                s = &buf[i]
                if s.flags & SLOT_JOB:
                    job = <Job>s.obj
                    oj_track(s.obj)
                    item = job
                    fn = job.function
                    args = (job._args,) if job._one_arg else job._args
                    kwargs = job._kwargs
                    ref = _ref_of(job)
                else:
                    fn = <object>s.fn
                    args = <object>s.args
                    kwargs = <object>s.kwargs if s.kwargs != NULL else None
                    item = _retrying_record(fn, args, kwargs,
                                            <object>s.obj if s.obj != NULL else None,
                                            s.flags, s.runs, None)
                    if s.flags & SLOT_ONE_ARG:
                        args = (args,)
                    ref = None
                taken.append((item, fn, args, kwargs, waits[i]))
                if events & (1 << EV_JOB_START):
                    _job_event(EV_JOB_START, self.name, fn, ref, waits[i], -1, None)
        except BaseException as exc:  # out of memory: the jobs taken fail, none runs
            item = fn = args = kwargs = job = None
            taken = None
            self._fail_taken(buf, n, exc)
            raise
        finally:
            for i in range(n):  # the items hold what they need now
                _xdecref(buf[i].fn)
                _xdecref(buf[i].args)
                _xdecref(buf[i].kwargs)
                _xdecref(buf[i].obj)
            PyMem_RawFree(buf)
        return taken

    cdef int _fail_taken(self, Slot *taken, Py_ssize_t n, object exc) except -1:
        # Started by take() (a Job RUNNING), never handed over: each fails with exc.
        cdef Py_ssize_t i, plain = 0
        for i in range(n):
            if taken[i].flags & SLOT_JOB:
                try:
                    self._fail(<Job>taken[i].obj, exc, True)
                except BaseException:
                    pass  # a done callback's SystemExit & co: the exc on its way wins
            else:
                plain += 1
        if plain:
            oj_lock(&self._mutex)
            self._finished += plain
            self._failed += plain
            oj_unlock(&self._mutex)
            _log.error("pool %r: %d fire-and-forget jobs taken for a worker process "
                       "failed before they were sent: %r", self.name, plain, exc)
        return 0

    def finish(self, Worker worker not None, item, bint ok, value, long long wait_ns=-1,
               long long run_ns=-1, bint retry=True):
        """End a job take() gave, with its result (ok) or its exception (value), as
        work() ends a job it ran: a failure is retried under the pool's retry policy
        (unless retry is False: after a fork, the parent's timers are not to be
        touched), or fails its Job, or (fire and forget) is logged. Returns what a done
        callback raised that is not an Exception (SystemExit & co), else None.

        Raises:
            ValueError: item is not a job that take() gave and finish() has not ended.
        """
        return self._finish(item, ok, value, wait_ns, run_ns, retry)

    def finish_results(self, Worker worker not None, list taken not None, Py_ssize_t first,
                       list results not None, Py_ssize_t at, ok_kind):
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
        cdef Py_ssize_t n = 0, count
        cdef tuple t, r
        if first < 0 or at < 0:
            raise ValueError(f"first and at must be >= 0, not {first} and {at}")
        count = min(len(taken) - first, len(results) - at)
        raised = None
        while n < count:
            t = taken[first + n]
            r = results[at + n]
            if len(t) != 5 or len(r) != 3:
                raise TypeError("finish_results() takes take()'s 5-tuples and "
                                "(kind, value, run_ns) results")
            if r[0] != ok_kind:
                break
            callback_raised = self._finish(t[0], True, r[1], t[4], r[2], True)
            n += 1
            if callback_raised is not None and raised is None:
                raised = callback_raised
        return n, raised

    cdef object _finish(self, item, bint ok, value, long long wait_ns, long long run_ns,
                        bint retry):
        cdef Job job
        cdef _Retrying r
        cdef list listeners = None
        cdef bint again
        cdef Py_ssize_t events = oj_load_size(&_event_mask)
        if type(item) is Job:
            job = <Job>item
            if oj_load_state(&job._state) != RUNNING or job._queue is not self:
                raise ValueError(f"finish() takes a job take() gave, once: not {job!r}")
            ref = _ref_of(job)
            prev = job._result if job._attempts > 1 else None  # not freed under the mutex
            if ok:
                if events & (1 << EV_JOB_STOP):
                    _job_event(EV_JOB_STOP, self.name, job.function, ref, wait_ns, run_ns, None)
                oj_lock(&self._mutex)
                job._result = value
                oj_set_state(&job._state, FINISHED)  # after what it publishes
                listeners = job._listeners
                job._listeners = None
                self._fold(OUTCOME_COMPLETED, wait_ns, run_ns)
                oj_unlock(&self._mutex)
                prev = None
                return _notify(job, listeners) if listeners is not None else None
            exc = value
            if events & (1 << EV_JOB_EXCEPTION):
                _job_event(EV_JOB_EXCEPTION, self.name, job.function, ref, wait_ns, run_ns, exc)
            again = retry and self._retryable(job._attempts, exc)
            tb = exc.__traceback__
            oj_lock(&self._mutex)
            if again:
                oj_set_state(&job._state, PENDING)
                self._hold_retry(job)
                self._fold(OUTCOME_RETRIED, wait_ns, run_ns)
            else:
                job._exception = exc
                job._result = tb  # see _outcome
                oj_set_state(&job._state, FINISHED)
                listeners = job._listeners
                job._listeners = None
                self._fold(OUTCOME_FAILED, wait_ns, run_ns)
            oj_unlock(&self._mutex)
            tb = prev = None
            if again:
                exc.__traceback__ = None  # its frames must not live on meanwhile
                job._result = exc  # the cause of a JobExpiredError, should the retry expire
                self._schedule_retry(job, job._attempts, exc, job.function, ref)
                return None
            return _notify(job, listeners) if listeners is not None else None
        if type(item) is not _Retrying:
            raise ValueError(f"finish() takes a job take() gave, not {type(item).__name__}")
        r = <_Retrying>item
        if ok:
            if events & (1 << EV_JOB_STOP):
                _job_event(EV_JOB_STOP, self.name, r.fn, None, wait_ns, run_ns, None)
            oj_lock(&self._mutex)
            self._fold(OUTCOME_COMPLETED, wait_ns, run_ns)
            oj_unlock(&self._mutex)
            return None
        exc = value
        if events & (1 << EV_JOB_EXCEPTION):
            _job_event(EV_JOB_EXCEPTION, self.name, r.fn, None, wait_ns, run_ns, exc)
        if retry and self._retryable(r.runs + 1, exc):
            exc.__traceback__ = None
            held = _retrying_record(r.fn, r.args, r.kwargs, r.context, r.flags, r.runs + 1, exc)
            oj_lock(&self._mutex)
            self._hold_retry(held)
            self._fold(OUTCOME_RETRIED, wait_ns, run_ns)
            oj_unlock(&self._mutex)
            self._schedule_retry(held, r.runs + 1, exc, r.fn, None)
            return None
        log_job_error(self.name, r.fn, (r.args,) if r.flags & SLOT_ONE_ARG else r.args,
                      r.kwargs, exc, note=_attempts_note(r.runs + 1))
        oj_lock(&self._mutex)
        self._fold(OUTCOME_FAILED, wait_ns, run_ns)
        oj_unlock(&self._mutex)
        return None

    def putback(self, Worker worker not None, list items not None):
        """Jobs take() gave that never started (the worker process died before it
        reached them): back at the head of the queue, in their order, as if never taken.
        False, with nothing changed, if there is no memory for them.

        Raises:
            ValueError: an item is not one that take() gave.
        """
        cdef Py_ssize_t n = len(items), i
        cdef Slot *s
        cdef Job job
        cdef _Retrying r
        for item in items:
            if type(item) is Job:
                if oj_load_state(&(<Job>item)._state) != RUNNING or (<Job>item)._queue is not self:
                    raise ValueError(f"putback() takes jobs take() gave: not {item!r}")
            elif type(item) is not _Retrying:
                raise ValueError(f"putback() takes jobs take() gave, not {type(item).__name__}")
        if n == 0:
            return True
        oj_lock(&self._mutex)
        if self._reserve(n) < 0:
            oj_unlock(&self._mutex)
            return False
        for i in range(n - 1, -1, -1):
            self._head = (self._head - 1) & (self._cap - 1)
            s = &self._slots[self._head]
            item = items[i]
            if type(item) is Job:
                job = <Job>item
                oj_set_state(&job._state, PENDING)
                oj_set_int(&job._attempts, job._attempts - 1)
                s.fn = s.args = s.kwargs = NULL
                s.obj = <PyObject *>job
                s.flags = SLOT_JOB
                s.runs = 0
            else:
                r = <_Retrying>item
                s.fn = <PyObject *>r.fn
                s.args = <PyObject *>r.args
                s.kwargs = <PyObject *>r.kwargs if r.kwargs is not None else NULL
                s.obj = <PyObject *>r.context if r.context is not None else NULL
                s.flags = r.flags
                s.runs = r.runs
            s.stamp = 0
            _xincref(s.fn)
            _xincref(s.args)
            _xincref(s.kwargs)
            _xincref(s.obj)
            oj_set_size(&self._count, self._count + 1)
        self._started -= n
        oj_set_size(&worker._jobs_run, worker._jobs_run - n)
        self._unlock_and_wake()
        return True

    cdef void _shrink(self) noexcept nogil:
        # Only called with an empty ring, so nothing needs copying.
        cdef Slot *slots = <Slot *>PyMem_RawMalloc(INITIAL_CAPACITY * sizeof(Slot))
        if slots == NULL:
            return
        PyMem_RawFree(self._slots)
        self._slots = slots
        self._cap = INITIAL_CAPACITY
        self._head = 0

    # -- lifecycle ----------------------------------------------------------------

    def close(self, bint cancel_pending=False, broken=None):
        """Accept no more jobs; wake idle workers so they drain the queue and exit.

        With cancel_pending, queued jobs are dropped (async ones marked cancelled)
        instead of run. With broken (the exception that broke the pool), queued jobs
        are dropped too, async ones failing with PoolBrokenError caused by it, and
        later pushes raise PoolBrokenError. Returns the number of jobs dropped."""
        cdef Slot *taken = NULL
        cdef Py_ssize_t n = 0, n_idle = 0
        cdef PyObject **idle
        cdef set retrying = None
        if broken is not None and not isinstance(broken, BaseException):
            raise TypeError(f"broken must be an exception, not {type(broken).__name__}")
        fresh = set() if self._retrying is not None else None  # not made under the mutex
        oj_lock(&self._mutex)
        oj_set_flag(&self._closed, True)
        if broken is not None and self._broken is None:
            self._broken = broken  # replaces None: frees nothing under the mutex
        if cancel_pending or self._broken is not None:
            if self._count:
                taken = self._take_all(&n)
                self._cancelled_waiting = 0  # out of the ring with the rest
            if self._retry_waiting:  # jobs waiting out a retry's backoff go too
                retrying = self._retrying
                self._retrying = fresh
                self._retry_waiting = 0
        idle = self._detach_idle(&n_idle, True)
        self._release_rate_waiter()
        line = self._release_line()
        oj_unlock(&self._mutex)
        _release_refs(idle, n_idle)
        _fire_all(line)
        n = _drop(self, taken, n)
        return n + self._settle_retries(retrying, True)

    cdef void _release_rate_waiter(self) noexcept:
        # Mutex held: wake the worker sleeping until the rate limit's next start (the
        # one release of its wake lock: the worker takes back a late one, see work()).
        if self._rate_waiter != NULL:
            PyThread_release_lock((<Worker>self._rate_waiter)._wake)
            self._rate_waiter = NULL

    cdef list _release_line(self):
        # Mutex held, queue closed (nobody joins the line any more): move the line
        # out whole (nothing allocated or freed), every ticket marked signalled; the
        # caller fires them once the mutex is free, and they find the queue closed.
        cdef list line = self._line
        if self._line_len == 0:
            return None
        for ticket in line:
            (<RoomTicket>ticket).queued = False
            (<RoomTicket>ticket).signalled = True
        self._line = None  # line holds the list still: nothing is freed
        oj_set_size(&self._line_len, 0)
        return line

    def retire(self, Worker worker not None):
        """Ask one worker to exit after its current job (the queue stays as it is)."""
        cdef Py_ssize_t i
        cdef PyObject *found = NULL
        oj_lock(&self._mutex)
        oj_set_flag(&worker._retired, True)
        if self._rate_waiter == <PyObject *>worker:
            self._release_rate_waiter()
        for i in range(self._idle_count):
            if self._idle[i] == <PyObject *>worker:
                found = self._idle[i]
                memmove(&self._idle[i], &self._idle[i + 1],
                        (self._idle_count - i - 1) * sizeof(PyObject *))
                oj_set_size(&self._idle_count, self._idle_count - 1)
                break
        oj_unlock(&self._mutex)
        if found != NULL:
            _wake(found)

    cdef PyObject **_detach_idle(self, Py_ssize_t *n, bint wake) noexcept:
        # Mutex held: empty the idle stack, waking each worker if asked (a C call,
        # no Python code). The caller drops the references once the mutex is free.
        cdef Py_ssize_t i
        cdef PyObject **out = <PyObject **>PyMem_RawMalloc(
            (self._idle_count + 1) * sizeof(PyObject *))
        n[0] = self._idle_count if out != NULL else 0  # no memory: leak, never hang
        for i in range(self._idle_count):
            if wake:
                PyThread_release_lock((<Worker>self._idle[i])._wake)
            if out != NULL:
                out[i] = self._idle[i]
        oj_set_size(&self._idle_count, 0)
        return out

    cdef Slot *_take_all(self, Py_ssize_t *n) noexcept nogil:
        # Mutex held: move every queued slot out, in FIFO order.
        cdef Slot *taken = <Slot *>PyMem_RawMalloc((self._count + 1) * sizeof(Slot))
        cdef Py_ssize_t i
        if taken == NULL:
            n[0] = 0
            return NULL
        for i in range(self._count):
            taken[i] = self._slots[(self._head + i) & (self._cap - 1)]
        n[0] = self._count
        oj_set_size(&self._count, 0)
        self._head = 0
        return taken

    def fork_acquire(self):
        """Before os.fork(): hold the mutex so the child never inherits it locked."""
        oj_lock(&self._mutex)

    def fork_release(self, bint in_child):
        """After os.fork(): release; in the child the queue is dead (its workers did
        not survive the fork), so it is closed and what it held is dropped."""
        cdef Slot *taken = NULL
        cdef Py_ssize_t n = 0, n_idle = 0
        cdef PyObject **idle
        cdef set retrying = None
        if not in_child:
            oj_unlock(&self._mutex)
            return
        oj_set_flag(&self._closed, True)
        if self._count:
            taken = self._take_all(&n)
            self._cancelled_waiting = 0
        if self._retry_waiting:  # their timers were the parent's scheduler's
            retrying = self._retrying
            self._retrying = None  # replaced, not freed, under the mutex
            self._retry_waiting = 0
        idle = self._detach_idle(&n_idle, False)
        self._rate_waiter = NULL  # its thread did not survive the fork
        self._release_line()  # its submitters were threads that did not survive the fork
        oj_unlock(&self._mutex)
        _release_refs(idle, n_idle)
        _drop(self, taken, n)
        self._settle_retries(retrying, False)

    # -- introspection ----------------------------------------------------------

    @property
    def closed(self):
        return oj_load_flag(&self._closed)

    @property
    def max_queue(self):
        """The most jobs it holds queued, or None: no limit."""
        return None if self._max < 0 else self._max

    @property
    def on_full(self):
        return "raise" if self._raise_when_full else "block"

    @property
    def block_timeout(self):
        """Seconds a blocked submit waits for room, or None: no limit."""
        return None if self._block_timeout < 0 else self._block_timeout

    @property
    def copy_context(self):
        return self._copy_context

    @property
    def max_queue_time(self):
        """Seconds a job may wait in the queue before it expires, or None: no limit."""
        return None if self._max_wait_ns < 0 else self._max_wait_ns / 1e9

    @property
    def rate_limit(self):
        """(count, per): at most count starts in any per seconds; or None."""
        return None if self._rate_ring == NULL else (self._rate_count, self._rate_per_ns / 1e9)

    @property
    def retry_attempts(self):
        """Runs a job gets in all (1: no retries)."""
        return self._retry_attempts

    def retries_waiting(self):
        """Jobs waiting out a retry's backoff (counted as queued by stats())."""
        cdef Py_ssize_t n
        oj_lock(&self._mutex)
        n = self._retry_waiting
        oj_unlock(&self._mutex)
        return n

    def waiting(self):
        """Submitters waiting for room (blocked threads and oddjob.aio tickets)."""
        return oj_load_size(&self._line_len)

    def stats(self):
        """(queued, running, submitted, started, completed, failed, cancelled, dropped,
        expired, retried, rejected, queue_wait, run_time), the latencies each
        (count, mean, p50, p90, p99, max) in seconds: counters, not a walk of the queue."""
        cdef double wait[6]
        cdef double run[6]
        cdef unsigned long long c[11]
        oj_lock(&self._mutex)  # copied out first: no Python object is made under it
        c[0] = self._count - self._cancelled_waiting + self._retry_waiting
        c[1] = self._started - self._finished
        c[2] = self._submitted
        c[3] = self._started
        c[4] = self._completed
        c[5] = self._failed
        c[6] = self._cancelled
        c[7] = self._dropped
        c[8] = self._expired
        c[9] = self._retried
        c[10] = self._rejected
        oj_hist_summary(self._wait_hist, wait)
        oj_hist_summary(self._run_hist, run)
        oj_unlock(&self._mutex)
        return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10],
                _summary_tuple(wait), _summary_tuple(run))

    def __len__(self):
        """Number of queued jobs (cancelled async jobs count until a worker skips them)."""
        return oj_load_size(&self._count)

    def snapshot(self):
        """Queued jobs in FIFO order, as (function, args, kwargs, job) tuples; job is
        None for fire-and-forget jobs. Cancelled jobs are left out."""
        cdef Slot *copy
        cdef Py_ssize_t i, n
        cdef Slot *s
        oj_lock(&self._mutex)
        n = self._count
        copy = <Slot *>PyMem_RawMalloc((n or 1) * sizeof(Slot))
        if copy == NULL:
            oj_unlock(&self._mutex)
            raise MemoryError()
        for i in range(n):
            s = &self._slots[(self._head + i) & (self._cap - 1)]
            copy[i] = s[0]
            _xincref(s.fn)
            _xincref(s.args)
            _xincref(s.kwargs)
            _xincref(s.obj)
        oj_unlock(&self._mutex)
        out = []
        try:
            for i in range(n):
                s = &copy[i]
                if s.flags & SLOT_JOB:
                    job = <Job>s.obj
                    if oj_load_state(&job._state) == PENDING:
                        out.append((job.function, job.args, dict(job.kwargs), job))
                elif s.flags & SLOT_ONE_ARG:
                    out.append((<object>s.fn, (<object>s.args,), {}, None))
                else:
                    out.append((<object>s.fn, <object>s.args,
                                {} if s.kwargs == NULL else dict(<object>s.kwargs), None))
        finally:
            for i in range(n):
                _xdecref(copy[i].fn)
                _xdecref(copy[i].args)
                _xdecref(copy[i].kwargs)
                _xdecref(copy[i].obj)
            PyMem_RawFree(copy)
        return out

    def idle_count(self):
        return oj_load_size(&self._idle_count)

    def __repr__(self):
        return (f"<Queue {self.name!r} queued={oj_load_size(&self._count)} "
                f"idle={oj_load_size(&self._idle_count)}>")


# ----------------------------------------------------------------------------
# The module-level job calls, compiled


cdef extern from *:
    """
    /* Vectorcall entry points of Dispatcher.perform and .async_perform. A Cython
       def with **kwargs builds a dict on every call, keywords or not; these build
       one only when keywords are passed, which saves about 120 instructions a job. */
    typedef PyObject *(*oj_dispatch_fn)(PyObject *, PyObject *, PyObject *, PyObject *,
                                        PyObject *, int);
    static oj_dispatch_fn oj_dispatch = NULL;

    static PyObject *oj_call(PyObject *self, PyObject *const *argv, Py_ssize_t nargs,
                             PyObject *kwnames, int is_async) {
        PyObject *args, *kwargs = NULL, *result;
        Py_ssize_t i, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        if (nargs < 2) {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes a pool and a function (%zd positional arguments given)",
                         is_async ? "async_perform" : "perform", nargs);
            return NULL;
        }
        args = PyTuple_New(nargs - 2);
        if (args == NULL)
            return NULL;
        for (i = 2; i < nargs; i++) {
            Py_INCREF(argv[i]);
            PyTuple_SET_ITEM(args, i - 2, argv[i]);
        }
        if (nkw) {
            kwargs = PyDict_New();
            if (kwargs == NULL) {
                Py_DECREF(args);
                return NULL;
            }
            for (i = 0; i < nkw; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), argv[nargs + i]) < 0) {
                    Py_DECREF(args);
                    Py_DECREF(kwargs);
                    return NULL;
                }
            }
        }
        result = oj_dispatch(self, argv[0], argv[1], args, kwargs ? kwargs : Py_None, is_async);
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        return result;
    }

    static PyObject *oj_perform(PyObject *self, PyObject *const *argv, Py_ssize_t nargs,
                                PyObject *kwnames) {
        return oj_call(self, argv, nargs, kwnames, 0);
    }

    static PyObject *oj_async_perform(PyObject *self, PyObject *const *argv, Py_ssize_t nargs,
                                      PyObject *kwnames) {
        return oj_call(self, argv, nargs, kwnames, 1);
    }

    static PyMethodDef oj_perform_def = {
        "perform", (PyCFunction)(void (*)(void))oj_perform, METH_FASTCALL | METH_KEYWORDS,
        "perform($self, pool, fn, /, *args, **kwargs)\\n--\\n\\n"
        "Run fn(*args, **kwargs) on a worker of pool; fire and forget."};
    static PyMethodDef oj_async_perform_def = {
        "async_perform", (PyCFunction)(void (*)(void))oj_async_perform,
        METH_FASTCALL | METH_KEYWORDS,
        "async_perform($self, pool, fn, /, *args, **kwargs)\\n--\\n\\n"
        "Run fn(*args, **kwargs) on a worker of pool and return its Job."};
    """
    ctypedef object (*oj_dispatch_fn)(object, object, object, object, object, int)
    oj_dispatch_fn oj_dispatch
    ctypedef struct PyMethodDef:
        pass
    PyMethodDef oj_perform_def
    PyMethodDef oj_async_perform_def
    object PyCFunction_NewEx(PyMethodDef *, object, object)


cdef object _dispatch(object dispatcher, object pool, object fn, object args, object kwargs,
                      int is_async):
    # Behind Dispatcher.perform/async_perform: args is a fresh tuple, kwargs a dict or None.
    queue = (<Dispatcher>dispatcher)._queue(pool)
    if type(queue) is Queue:
        if is_async:
            return (<Queue>queue)._push_async(fn, <tuple>args, <dict>kwargs, None)
        (<Queue>queue)._push(fn, <tuple>args, <dict>kwargs, None)
        return None
    if is_async:
        return queue.push_async(fn, args, kwargs)
    queue.push(fn, args, kwargs)
    return None


oj_dispatch = _dispatch


@cython.final
cdef class Dispatcher:
    """perform / async_perform for the module-level API: the pool (a name or a Pool)
    resolves to its queue with one dict lookup, and the job is queued without a
    Python frame per call. Queues of the pure-Python core are served too."""

    cdef dict _queues
    cdef object _resolve
    cdef public object pool_type
    cdef readonly object perform
    cdef readonly object async_perform

    def __init__(self, dict queues not None, resolve, pool_type=None):
        # queues: name/Pool -> queue of every running pool; resolve(pool) -> queue
        # on a miss (starts a configured pool, or raises PoolNotFoundError/TypeError).
        # pool_type: the Pool class, whose exact instances are looked up directly.
        self._queues = queues
        self._resolve = resolve
        self.pool_type = pool_type
        self.perform = PyCFunction_NewEx(&oj_perform_def, self, None)
        self.async_perform = PyCFunction_NewEx(&oj_async_perform_def, self, None)

    cdef inline object _queue(self, object pool):
        # Only a str or a Pool is hashed here: any other object (whose __hash__ or
        # __eq__ may raise, or match a pool's name) goes to resolve, which refuses it
        # with TypeError as every other entry point does.
        if type(pool) is str or type(pool) is self.pool_type:
            try:
                return self._queues[pool]
            except KeyError:  # not running yet
                pass
        return self._resolve(pool)
