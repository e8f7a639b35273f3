"""Timers: jobs queued later, all driven by one scheduling thread.

    perform_after / perform_at / perform_many_*
        | validate, resolve the pool (_registry.lookup), make a TimerRef
        v
    _Scheduler: two heaps of (due, serial, TimerRef)   <-- cancel_timer / read_timer
        | the "oddjob-scheduler" thread sleeps until the earliest due time,
        v pops what is due and queues it (a batch with one push), in the context
        | the timer was set in; a full bounded queue takes it all the same
    pool.queue.push_scheduled / push_many_scheduled  -->  a worker runs the job

A timer costs a heap entry, never a thread. perform_after timers are due on
``time.monotonic``, so wall-clock changes do not move them; perform_at timers are due on
the wall clock (``time.time``) and live on a heap of their own, rechecked at least every
WALL_CLOCK_RECHECK seconds so that a clock change is noticed.

A TimerRef changes state once, under the scheduler's lock: pending -> fired (its job is
queued in the same step), or pending -> cancelled. That single transition is why a cancel
that races the firing either wins (the job never runs) or loses (it returns False and the
job, already queued, runs once). A cancelled entry stays in its heap until it surfaces or
the heaps are compacted, which happens as soon as cancelled entries outnumber pending ones.

Timers belong to their Pool object: Pool.stop() calls _registry.stop_hooks, and ours
cancels that pool's timers. A retry's backoff (call_later) is a timer of the core's own:
it belongs to no pool, so a draining pool's stop leaves it, and it calls the queue back
(Queue.requeue) rather than queue a new job.

The scheduling thread starts with the first timer and exits
once none is left (after IDLE_LINGER, or at once when a pool stop leaves none). After
os.fork() the child starts with a fresh scheduler: inherited timers are dropped, so a job
is never fired by both processes.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeAlias, TypeVar, final

from . import _registry
from ._errors import PoolNotFoundError

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = [
    "TimerRef",
    "cancel_timer",
    "perform_after",
    "perform_at",
    "perform_many_after",
    "perform_many_at",
    "read_timer",
]

P = ParamSpec("P")
Item = TypeVar("Item")

PoolName: TypeAlias = "str | Pool"
Delay: TypeAlias = "float | timedelta"
When: TypeAlias = "datetime | dtime"

logger = logging.getLogger("oddjob")

THREAD_NAME: Final = "oddjob-scheduler"

# Longest sleep while a perform_at timer is pending: a wall-clock change is noticed
# within this, at the cost of one wake-up per interval.
WALL_CLOCK_RECHECK: Final = 1.0
# Bound on every other sleep: no wait is unbounded, and a spare wake-up a minute is free.
MAX_SLEEP: Final = 60.0
# How long the idle thread waits for a new timer before it exits: spares a thread start
# between back-to-back timers, yet leaves an idle process without the thread.
IDLE_LINGER: Final = 0.5

_PENDING: Final = "pending"
_FIRED: Final = "fired"
_CANCELLED: Final = "cancelled"

_serials = itertools.count(1)
_serials_lock = threading.Lock()  # next() on a shared count: atomic only under the GIL

# One heap entry: due time (monotonic or wall seconds), serial (FIFO among equal due
# times; never lets the tuple comparison reach the TimerRef), the timer.
_Entry: TypeAlias = "tuple[float, int, TimerRef | _Call]"
# What a timer hands to its pool when it fires.
_Fire: TypeAlias = "tuple[Pool, Callable[..., object], tuple[Any, ...], dict[str, Any], list[Any] | None, contextvars.Context | None]"  # noqa: E501


@final
class TimerRef:
    """The handle of a scheduled job, returned by perform_after, perform_at and the
    perform_many_* forms.

    Hashable (by identity). ``cancel()`` is ``cancel_timer(self)`` and ``remaining()`` is
    ``read_timer(self)``. ``pool`` is the pool's name, ``function`` the job's function.
    """

    __slots__ = (
        "_args",
        "_batch",
        "_context",
        "_due",
        "_fn",
        "_kwargs",
        "_pool",
        "_pool_name",
        "_scheduler",
        "_serial",
        "_state",
        "_wall",
    )

    def __init__(
        self,
        pool: Pool,
        due: float,
        wall: bool,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        batch: list[Any] | None,
    ) -> None:
        self._pool_name = pool.name
        self._fn = fn
        with _serials_lock:
            self._serial = next(_serials)
        self._pool: Pool | None = pool
        self._due = due  # seconds on time.time() if wall, else on time.monotonic()
        self._wall = wall
        self._args = args
        self._kwargs = kwargs
        self._batch = batch  # a perform_many_* batch, or None for a single job
        # The job runs in a copy of the context the timer was set in (pool option).
        self._context = contextvars.copy_context() if pool.options.copy_context else None
        self._state = _PENDING
        self._scheduler = _scheduler

    @property
    def pool(self) -> str:
        """The name of the pool the job goes to."""
        return self._pool_name

    @property
    def function(self) -> Callable[..., object]:
        """The job's function."""
        return self._fn

    def cancel(self) -> float | Literal[False]:
        """Same as ``cancel_timer(self)``."""
        return cancel_timer(self)

    def remaining(self) -> float | Literal[False]:
        """Same as ``read_timer(self)``."""
        return read_timer(self)

    def _left(self) -> float:
        now = time.time() if self._wall else time.monotonic()
        return max(0.0, self._due - now)

    def _settle(self, state: str) -> _Fire:
        """Leave the pending state (the scheduler's lock is held) and let go of the
        payload, which is returned."""
        pool = self._pool
        assert pool is not None
        payload = (pool, self._fn, self._args, self._kwargs, self._batch, self._context)
        self._state = state
        self._pool = None
        self._args = ()
        self._kwargs = {}
        self._batch = None
        self._context = None
        return payload

    def __repr__(self) -> str:
        left = read_timer(self)
        status = f"due in {left:.3f}s" if left is not False else self._state
        name = getattr(self._fn, "__qualname__", None) or repr(self._fn)
        return f"<TimerRef {self._serial} {name} on {self._pool_name!r}: {status}>"


