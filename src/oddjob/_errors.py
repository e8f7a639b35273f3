"""oddjob's exceptions. Waiting past a deadline raises the builtin ``TimeoutError``."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "JobExpiredError",
    "JobTimeoutError",
    "OddJobError",
    "PoolAlreadyStartedError",
    "PoolBrokenError",
    "PoolNotFoundError",
    "QueueFullError",
    "RemoteError",
    "RemoteTraceback",
    "WorkerCrashedError",
]


class OddJobError(Exception):
    """Base class of every error oddjob raises on its own account."""


class PoolNotFoundError(OddJobError, LookupError):
    """A call named a pool that is not running (and is not configured to start lazily)."""


class PoolAlreadyStartedError(OddJobError):
    """``start_link`` (or ``Pool.start``) named a pool that is already running."""


class ConfigError(OddJobError, ValueError):
    """A configuration value is wrong; the message names the key, the value and the expected."""


class PoolBrokenError(OddJobError):
    """The pool's workers cannot start: its initializer failed more than ``max_restarts``
    times within ``max_seconds``. Queued async jobs fail with it and later submits raise
    it, until the pool is stopped and started again; ``__cause__`` is the initializer's
    exception."""


class WorkerCrashedError(OddJobError):
    """The worker running the job is gone (its process died, or it did not survive a
    fork), so the job can never finish."""


class QueueFullError(OddJobError):
    """A bounded pool's queue had no room for a submission: its ``on_full`` is
    ``"raise"``, its ``block_timeout`` ran out, the batch is larger than ``max_queue``,
    or a job submitted to its own full pool (waiting there could deadlock it).
    Nothing was queued."""


class JobExpiredError(OddJobError, TimeoutError):
    """The job waited in its pool's queue longer than the pool's ``max_queue_time``
    before a worker reached it, so it was not run (a job that is to be retried waits
    afresh from each time it re-enters the queue)."""


class JobTimeoutError(OddJobError, TimeoutError):
    """The job ran longer than its pool's ``job_timeout``: the worker process running it
    was killed (and is replaced), so the job never finished."""


class RemoteTraceback(Exception):
    """The ``__cause__`` of an exception raised by a job in a worker process: its
    traceback there, as text (a traceback does not travel between processes)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class RemoteError(OddJobError):
    """A job in a worker process raised an exception that could not travel back (it
    does not pickle, or does not unpickle here): its type's name, its message, and the
    remote traceback as ``__cause__`` (a RemoteTraceback)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str]]:
        return (type(self), (self.type_name, self.message))


class _NoRoom(Exception):
    """Internal: a push with a RoomTicket found no room; the ticket now waits in the
    queue's line and its wake() is called when the submission may fit."""
