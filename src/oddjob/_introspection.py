"""Snapshots of running pools: what is queued, which workers are busy, and the ids
of a pool and its supervisor, named as OddJob names them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from . import _registry
from ._supervision import WorkerSupervisor

__all__ = ["PoolState", "QueuedJob", "pool", "pool_id", "supervisor", "supervisor_id"]


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A queued fire-and-forget job, as ``PoolState.jobs`` lists it (async jobs are
    listed as their ``Job``, which has the same attributes)."""

    pool: str
    function: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    async_: bool = False


@dataclass(frozen=True, slots=True)
class PoolState:
    """A frozen snapshot of one pool, taken by ``oddjob.pool(name)``.

    Attributes:
        id: ``"<name>_pool"``.
        pool: the pool's name.
        workers: the worker threads.
        assigned: the worker threads running a job.
        jobs: the queued jobs in FIFO order (``Job`` for async jobs, else ``QueuedJob``).
    """

    id: str
    pool: str
    workers: tuple[threading.Thread, ...]
    assigned: tuple[threading.Thread, ...]
    jobs: tuple[Any, ...]


def pool(name: Any) -> PoolState:
    """A snapshot of the pool ``name`` (a str or a Pool).

    Raises:
        PoolNotFoundError: the pool is not running (and not configured).
        TypeError: ``name`` is neither a str nor a Pool.
    """
    found = _registry.lookup(name)
    supervisor = found.supervisor
    workers = supervisor.workers()
    queued = found.queue.snapshot()
    return PoolState(
        id=found.id,
        pool=found.name,
        workers=tuple(w.thread for w in workers),
        assigned=tuple(w.thread for w in workers if w.busy),
        jobs=tuple(
            job if job is not None else QueuedJob(found.name, fn, args, kwargs)
            for fn, args, kwargs, job in queued
        ),
    )


def pool_id(name: Any) -> str:
    """``"<name>_pool"``, the id of a running pool."""
    return _registry.lookup(name).id


def supervisor(name: Any) -> WorkerSupervisor:
    """The worker supervisor of a running pool."""
    return _registry.lookup(name).supervisor


def supervisor_id(name: Any) -> str:
    """``"<name>_pool_sup"``, the id of a running pool's worker supervisor."""
    return _registry.lookup(name).supervisor.id
