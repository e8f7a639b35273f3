# Typed state of the compiled core. The Python twin (_core_py.py) mirrors it.
cimport cython
from cpython.object cimport PyObject
from cpython.pythread cimport PyThread_type_lock


cdef extern from "_lock.h":
    # PyMutex on CPython 3.13+, a native mutex before (see _lock.h).
    ctypedef struct oj_lock_t:
        pass
    int oj_lock_init(oj_lock_t *lock)
    void oj_lock_free(oj_lock_t *lock)
    void oj_lock(oj_lock_t *lock)
    void oj_unlock(oj_lock_t *lock) nogil
    void oj_cpu_relax() nogil
    long long oj_now_ns() nogil


cdef extern from "_stats.h":
    # Log-linear latency histograms (see _stats.h) and the clock that feeds them.
    ctypedef struct oj_hist_t:
        unsigned long long count
    void oj_hist_record(oj_hist_t *h, long long ns) noexcept nogil
    void oj_hist_summary(const oj_hist_t *h, double *out) noexcept nogil
    long long oj_clock_ns() noexcept nogil


# One queued job: four pointers, a time and a flag, no per-job Python object for
# fire-and-forget work (an async job's fields live on its Job instead).
cdef struct Slot:
    PyObject *fn        # the callable; NULL for async jobs
    PyObject *args      # args tuple, or the single item when flags & SLOT_ONE_ARG
    PyObject *kwargs    # keyword arguments dict, or NULL when there are none
    PyObject *obj       # an async job's Job (SLOT_JOB), else its Context or NULL
    long long stamp     # oj_clock_ns() when queued, if this job is timed; else 0
    int flags


@cython.final
cdef class Owner:
    # Stands for one thread: alive until that thread's thread-locals are torn down.
    cdef bint _alive


@cython.final
cdef class Waiter:
    # A binary semaphore one thread blocks on while a job finishes.
    cdef PyThread_type_lock lock
    cdef bint in_use
    cdef int block(self, double timeout) except -1
    cdef void consume(self) noexcept


@cython.final
cdef class _Countdown:
    # One wake-up for a whole await_many (see wait_many).
    cdef Waiter waiter
    cdef Py_ssize_t remaining
    cdef bint released
    cdef void count(self, bint failed) noexcept


@cython.final
cdef class RoomTicket:
    # A submitter's place in a bounded queue's line while it waits for room.
    cdef Py_ssize_t n        # slots it needs
    cdef bint queued         # in the line now
    cdef bint signalled      # woken for room it has not yet taken
    cdef Waiter waiter       # a blocked thread's, released on a signal; or None
    cdef object wake         # called (without the mutex) on a signal; or None
    cdef int fire(self) except -1


@cython.final
cdef class Worker:
    cdef PyThread_type_lock _wake
    cdef bint _busy
    cdef bint _retired
    cdef PyObject *_job         # the async job it runs (borrowed: its work() holds it)
    cdef Py_ssize_t _jobs_run   # jobs it has run (its own thread writes, others read)
    cdef public object thread
    cdef public object name


@cython.final
cdef class Job:
    cdef readonly object pool
    cdef readonly object function
    cdef object _args          # the args tuple, or the single item when _one_arg
    cdef bint _one_arg
    cdef object _kwargs
    cdef unsigned long _owner
    cdef unsigned long long _ref
    cdef Queue _queue
    cdef Owner _owner_token
    cdef int _state
    cdef object _result     # the result; once _exception is set, its own traceback
    cdef object _exception
    cdef list _listeners    # Waiters and done callbacks; None until there is one
    cdef object _context    # the contextvars.Context it runs in, or None: the worker's own
    cdef bint _shared_context  # _context is its batch's: run in a copy of it
    cdef bint _retrieved    # its outcome was read (else a failure is logged at collection)

    cdef bint _cancel(self, bint queued) except -1
    cdef int _wait(self, object timeout) except -1
    cdef bint _listen(self, object listener) except -1
    cdef bint _unwait(self, Waiter waiter) except? -1
    cdef object _outcome(self)
    cdef inline Queue _q(self)


@cython.final
cdef class Queue:
    cdef oj_lock_t _mutex
    cdef bint _lock_ready
    cdef Slot *_slots
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _count
    cdef PyObject **_idle
    cdef Py_ssize_t _idle_count
    cdef Py_ssize_t _idle_cap
    cdef bint _closed
    cdef bint _spinning     # a worker spins for work before sleeping (free-threaded only)
    cdef object _broken     # the initializer's exception once the pool is broken, else None
    cdef Py_ssize_t _max     # the most jobs it holds queued, or -1: no limit
    cdef bint _raise_when_full
    cdef double _block_timeout  # seconds a blocked submit waits; -1.0: no limit
    cdef bint _copy_context
    cdef list _line         # RoomTickets waiting for room, first come first served
    cdef Py_ssize_t _line_len
    cdef unsigned long long _serial
    cdef unsigned long long _next_ref
    cdef readonly object name
    # Stats (mutex held to write and to read): counters kept as jobs move.
    cdef unsigned long long _submitted, _started, _finished  # _finished: of those started
    cdef unsigned long long _completed, _failed, _cancelled, _dropped, _rejected
    cdef unsigned long long _expired, _retried
    cdef Py_ssize_t _cancelled_waiting  # cancelled jobs still in the ring
    cdef oj_hist_t *_wait_hist
    cdef oj_hist_t *_run_hist
    cdef unsigned long long _pushes
    cdef unsigned long long _sample_mask  # a push is timed when (_pushes & mask) == 0
    cdef long long _run_estimate  # moving average of sampled run times (ns)

    cdef int _reserve(self, Py_ssize_t extra) noexcept nogil
    cdef inline Slot *_tail(self) noexcept nogil
    cdef PyObject *_take_idle(self) noexcept
    cdef int _push_idle(self, Worker w) noexcept
    cdef void _shrink(self) noexcept nogil
    cdef PyObject **_detach_idle(self, Py_ssize_t *n, bint wake) noexcept
    cdef Slot *_take_all(self, Py_ssize_t *n) noexcept nogil
    cdef Job _new_job(self, object fn, object args, object kwargs, Owner owner, bint one_arg,
                      object context, bint shared)
    cdef int _lock_for(self, Py_ssize_t n, RoomTicket ticket, bint force) except -1
    cdef int _room(self, Py_ssize_t n, RoomTicket ticket, bint force) except -1
    cdef int _wait_for_room(self, Py_ssize_t n, RoomTicket ticket) except -1
    cdef void _leave_line(self, RoomTicket ticket) noexcept
    cdef int _wake_line(self) except -1
    cdef list _release_line(self)
    cdef inline object _capture(self)
    cdef int _fail(self, Job job, object exc, bint started) except -1
    cdef inline long long _stamp(self, Py_ssize_t n, unsigned long long *first,
                                 unsigned long long *mask) noexcept
    cdef inline void _fold(self, int outcome, long long wait_ns, long long run_ns) noexcept
    cdef int _count_rejected(self, Py_ssize_t n) except -1
    cdef int _tell_full(self, Py_ssize_t n) except -1
    cdef inline void _append(self, PyObject *fn, PyObject *args, PyObject *kwargs,
                             PyObject *obj, int flags, long long stamp) noexcept
    cdef inline void _unlock_and_wake(self) noexcept
    cdef int _push(self, object fn, tuple args, dict kwargs, RoomTicket ticket) except -1
    cdef Job _push_async(self, object fn, tuple args, dict kwargs, RoomTicket ticket)
    cdef int _push_many(self, object fn, object items, RoomTicket ticket, bint force,
                        object context) except -1
