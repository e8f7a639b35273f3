"""Telemetry: call your handlers when things happen in oddjob's pools, Elixir-style.

    attach("my-metrics", ["job.stop", "job.exception"], handler)
    handler(event, measurements, metadata)   # called synchronously where it happens

Job events run on the worker, inside the job's contextvars context; pool events on the
thread that started, stopped or broke the pool; worker events on the worker's thread.
Metadata always has ``"pool"``; job events add ``"function"`` and ``"ref"``, worker
events ``"worker"`` (its thread's name) and ``"index"``.

A handler that raises is detached, and its error is logged once at ERROR on the
``"oddjob"`` logger. With no handler attached for an event, emitting it costs one dict
lookup.

The handler table is a dict of immutable tuples, replaced whole under a lock on every
change and pushed to each core, so that emitting never takes a lock.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Hashable, Iterable
from types import ModuleType
from typing import Any, NamedTuple

from . import _core_py

__all__ = ["EVENTS", "Handler", "HandlerInfo", "attach", "detach", "handlers"]

#: Every event name oddjob emits (see the measurements and metadata of each in API.md).
EVENTS: frozenset[str] = frozenset(
    {
        "job.start",
        "job.stop",
        "job.exception",
        "job.retry",
        "job.cancelled",
        "job.dropped",
        "job.expired",
        "worker.start",
        "worker.stop",
        "worker.crash",
        "pool.start",
        "pool.stop",
        "pool.restart",
        "pool.broken",
        "queue.full",
    }
)

#: ``handler(event, measurements, metadata)``; its return value is ignored.
Handler = Callable[[str, dict[str, Any], dict[str, Any]], object]

logger = logging.getLogger("oddjob")


class HandlerInfo(NamedTuple):
    """An attached handler, as ``handlers()`` lists it."""

    id: Hashable
    events: tuple[str, ...]
    handler: Handler


_lock = threading.Lock()
# Both replaced whole, never mutated: readers take them without the lock.
_attached: tuple[HandlerInfo, ...] = ()  # in attach order
# event -> ((handler_id, handler), ...), only events with a handler; the cores get it too.
_table: dict[str, tuple[tuple[Hashable, Handler], ...]] = {}


def attach(handler_id: Hashable, events: str | Iterable[str], handler: Handler) -> None:
    """Call ``handler(event, measurements, metadata)`` on each of ``events``.

    Args:
        handler_id: any hashable that names this attachment, for ``detach``.
        events: an event name or an iterable of them (see ``EVENTS``).
        handler: the callable; it runs synchronously where the event happens, so it
            should be quick. If it raises, it is detached and its error logged once.

    Raises:
        TypeError: handler_id is not hashable, handler is not callable, or events is
            neither a str nor an iterable of str.
        ValueError: an event name is unknown, events is empty, or handler_id is
            already attached. A call that raises changes nothing.
    """
    try:
        hash(handler_id)
    except TypeError:
        raise TypeError(f"handler_id must be hashable, not {type(handler_id).__name__}") from None
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {type(handler).__name__}")
    names = _event_names(events)
    info = HandlerInfo(handler_id, names, handler)
    with _lock:
        if any(other.id == handler_id for other in _attached):
            raise ValueError(f"a telemetry handler {handler_id!r} is already attached")
        _install((*_attached, info))


def detach(handler_id: Hashable) -> bool:
    """Detach the handler attached as ``handler_id``; False if there was none."""
    return _remove(handler_id) is not None


def handlers() -> list[HandlerInfo]:
    """The attached handlers, in the order they were attached."""
    return list(_attached)


def _event_names(events: str | Iterable[str]) -> tuple[str, ...]:
    """``events`` as a tuple of distinct known names, in the order given."""
    if isinstance(events, str):
        events = (events,)
    try:
        names = tuple(dict.fromkeys(events))
    except TypeError:
        raise TypeError(
            f"events must be an event name or an iterable of them, not {type(events).__name__}"
        ) from None
    if not names:
        raise ValueError("attach needs at least one event name")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"an event name must be a str, not {type(name).__name__}")
        if name not in EVENTS:
            raise ValueError(
                f"unknown telemetry event {name!r}; the events are {', '.join(sorted(EVENTS))}"
            )
    return names


def _install(attached: tuple[HandlerInfo, ...]) -> None:
    """Make ``attached`` the handlers, in every loaded core too (call with _lock held:
    the cores must see the changes in the order they were made)."""
    global _attached, _table
    grouped: dict[str, list[tuple[Hashable, Handler]]] = {}
    for info in attached:
        for event in info.events:
            grouped.setdefault(event, []).append((info.id, info.handler))
    table = {event: tuple(pairs) for event, pairs in grouped.items()}
    # Only cores already imported: attaching must not load the compiled one under
    # ODDJOB_NO_EXTENSIONS. One imported later gets the table from _backend.compiled().
    for core in (_core_py, sys.modules.get("oddjob._core")):
        if core is not None:
            core.set_handlers(table, _handler_failed)
    _attached, _table = attached, table


def _push_to(core: ModuleType) -> None:
    """Give a core imported after handlers were attached the current table."""
    with _lock:
        core.set_handlers(_table, _handler_failed)


def _remove(handler_id: Hashable, handler: Handler | None = None) -> HandlerInfo | None:
    """Detach ``handler_id`` (only if attached with ``handler``, when given); the
    HandlerInfo detached, or None."""
    with _lock:
        for info in _attached:
            if info.id == handler_id and (handler is None or info.handler is handler):
                _install(tuple(other for other in _attached if other is not info))
                return info
    return None


def _handler_failed(
    handler_id: Hashable, event: str, exc: BaseException, handler: Handler | None = None
) -> None:
    """A handler raised ``exc`` on ``event``: detach it and log the error. Only the
    call that detaches it logs, so a handler failing on many threads is logged once.
    The cores call this too (without ``handler``)."""
    if _remove(handler_id, handler) is None:
        return
    logger.error(
        "telemetry handler %r raised on event %r; it is detached",
        handler_id,
        event,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _emit(
    event: str, measurements: dict[str, Any], metadata: dict[str, Any], on_worker: bool = False
) -> None:
    """Call the handlers attached to ``event`` (the Python-side events: pools, workers).

    A handler raising an Exception is detached. So is one raising any BaseException on
    a worker (``on_worker``), where SystemExit & co would lose the worker; elsewhere
    those propagate, so that Ctrl-C in a handler is never swallowed."""
    attached = _table.get(event)
    if attached is None:
        return
    for handler_id, handler in attached:
        try:
            handler(event, measurements, metadata)
        except BaseException as exc:
            if not (on_worker or isinstance(exc, Exception)):
                raise
            _handler_failed(handler_id, event, exc, handler)
