"""The module-level job calls: resolve the pool, hand the job to its core queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _backend, _registry
from ._pool import Pool, _as_list
from ._supervisor import start_link

__all__ = [
    "async_perform",
    "async_perform_many",
    "await_",
    "await_many",
    "perform",
    "perform_many",
    "start_link",
    "stop",
    "whereis",
    "workers",
]

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")

PoolName = str | Pool
Timeout = float | timedelta | None

# perform and async_perform are the hot path: they are bound to the core's compiled
# Dispatcher (one dict lookup from pool to queue, no Python frame per call). The
# definitions under TYPE_CHECKING document their signatures for type checkers.

if TYPE_CHECKING:
    from ._core_py import Job

    def perform(pool: PoolName, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` on a worker of ``pool``; fire and forget.

        Raises:
            TypeError: fn is not callable, or pool is not a str or Pool.
            PoolNotFoundError: the pool is not running (and not configured).
        """

    def async_perform(
        pool: PoolName, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]:
        """Run ``fn(*args, **kwargs)`` on a worker of ``pool`` and return its ``Job``."""
        ...

else:
    perform = _registry.dispatch.perform
    async_perform = _registry.dispatch.async_perform


def perform_many(pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], Any]) -> None:
    """Run ``fn(item)`` for each item. The batch enters the queue at once, in order:
    no other caller's job lands between its members."""
    _registry.queue(pool).push_many(fn, _as_list(iterable))


def async_perform_many(
    pool: PoolName, iterable: Iterable[Item], fn: Callable[[Item], T]
) -> list[Job[T]]:
    """One async job per item, queued as one batch; the Jobs in input order."""
    jobs: list[Job[T]] = _registry.queue(pool).push_async_many(fn, _as_list(iterable))
    return jobs


def await_(job: Job[T], timeout: Timeout = 5.0) -> T:
    """Wait for ``job`` and return its result.

    Args:
        job: a Job from async_perform.
        timeout: seconds (or timedelta) to wait; None waits forever.

    Raises:
        TimeoutError: not done in time; the job goes on and can be awaited again.
        concurrent.futures.CancelledError: the job was cancelled.
        Exception: whatever the job raised, with its traceback.
    """
    if not getattr(type(job), "__oddjob_job__", False):
        raise TypeError(f"await_ takes a Job, not {type(job).__name__}")
    return job.result(timeout)


def await_many(jobs: Iterable[Job[T]], timeout: Timeout = 5.0) -> list[T]:
    """Results of ``jobs`` in their order, within one overall deadline.

    Raises the first failure seen; on TimeoutError every job stays collectable.
    """
    return _backend.core.wait_many(jobs, timeout)


def stop(
    pool: PoolName,
    *,
    wait: bool = True,
    timeout: Timeout = None,
    cancel_pending: bool = False,
) -> None:
    """Stop a running pool; see ``Pool.stop``. Afterwards its name is free again."""
    found = _registry.whereis(pool) if isinstance(pool, str) else pool
    if not isinstance(found, Pool):
        if found is None:
            from ._errors import PoolNotFoundError

            raise PoolNotFoundError(f"no pool named {pool!r} is running")
        raise TypeError(f"pool must be a str name or a Pool, not {type(pool).__name__}")
    found.stop(wait=wait, timeout=timeout, cancel_pending=cancel_pending)


def whereis(name: str) -> Pool | None:
    """The running ``Pool`` called ``name``, or None."""
    return _registry.whereis(name)


def workers(pool: PoolName) -> list[Any]:
    """The pool's worker threads (``threading.Thread``)."""
    return _registry.lookup(pool).workers()
