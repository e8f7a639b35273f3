"""perform_this: a decorator that submits the decorated function as a job at once.

    @perform_this("work", ...)  -->  perform / async_perform / perform_at / perform_after
    def name(): ...                   (the function, called without arguments)

The decorated name is bound to what the call returned: None, a Job or a TimerRef. The
arguments are checked when ``perform_this(...)`` is called, so a wrong combination raises
before the function is even defined, and nothing is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, overload

from . import _api
from ._scheduler import Delay, TimerRef, When, perform_after, perform_at

if TYPE_CHECKING:
    from ._core_py import Job
    from ._pool import Pool

__all__ = ["perform_this"]

T = TypeVar("T")

PoolName: TypeAlias = "str | Pool"

# The one mode perform_this takes besides the default (None: fire and forget).
ASYNC: Literal["async"] = "async"


@overload
def perform_this(
    pool: PoolName, mode: None = None, *, at: None = None, after: None = None
) -> Callable[[Callable[[], object]], None]: ...
@overload
def perform_this(
    pool: PoolName, mode: Literal["async"], *, at: None = None, after: None = None
) -> Callable[[Callable[[], T]], Job[T]]: ...
@overload
def perform_this(
    pool: PoolName, mode: None = None, *, at: When, after: None = None
) -> Callable[[Callable[[], object]], TimerRef]: ...
@overload
def perform_this(
    pool: PoolName, mode: None = None, *, at: None = None, after: Delay
) -> Callable[[Callable[[], object]], TimerRef]: ...
def perform_this(
    pool: PoolName,
    mode: Literal["async"] | None = None,
    *,
    at: When | None = None,
    after: Delay | None = None,
) -> Callable[[Callable[[], Any]], Any]:
    """Submit the decorated function as a job right away; bind its name to the result.

        @perform_this("work")               # perform       -> None
        @perform_this("work", "async")      # async_perform -> Job
        @perform_this("work", at=when)      # perform_at    -> TimerRef
        @perform_this("work", after=5)      # perform_after -> TimerRef

    Args:
        pool: a pool name or Pool.
        mode: None (fire and forget) or "async" (the name is bound to the Job).
        at: a datetime or time, as for perform_at.
        after: a delay in seconds or a timedelta, as for perform_after.

    Returns:
        The decorator.

    Raises:
        ValueError: an unknown mode, or more than one of "async", at and after. Whatever
            the underlying call raises is raised at decoration time too.
    """
    if mode is not None and mode != ASYNC:
        raise ValueError(f"unknown perform_this mode {mode!r}: use None or {ASYNC!r}")
    given = [
        name for name, value in (("mode", mode), ("at", at), ("after", after)) if value is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"perform_this takes at most one of mode='async', at= and after=, got {given}"
        )

    def submit(fn: Callable[[], Any]) -> Any:
        if at is not None:
            return perform_at(at, pool, fn)
        if after is not None:
            return perform_after(after, pool, fn)
        if mode is not None:
            return _api.async_perform(pool, fn)
        return _api.perform(pool, fn)

    return submit
