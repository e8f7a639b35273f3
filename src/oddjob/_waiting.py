"""Waiting on many jobs: ``as_completed`` and ``wait``, as ``concurrent.futures`` has them.

One call, one wake-up: each call makes a small collector (a deque of finished jobs and
one Event) and gives every job it waits on the same done callback, which appends the job
and sets the Event. Jobs have no remove_done_callback, so a job still running when the
call returns keeps that callback: it holds the collector only weakly and does nothing
once the call is over. Nothing here cancels a job or reads its result, so every job stays
collectable; only ``FIRST_EXCEPTION`` has to look at a finished job's exception (see
``_failed``).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from time import monotonic
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from . import _backend
from ._api import Timeout

if TYPE_CHECKING:
    from ._core_py import Job

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "as_completed", "wait"]

T = TypeVar("T")


_RETURN_WHEN = (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED)


class _Collector:
    """Where done callbacks leave finished jobs for the one thread waiting on them."""

    __slots__ = ("__weakref__", "event", "finished")

    def __init__(self) -> None:
        self.finished: deque[Any] = deque()
        self.event = threading.Event()

    def callback(self) -> Callable[[Any], None]:
        """The done callback for every job of this call; it holds the collector weakly."""
        ref = weakref.ref(self)

        def finished(job: Any) -> None:
            collector = ref()
            if collector is not None:  # else the call is over: nobody to tell
                collector.finished.append(job)
                collector.event.set()

        return finished

    def take(self, deadline: float | None) -> Any | None:
        """The next finished job, waiting for one until ``deadline`` (a monotonic time;
        None waits forever); None once the deadline has passed with none finished."""
        finished = self.finished
        event = self.event
        while True:
            if finished:
                return finished.popleft()
            # Clear, then look again: a callback that appended before the clear is seen
            # by the look, one that appends after it sets the Event again.
            event.clear()
            if finished:
                return finished.popleft()
            if deadline is None:
                event.wait()
            else:
                left = deadline - monotonic()
                if left <= 0.0 or not event.wait(left):
                    return finished.popleft() if finished else None


def checked_jobs(jobs: Iterable[Job[T]], what: str) -> list[Job[T]]:
    """The jobs as a list; TypeError naming the index of a non-Job (oddjob.aio too)."""
    seq = list(jobs)
    for i, job in enumerate(seq):
        if not getattr(type(job), "__oddjob_job__", False):
            raise TypeError(f"{what} takes Jobs, got {type(job).__name__} at index {i}")
    return seq


def distinct_jobs(jobs: Iterable[Job[T]], what: str) -> list[Job[T]]:
    """The jobs in input order, each once; TypeError naming the index of a non-Job."""
    return list(dict.fromkeys(checked_jobs(jobs, what)))


def _deadline(timeout: Timeout) -> float | None:
    """The monotonic deadline of ``timeout`` (None: forever), validated by the core."""
    t = _backend.core.seconds(timeout, "timeout")
    return None if t < 0.0 else monotonic() + t


def _failed(job: Job[Any]) -> bool:
    """Whether a finished job raised. A cancelled job did not (as in concurrent.futures).
    Looking does not mark the exception retrieved: nobody has read it yet."""
    return not job.cancelled() and job._failed()


def as_completed(jobs: Iterable[Job[T]], timeout: Timeout = None) -> Iterator[Job[T]]:
    """Yield each of ``jobs`` as it finishes (a result, a failure or a cancel), earliest
    first; jobs already done when called come first, in input order. A job given more
    than once is yielded once. Nothing is read from the jobs: their results and
    exceptions are still to be collected.

    The input and timeout are checked when called, and the deadline runs from then.

    Args:
        jobs: an iterable of Jobs (from either core).
        timeout: seconds or a timedelta for the whole iteration; None waits forever,
            as does a timeout longer than the platform can wait.

    Raises:
        TypeError: an item is not a Job (the message names its index), or timeout is
            not a number, timedelta or None.
        ValueError: timeout is negative.
        TimeoutError: while iterating, if the deadline passes with jobs not yet done.
            Nothing is cancelled: those jobs can still be awaited.
    """
    deadline = _deadline(timeout)
    done: list[Job[T]] = []
    pending: list[Job[T]] = []
    for job in distinct_jobs(jobs, "as_completed"):
        (done if job.done() else pending).append(job)
    collector = _Collector()
    if pending:
        # A job that finishes after its done() above calls back, at once if need be:
        # each job comes out exactly once.
        callback = collector.callback()
        for job in pending:
            job.add_done_callback(callback)
    total = len(done) + len(pending)
    return _yield_completed(done, len(pending), total, collector, deadline, timeout)


def _yield_completed(
    done: list[Job[T]],
    left: int,
    total: int,
    collector: _Collector,
    deadline: float | None,
    timeout: Timeout,
) -> Iterator[Job[T]]:
    """as_completed's iteration: the jobs done at the call, then the others as they finish."""
    done.reverse()
    while done:
        yield done.pop()
    while left:
        job = collector.take(deadline)
        if job is None:
            raise TimeoutError(
                f"as_completed: {left} of {total} jobs not done within {timeout} seconds"
            )
        left -= 1
        yield job
        del job  # keep no reference to a yielded job


