"""What travels between a pool and its worker processes, and how it is pickled.

Messages are single pickles sent with ``Connection.send_bytes``:

    pool -> child    (fn, args, kwargs)            a job
                     [(fn, args, kwargs), ...]     a batch of jobs, run in order
                     [pickle, pickle, ...]         the same, each job pickled alone (when
                                                   the batch does not pickle or unpickle
                                                   whole, so that the job at fault fails
                                                   alone)
                     b""                           stop: run the finalizer and exit
    child -> pool    (READY, pid, 0)               the initializer ran
                     (OK, result, run_ns)          a job's result, and how long it ran
                     (FAILED, packed, run_ns)      a job's, the initializer's or the
                                                   finalizer's exception (pack_error)
                     (RESULTS, [(OK or FAILED, result or packed, run_ns), ...], 0)
                                                   the next results of a whole-pickled
                                                   batch, in order, many to a message
                     (UNREADABLE, packed, 0)       a message that did not unpickle here
                     (STOPPED, packed or None, 0)  the finalizer ran

A worker process also writes, in memory shared with the pool, how many jobs of the
current batch it has started: if it dies, the pool knows which job was running, which
ones had run (their results lost with it) and which never began.

Pickling tries the standard library first (fast, and what most jobs need) and falls back
to cloudpickle for what it cannot do: lambdas, closures, functions defined in
``__main__`` under spawn.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any, Final

from ._errors import RemoteError, RemoteTraceback

READY: Final = 0
OK: Final = 1
FAILED: Final = 2
STOPPED: Final = 3
RESULTS: Final = 4
UNREADABLE: Final = 5
STOP: Final = b""

_PROTOCOL: Final = pickle.HIGHEST_PROTOCOL


def dumps(obj: object) -> bytes:
    """Pickle ``obj``; what the standard pickler refuses goes through cloudpickle.

    Raises:
        pickle.PicklingError: neither can pickle it (the message names what).
    """
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        import cloudpickle  # type: ignore[import-untyped]  # first need: most jobs never do

        try:
            return cloudpickle.dumps(obj, _PROTOCOL)  # type: ignore[no-any-return]
        except Exception as again:
            raise pickle.PicklingError(
                f"cannot pickle {_short(obj)} for a worker process: {type(again).__name__}: {again}"
            ) from exc


loads = pickle.loads


def pack_error(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """An exception as it travels: (its pickle, or None if it has none; its type's
    qualified name; its message; its traceback as text, its chain included)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception raised>"
    try:
        payload: bytes | None = dumps(exc)
    except Exception:
        payload = None
    return payload, name, message, text


def unpack_error(packed: tuple[bytes | None, str, str, str]) -> BaseException:
    """The exception of pack_error, rebuilt here with the remote traceback as its
    ``__cause__``; a RemoteError of the same name and message if it cannot be rebuilt."""
    payload, name, message, text = packed
    exc: BaseException | None = None
    if payload is not None:
        try:
            exc = loads(payload)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(name, message)
    exc.__cause__ = RemoteTraceback(f'\n"""\n{text}"""')
    return exc


def _short(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"a {type(obj).__name__}"
    return text if len(text) <= 200 else text[:197] + "..."


def message(kind: int, value: Any, run_ns: int = 0) -> bytes:
    """A child's message (see the module docstring)."""
    return dumps((kind, value, run_ns))
