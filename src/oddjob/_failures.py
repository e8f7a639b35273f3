"""The record of a fire-and-forget job that raised: nobody awaits it, so it is logged.

Both cores call log_job_error from the worker, right where the job failed; the record
names the pool, the function and a short form of the arguments, with the traceback.
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Callable
from typing import Any

__all__ = ["describe_call", "log_job_error"]

logger = logging.getLogger("oddjob")

# Arguments are shown the way reprlib shows them: long strings and containers cut short,
# so that a job over a large batch item does not write megabytes into the log.
_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlong = 40


def _repr(value: object) -> str:
    try:
        return _short.repr(value)
    except Exception as exc:  # a hostile __repr__ must not hide the job's own failure
        return f"<{type(value).__name__} object; repr() raised {type(exc).__name__}>"


def describe_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None
) -> str:
    """``name(arg, ..., key=value)``, every argument cut short by reprlib."""
    name = getattr(fn, "__qualname__", None)
    if not isinstance(name, str):
        name = _repr(fn)
    parts = [_repr(a) for a in args]
    if kwargs:
        parts.extend(f"{k}={_repr(v)}" for k, v in kwargs.items())
    return f"{name}({', '.join(parts)})"


def log_job_error(
    pool: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    exc: BaseException,
    *,
    note: str = "",
) -> None:
    """Log a failed fire-and-forget job at ERROR on the "oddjob" logger. Never raises
    an Exception (a failure to describe the call is described instead)."""
    try:
        call = describe_call(fn, args, kwargs)
    except Exception as error:
        call = f"<job; describing it raised {type(error).__name__}>"
    logger.error(
        "job %s in pool %r raised %s%s",
        call,
        pool,
        type(exc).__name__,
        note,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"oddjob_pool": pool, "oddjob_function": fn},
    )