@final
class _Call:
    """A heap entry that calls ``fn(arg)`` on the scheduling thread when due (a retry's
    backoff). It has a TimerRef's state and due time, and belongs to no pool."""

    __slots__ = ("_arg", "_due", "_fn", "_owner", "_state", "_wall")

    def __init__(self, due: float, fn: Callable[[Any], object], arg: object, owner: object) -> None:
        self._owner = owner  # what cancel_call names (a pool's queue)
        self._due = due
        self._fn: Callable[[Any], object] | None = fn
        self._arg: object = arg
        self._state = _PENDING
        self._wall = False

    def _settle(self, state: str) -> tuple[Callable[[Any], object] | None, object]:
        payload = (self._fn, self._arg)
        self._state = state
        self._fn = self._arg = None
        return payload


class _Scheduler:
    """The pending timers of this process and the thread that fires them."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._monotonic: list[_Entry] = []  # perform_after timers
        self._wall: list[_Entry] = []  # perform_at timers
        self._by_pool: dict[Pool, set[TimerRef]] = {}
        # Pending calls by owner, then by id() of their argument (which the call holds,
        # so the id is not reused meanwhile).
        self._calls: dict[object, dict[int, _Call]] = {}
        self._pending = 0  # pending timers; the heaps also hold cancelled entries
        self._cancelled = 0  # cancelled entries still in a heap
        self._thread: threading.Thread | None = None
        self._linger_until: float | None = None  # set while idle; the thread exits then

    @property
    def pending(self) -> int:
        """How many timers are pending."""
        return self._pending

    @property
    def entries(self) -> int:
        """How many heap entries exist, cancelled ones included."""
        return len(self._monotonic) + len(self._wall)

    def add(self, ref: TimerRef) -> TimerRef:
        """Schedule ``ref``; PoolNotFoundError if its pool has stopped since it was made."""
        entry: _Entry = (ref._due, ref._serial, ref)
        heap = self._wall if ref._wall else self._monotonic
        pool = ref._pool
        assert pool is not None
        with self._cond:
            # A pool unregisters before its stop hook takes this lock: checked here, a
            # pool stopping meanwhile either refuses the timer or its hook cancels it.
            if _registry.whereis(pool.name) is not pool:
                raise PoolNotFoundError(f"pool {pool.name!r} is not running")
            self._start_thread_locked()
            heapq.heappush(heap, entry)
            self._by_pool.setdefault(pool, set()).add(ref)
            self._pending += 1
            self._linger_until = None
            if heap[0] is entry:  # the new earliest: the thread sleeps too long
                self._cond.notify()
        return ref

    def call_later(
        self, delay: float, fn: Callable[[Any], object], arg: object, owner: object
    ) -> None:
        """Call ``fn(arg)`` on the scheduling thread after ``delay`` seconds (a retry's
        backoff); ``cancel_call(owner, arg)`` drops it. fn must cope with the job having
        been settled meanwhile.

        Raises:
            RuntimeError: the scheduling thread cannot be started (nothing is scheduled).
        """
        with _serials_lock:
            serial = next(_serials)
        call = _Call(time.monotonic() + delay, fn, arg, owner)
        entry: _Entry = (call._due, serial, call)
        with self._cond:
            self._start_thread_locked()
            heapq.heappush(self._monotonic, entry)
            self._calls.setdefault(owner, {})[id(arg)] = call
            self._pending += 1
            self._linger_until = None
            if self._monotonic[0] is entry:
                self._cond.notify()

    def _start_thread_locked(self) -> None:
        # Started before a timer is added, so that a failure schedules nothing.
        if self._thread is None:
            _install_hooks()
            thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            thread.start()
            self._thread = thread

    def cancel(self, ref: TimerRef) -> float | Literal[False]:
        if ref._scheduler is not self:  # inherited across a fork: dropped there
            return False
        with self._cond:
            if ref._state is not _PENDING:
                return False
            left = ref._left()
            self._settle_locked(ref, _CANCELLED)
            self._forget_locked(1)
        return left

    def read(self, ref: TimerRef) -> float | Literal[False]:
        if ref._scheduler is not self:
            return False
        with self._cond:
            return ref._left() if ref._state is _PENDING else False

    def cancel_pool(self, pool: Pool) -> None:
        """Cancel every timer of ``pool`` (a registry stop hook: it must not raise)."""
        with self._cond:
            timers = self._by_pool.pop(pool, ())
            for ref in timers:
                ref._settle(_CANCELLED)
            self._forget_locked(len(timers))
            if not self._pending:  # a pool stop is a good moment to let the thread go
                self._linger_until = -math.inf

    def cancel_call(self, owner: object, arg: object) -> bool:
        """Drop ``owner``'s pending call with ``arg`` (a cancelled retry), so that neither
        the job nor the scheduling thread is kept until it would have been due."""
        with self._cond:
            calls = self._calls.get(owner)
            call = None if calls is None else calls.get(id(arg))
            if call is None or call._arg is not arg:
                return False
            self._unlist_call_locked(call)
            call._settle(_CANCELLED)
            self._forget_locked(1)
            if not self._pending:
                self._linger_until = -math.inf
            return True

    def _unlist_call_locked(self, call: _Call) -> None:
        calls = self._calls.get(call._owner)
        if calls is not None:
            calls.pop(id(call._arg), None)
            if not calls:
                del self._calls[call._owner]

    def _settle_call_locked(self, call: _Call) -> tuple[Callable[[Any], object] | None, object]:
        self._unlist_call_locked(call)  # before _settle lets go of the argument
        return call._settle(_FIRED)

    def _settle_locked(self, ref: TimerRef, state: str) -> _Fire:
        """Take a pending timer off its pool's set and settle it; returns its payload."""
        payload = ref._settle(state)
        timers = self._by_pool[payload[0]]
        timers.discard(ref)
        if not timers:
            del self._by_pool[payload[0]]
        return payload

    def _forget_locked(self, n: int) -> None:
        """``n`` pending timers were just cancelled in place."""
        self._pending -= n
        self._cancelled += n
        if self._cancelled > self._pending:
            # Rebuilding costs O(entries) and removes more than half of them, so the
            # cost per cancel stays constant and garbage never exceeds the live timers.
            self._monotonic = [e for e in self._monotonic if e[2]._state is _PENDING]
            self._wall = [e for e in self._wall if e[2]._state is _PENDING]
            heapq.heapify(self._monotonic)
            heapq.heapify(self._wall)
            self._cancelled = 0
        if not self._pending:  # wake the thread: it may be sleeping towards a dead entry
            self._cond.notify()

    # -- the scheduling thread ---------------------------------------------------------

    def _run(self) -> None:
        with self._cond:
            while True:
                self._fire_due_locked()
                wait = self._sleep_locked()
                if wait is None:
                    self._thread = None
                    return
                self._cond.wait(wait)

    def _fire_due_locked(self) -> None:
        # Queued under the lock, so that "fired" means "in the pool's queue": a job
        # queued after read_timer() returned False runs after the timer's job, and a
        # pool stop (its hook takes this lock) finds each timer cancelled or queued.
        for heap, now in ((self._monotonic, time.monotonic()), (self._wall, time.time())):
            while heap and heap[0][0] <= now:
                ref = heapq.heappop(heap)[2]
                if ref._state is not _PENDING:
                    self._cancelled -= 1
                    continue
                self._pending -= 1
                if isinstance(ref, _Call):
                    _call(*self._settle_call_locked(ref))
                else:
                    _fire(*self._settle_locked(ref, _FIRED))

    def _sleep_locked(self) -> float | None:
        """Seconds to sleep until the next due time, or None: exit, nothing is pending."""
        now = time.monotonic()
        if not self._pending:
            if self._linger_until is None:
                self._linger_until = now + IDLE_LINGER
            left = self._linger_until - now
            return left if left > 0 else None
        wait = MAX_SLEEP
        for heap, clock_now, cap in (
            (self._monotonic, now, MAX_SLEEP),
            (self._wall, time.time(), WALL_CLOCK_RECHECK),
        ):
            while heap and heap[0][2]._state is not _PENDING:  # no wake-up for the dead
                heapq.heappop(heap)
                self._cancelled -= 1
            if heap:
                wait = min(wait, heap[0][0] - clock_now, cap)
        return max(wait, 0.0)


