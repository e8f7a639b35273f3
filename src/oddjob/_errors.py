"""oddjob's exceptions. Waiting past a deadline raises the builtin ``TimeoutError``."""

__all__ = [
    "ConfigError",
    "OddJobError",
    "PoolAlreadyStartedError",
    "PoolBrokenError",
    "PoolNotFoundError",
    "QueueFullError",
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


class _NoRoom(Exception):
    """Internal: a push with a RoomTicket found no room; the ticket now waits in the
    queue's line and its wake() is called when the submission may fit."""