class DoneAndNotDone(NamedTuple, Generic[T]):
    """wait()'s result: a 2-tuple with the fields of concurrent.futures'."""

    done: set[Job[T]]
    not_done: set[Job[T]]


def wait(
    jobs: Iterable[Job[T]],
    timeout: Timeout = None,
    return_when: str = ALL_COMPLETED,
) -> tuple[set[Job[T]], set[Job[T]]]:
    """Wait for ``jobs`` as ``concurrent.futures.wait`` does, and return the
    ``(done, not_done)`` sets (also named ``.done`` and ``.not_done``).

    Nothing is cancelled or read: jobs in either set can still be awaited. A job given
    more than once counts once.

    Args:
        jobs: an iterable of Jobs (from either core).
        timeout: seconds or a timedelta; None waits forever, as does a timeout longer
            than the platform can wait. When it runs out, wait returns (no exception).
        return_when: ``FIRST_COMPLETED`` (any job done), ``FIRST_EXCEPTION`` (any job
            done by raising; a cancelled job did not raise; if none raises, all done)
            or ``ALL_COMPLETED``, the constants of concurrent.futures, re-exported by
            oddjob. Looking at a failure does not retrieve it: an exception nobody reads
            is still logged when its Job is collected.

    Raises:
        TypeError: an item is not a Job (the message names its index), or timeout is
            not a number, timedelta or None.
        ValueError: timeout is negative, or return_when is none of the three.
    """
    if return_when not in _RETURN_WHEN:
        raise ValueError(
            f"return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, "
            f"not {return_when!r}"
        )
    deadline = _deadline(timeout)
    distinct = distinct_jobs(jobs, "wait")
    done: set[Job[T]] = set()
    not_done: set[Job[T]] = set()
    for job in distinct:
        (done if job.done() else not_done).add(job)
    del distinct
    if (
        not not_done
        or (return_when == FIRST_COMPLETED and done)
        or (return_when == FIRST_EXCEPTION and any(_failed(job) for job in done))
    ):
        return DoneAndNotDone(done, not_done)
    if deadline is not None and deadline <= monotonic():
        return DoneAndNotDone(done, not_done)
    collector = _Collector()
    callback = collector.callback()
    for job in not_done:
        job.add_done_callback(callback)
    while not_done:
        finished = collector.take(deadline)
        if finished is None:
            break
        not_done.discard(finished)
        done.add(finished)
        if return_when == FIRST_COMPLETED or (return_when == FIRST_EXCEPTION and _failed(finished)):
            break
    while collector.finished:  # others that finished meanwhile are done too
        finished = collector.finished.popleft()
        not_done.discard(finished)
        done.add(finished)
    return DoneAndNotDone(done, not_done)