def _fire(
    pool: Pool,
    fn: Callable[..., object],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    batch: list[Any] | None,
    context: contextvars.Context | None,
) -> None:
    # The _scheduled pushes never wait for room: a full bounded queue takes the job
    # all the same (the scheduling thread must not block on one pool).
    try:
        queue = pool.queue
        if batch is None:
            queue.push_scheduled(fn, args, kwargs, context)
        else:
            queue.push_many_scheduled(fn, batch, context)
    except PoolNotFoundError:
        pass  # the pool is stopping: its stop hook is about to cancel its other timers
    except Exception:  # never let one job take the scheduling thread down
        logger.exception("could not queue the job %r of a timer on pool %r", fn, pool.name)


def _call(fn: Callable[[Any], object] | None, arg: object) -> None:
    try:
        if fn is not None:
            fn(arg)
    except Exception:  # never let one call take the scheduling thread down
        logger.exception("a retry timer's call %r failed", fn)


_scheduler = _Scheduler()
_hooks_installed = False


def call_later(delay: float, fn: Callable[[Any], object], arg: object, owner: object) -> None:
    """Call ``fn(arg)`` on the scheduling thread after ``delay`` seconds (see
    _Scheduler.call_later)."""
    _scheduler.call_later(delay, fn, arg, owner)


