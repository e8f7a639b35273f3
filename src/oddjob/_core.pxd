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
    int runs            # a fire-and-forget retry's runs so far (in the padding: still 48 B)


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
    cdef object _kwargs
    cdef unsigned long _owner
    cdef unsigned long long _ref
    cdef Queue _queue
    cdef Owner _owner_token
    cdef object _result     # the result; once _exception is set, its own traceback
    cdef object _exception
    cdef list _listeners    # Waiters and done callbacks; None until there is one
    cdef object _context    # the contextvars.Context it runs in, or None: the worker's own
    # The 4-byte fields together, so that none is padded to 8 (a Job stays in the
    # allocator's 160-byte size class).
    cdef int _state
    cdef int _attempts      # runs started so far (retries included)
    cdef bint _one_arg
    cdef bint _shared_context  # _context is its batch's: run in a copy of it
    cdef bint _retrieved    # its outcome was read (else a failure is logged at collection)

    cdef bint _cancel(self, bint queued) except -1
    cdef int _wait(self, object timeout) except -1
    cdef bint _listen(self, object listener) except -1
    cdef bint _unwait(self, Waiter waiter) except? -1
    cdef object _outcome(self)
    cdef inline Queue _q(self)


@cython.final
cdef class _Retrying:
    # A fire-and-forget job waiting out its retry backoff (an async job waits as its Job).
    cdef object fn
    cdef object args
    cdef object kwargs
    cdef object context
    cdef int flags
    cdef int runs
    cdef object error       # the last run's exception, its traceback dropped


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
    # max_queue_time: a job that waited longer when a worker reaches it expires (-1: never).
    cdef long long _max_wait_ns
    cdef bint _gated  # a rate limit or max_queue_time: a worker reads the clock per job
    # rate_limit (count, per): the last count start times, oldest at _rate_pos; NULL: none.
    cdef long long *_rate_ring
    cdef Py_ssize_t _rate_count
    cdef Py_ssize_t _rate_pos
    cdef long long _rate_per_ns
    cdef PyObject *_rate_waiter  # the one worker sleeping until the next start is allowed
    # retry: runs a job gets in all (1: no retry), the exceptions retried, and the hook
    # that sets the backoff timer (which calls requeue); jobs waiting out a backoff.
    cdef Py_ssize_t _retry_attempts
    cdef object _retry_on
    cdef object _retry_later
    cdef object _retry_forget  # called with (queue, job) when a waiting retry is cancelled
    cdef set _retrying       # Jobs and _Retrying records (hashed by identity)
    cdef Py_ssize_t _retry_waiting

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
    cdef int _fail_taken(self, Slot *taken, Py_ssize_t n, object exc) except -1
    cdef object _finish(self, item, bint ok, value, long long wait_ns, long long run_ns,
                        bint retry)
    cdef inline long long _stamp(self, Py_ssize_t n, unsigned long long *first,
                                 unsigned long long *mask) noexcept
    cdef inline void _fold(self, int outcome, long long wait_ns, long long run_ns) noexcept
    cdef int _rate_wait(self, Worker worker, Slot *s, long long now, long long *due) noexcept
    cdef object _expire(self, Worker worker, Slot *s, long long waited, Py_ssize_t events)
    cdef bint _retryable(self, Py_ssize_t runs, object exc) except -1
    cdef void _hold_retry(self, object item) noexcept
    cdef int _schedule_retry(self, object item, Py_ssize_t runs, object exc, object fn,
                             object ref) except -1
    cdef int _retry_failed(self, object item, object exc, bint unscheduled) except -1
    cdef int _wake_if_drained(self) except -1
    cdef void _forget_retry(self, object item) noexcept
    cdef void _release_rate_waiter(self) noexcept
    cdef object _settle_retries(self, set items, bint forget)
    cdef int _count_rejected(self, Py_ssize_t n) except -1
    cdef int _tell_full(self, Py_ssize_t n) except -1
    cdef inline Slot *_put(self, PyObject *fn, PyObject *args, PyObject *kwargs,
                           PyObject *obj, int flags, long long stamp) noexcept
    cdef inline void _append(self, PyObject *fn, PyObject *args, PyObject *kwargs,
                             PyObject *obj, int flags, long long stamp) noexcept
    cdef inline void _unlock_and_wake(self) noexcept
    cdef int _push(self, object fn, tuple args, dict kwargs, RoomTicket ticket) except -1
    cdef Job _push_async(self, object fn, tuple args, dict kwargs, RoomTicket ticket)
    cdef int _push_many(self, object fn, object items, RoomTicket ticket, bint force,
                        object context) except -1
