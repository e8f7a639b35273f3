"""The registry of running pools by name, and the process-wide lifecycle hooks.

Callers resolve a pool name (or a Pool object) to its core queue here: one dict
lookup on the hot path. Configured pools (the default pool "job", ...) start
lazily the first time they are named. The first pool to start installs the
interpreter-exit drain and the at-fork reset; nothing happens at import time.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import _backend, _config
from ._errors import ConfigError, PoolAlreadyStartedError, PoolNotFoundError

if TYPE_CHECKING:
    from ._pool import Pool

logger = logging.getLogger("oddjob")

_lock = threading.RLock()
_pools: dict[str, Pool] = {}
# name -> queue and Pool object -> queue, read without the lock by every job call.
queues: dict[object, Any] = {}
# Called with each Pool as it stops, right after it is unregistered (the scheduler
# cancels the pool's timers here). Hooks must not raise.
stop_hooks: list[Callable[[Pool], None]] = []
_hooks_installed = False


def register(pool: Pool, start: Callable[[], None]) -> None:
    """Run ``start`` and register ``pool`` under its name, atomically."""
    with _lock:
        if pool.name in _pools:
            raise PoolAlreadyStartedError(f"pool {pool.name!r} is already started")
        _install_hooks()
        start()
        _pools[pool.name] = pool
        queues[pool.name] = pool._queue
        queues[pool] = pool._queue


def unregister(pool: Pool) -> None:
    """Remove a running pool; PoolNotFoundError if it is not the one registered."""
    with _lock:
        if _pools.get(pool.name) is not pool:
            raise PoolNotFoundError(f"pool {pool.name!r} is not running")
        del _pools[pool.name]
        queues.pop(pool.name, None)
        queues.pop(pool, None)
    for hook in list(stop_hooks):
        hook(pool)


def lookup(pool: object) -> Pool:
    """The running Pool for a name or Pool, starting a configured pool if need be.

    Raises:
        TypeError: ``pool`` is neither a str nor a Pool.
        PoolNotFoundError: no such pool is running or configured.
    """
    from ._pool import Pool

    if isinstance(pool, Pool):
        if not pool.running:
            raise PoolNotFoundError(f"pool {pool.name!r} is not running")
        return pool
    if type(pool) is not str:
        raise TypeError(f"pool must be a str name or a Pool, not {type(pool).__name__}")
    found = _pools.get(pool)
    if found is not None:
        return found
    with _lock:
        found = _pools.get(pool)
        if found is not None:
            return found
        options = _config.options_for(pool)
        if options is None:
            raise PoolNotFoundError(f"no pool named {pool!r} is running")
        new = Pool(pool)  # takes its configured options when it starts
        new.start()  # RLock: register() re-enters
        return new


def queue(pool: object) -> Any:
    """The core queue of a running pool (the hot path of every job call).

    Only an exact str is hashed here: any other object (whose ``__hash__`` or ``__eq__``
    may raise, or pass for a pool's name) goes through lookup(), which takes Pools and
    refuses the rest with TypeError."""
    if type(pool) is str:
        found = queues.get(pool)
        if found is not None:
            return found
    return lookup(pool).queue


# The compiled fast path of perform/async_perform, for oddjob.perform and Pool.perform.
dispatch = _backend.core.Dispatcher(queues, queue)


def whereis(name: str) -> Pool | None:
    """The running Pool of that name, or None."""
    if type(name) is not str:
        raise TypeError(f"a pool name must be a str, not {type(name).__name__}")
    return _pools.get(name)


def running() -> list[Pool]:
    with _lock:
        return list(_pools.values())


def deadline(timeout: float | timedelta | None) -> float | None:
    """The monotonic time ``timeout`` (seconds, timedelta or None) from now, or None
    for forever (None, or longer than the platform can wait).

    Raises:
        TypeError, ValueError: not a valid timeout.
    """
    limit = _backend.core.seconds(timeout)
    return None if limit < 0 else time.monotonic() + limit


def stop_pools(
    pools: list[Pool], timeout: float | timedelta | None = None, cancel_pending: bool = False
) -> list[Pool]:
    """Stop every pool first, then wait for them all within one overall ``timeout``.

    Returns:
        The pools whose workers were still running at the deadline (stopped all the same).
    """
    end = deadline(timeout)
    for pool in pools:
        try:
            pool.stop(wait=False, cancel_pending=cancel_pending)
        except PoolNotFoundError:  # stopped meanwhile: still wait for it
            pass
    late = []
    for pool in pools:
        try:
            pool.join(end)
        except TimeoutError:
            late.append(pool)
    return late


def stop_all(timeout: float | None = None, cancel_pending: bool = False) -> None:
    """Stop every running pool, draining them within one overall ``timeout``; a pool
    still busy at the deadline is logged with the jobs it leaves behind."""
    for pool in stop_pools(running(), timeout, cancel_pending):
        left = pool.stats()
        logger.warning(
            "pool %r did not drain within %s seconds at exit: %d jobs left queued, %d running",
            pool.name,
            timeout,
            left.queued,
            left.running,
        )


# -- process lifecycle ------------------------------------------------------------


def _at_exit() -> None:
    # Runs in threading._shutdown, before non-daemon threads are joined: drain every
    # pool within a bound. The joins are interruptible, so Ctrl-C ends the drain.
    try:
        timeout = _config.settings().exit_timeout
    except ConfigError as exc:  # a bad setting must not stop the drain
        logger.error("oddjob configuration: %s; draining with the default exit timeout", exc)
        timeout = _config.EXIT_TIMEOUT
    try:
        stop_all(timeout=timeout)
    except KeyboardInterrupt:
        _exit_interrupted()
    finally:
        # Worker processes of a pool that did not drain: they must not outlive this one
        # (multiprocessing would wait for them at exit).
        processes = sys.modules.get("oddjob._process_worker")
        if processes is not None:
            processes.kill_all()


def _exit_interrupted() -> None:
    """Ctrl-C during the exit drain. An exception raised here is only printed as
    "ignored" by the interpreter, which then exits with status 0, swallowing the
    interrupt. So report it and, on POSIX, die of SIGINT as CPython itself does for
    an uncaught KeyboardInterrupt, so that the caller sees the interrupt."""
    traceback.print_exc()
    sys.stderr.write("KeyboardInterrupt: oddjob pools were still draining at exit\n")
    if os.name != "posix" or threading.current_thread() is not threading.main_thread():
        raise KeyboardInterrupt
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def _before_fork() -> None:
    _lock.acquire()
    for pool in _pools.values():
        pool._queue.fork_acquire()


def _after_fork_in_parent() -> None:
    for pool in _pools.values():
        pool._queue.fork_release(False)
    _lock.release()


def _after_fork_in_child() -> None:
    # Worker threads do not survive fork: inherited pools are dead. Drop them (their
    # queued jobs are cancelled, never run twice) so configured pools start afresh.
    global _lock
    for pool in _pools.values():
        pool._queue.fork_release(True)
        pool._after_fork_in_child()
    _pools.clear()
    queues.clear()
    _lock = threading.RLock()


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    try:
        threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
    except RuntimeError:  # the interpreter is already shutting down
        pass
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