def cancel_call(owner: object, arg: object) -> bool:
    """Drop ``owner``'s pending call with ``arg`` (see _Scheduler.cancel_call)."""
    return _scheduler.cancel_call(owner, arg)


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    _registry.stop_hooks.append(_cancel_pool_timers)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _cancel_pool_timers(pool: Pool) -> None:
    _scheduler.cancel_pool(pool)


def _after_fork_in_child() -> None:
    # Only the forking thread survives: the old scheduler's thread is gone and its lock
    # may be held by a thread that no longer exists, so it is not taken. Its timers belong
    # to the parent's pools; they are dropped here, and their refs read as cancelled.
    global _scheduler
    old, _scheduler = _scheduler, _Scheduler()
    for heap in (old._monotonic, old._wall):
        for _, _, ref in heap:
            if ref._state is _PENDING:
                ref._settle(_CANCELLED)
    old._monotonic, old._wall, old._by_pool, old._calls = [], [], {}, {}


# -- validation ----------------------------------------------------------------------------


def _delay_seconds(delay: object) -> float:
    if isinstance(delay, timedelta):
        value = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        try:
            value = float(delay)
        except OverflowError:  # an int beyond float range
            value = math.inf
    else:
        raise TypeError(
            f"delay must be a number of seconds or a timedelta, not {type(delay).__name__}"
        )
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"delay must be a number of seconds >= 0, got {delay!r}")
    return value  # inf (or beyond what any clock reaches): a timer that never fires


def _wall_due(when: object) -> float:
    """The wall-clock time (``time.time()`` seconds) at which ``when`` is due."""
    if isinstance(when, datetime):
        due = when.timestamp()  # a naive datetime is local time
        if due < time.time():
            raise ValueError(f"{when!r} is in the past")
        return due
    if isinstance(when, dtime):
        # Now in the time's own zone, or local time for a naive time. Between datetimes
        # of one tzinfo, comparison is on the wall clock of that zone, as wanted here.
        now = datetime.now(when.tzinfo)
        today = datetime.combine(now.date(), when)
        if today > now:
            return today.timestamp()
        return datetime.combine(now.date() + timedelta(days=1), when).timestamp()
    raise TypeError(
        f"when must be a datetime.datetime or a datetime.time, not {type(when).__name__}"
    )


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")


def _batch(iterable: object) -> list[Any]:
    # Always a copy: the caller may change its list before the timer fires.
    try:
        iterator = iter(iterable)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"a batch must be iterable, not {type(iterable).__name__}") from None
    return list(iterator)


# -- the public calls --------------------------------------------------------------------


def perform_after(
    delay: Delay, pool: PoolName, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs
) -> TimerRef:
    """Queue ``fn(*args, **kwargs)`` on ``pool`` once ``delay`` has passed.

    The delay runs on a monotonic clock: changing the system time does not move it.

    Args:
        delay: seconds (int or float) or a timedelta; 0 queues the job at once.
        pool: a pool name or Pool; a configured pool starts if need be.
        fn: the job's function; ``args`` and ``kwargs`` are passed to it.

    Returns:
        The TimerRef, for cancel_timer and read_timer.

    Raises:
        TypeError: delay is not a number or timedelta (a bool is not a number here), fn is
            not callable, or pool is not a str or Pool.
        ValueError: delay is negative or not finite.
        PoolNotFoundError: the pool is not running and not configured.
    """
    due = time.monotonic() + _delay_seconds(delay)
    _check_callable(fn)
    target = _registry.lookup(pool)
    return _scheduler.add(TimerRef(target, due, False, fn, args, kwargs, None))


def perform_at(
    when: When, pool: PoolName, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs
) -> TimerRef:
    """Queue ``fn(*args, **kwargs)`` on ``pool`` at the wall-clock time ``when``.

    The timer follows the system clock: if the clock is changed, it fires when the new
    clock reaches ``when`` (noticed within WALL_CLOCK_RECHECK seconds).

    Args:
        when: an aware datetime; a naive datetime (local time); or a datetime.time, the
            next time the clock strikes it (today if still ahead, else tomorrow), in its
            own zone if it is aware, else local time.
        pool: a pool name or Pool; a configured pool starts if need be.
        fn: the job's function; ``args`` and ``kwargs`` are passed to it.

    Returns:
        The TimerRef, for cancel_timer and read_timer.

    Raises:
        TypeError: when is not a datetime or time, fn is not callable, or pool is not a
            str or Pool.
        ValueError: when is a datetime in the past.
        PoolNotFoundError: the pool is not running and not configured.
    """
    due = _wall_due(when)
    _check_callable(fn)
    target = _registry.lookup(pool)
    return _scheduler.add(TimerRef(target, due, True, fn, args, kwargs, None))


def perform_many_after(
    delay: Delay, pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], object]
) -> TimerRef:
    """Queue ``fn(item)`` for each item once ``delay`` has passed: one timer for the whole
    batch, which enters the queue as one batch, in order.

    The items are read now: later changes to ``iterable`` do not reach the batch.

    Returns:
        The TimerRef of the batch.

    Raises:
        TypeError, ValueError, PoolNotFoundError: as perform_after; TypeError also when
            ``iterable`` is not iterable. Whatever the iterator raises propagates.
    """
    due = time.monotonic() + _delay_seconds(delay)
    _check_callable(fn)
    batch = _batch(iterable)
    target = _registry.lookup(pool)
    return _scheduler.add(TimerRef(target, due, False, fn, (), {}, batch))


def perform_many_at(
    when: When, pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], object]
) -> TimerRef:
    """Queue ``fn(item)`` for each item at the wall-clock time ``when`` (as perform_at):
    one timer for the whole batch, which enters the queue as one batch, in order.

    Returns:
        The TimerRef of the batch.

    Raises:
        TypeError, ValueError, PoolNotFoundError: as perform_at; TypeError also when
            ``iterable`` is not iterable. Whatever the iterator raises propagates.
    """
    due = _wall_due(when)
    _check_callable(fn)
    batch = _batch(iterable)
    target = _registry.lookup(pool)
    return _scheduler.add(TimerRef(target, due, True, fn, (), {}, batch))


def cancel_timer(ref: TimerRef) -> float | Literal[False]:
    """Cancel a timer: its job will never run.

    Returns:
        The seconds that were left (a float, possibly 0.0: compare the result with
        ``is False``), or False if the timer already fired, was already cancelled (a
        pool stop cancels its timers) or is unknown here (set before a fork).

    Raises:
        TypeError: ref is not a TimerRef.
    """
    if type(ref) is not TimerRef:
        raise TypeError(f"cancel_timer takes a TimerRef, not {type(ref).__name__}")
    return _scheduler.cancel(ref)


def read_timer(ref: TimerRef) -> float | Literal[False]:
    """The seconds left before a timer fires, or False once it fired or was cancelled.

    Raises:
        TypeError: ref is not a TimerRef.
    """
    if type(ref) is not TimerRef:
        raise TypeError(f"read_timer takes a TimerRef, not {type(ref).__name__}")
    return _scheduler.read(ref)
